"""open(2)/openat2(2) semantics on top of path resolution.

Owns the rules that decide what an open does: O_CREAT/O_EXCL, O_NOFOLLOW, O_DIRECTORY,
O_TRUNC, O_PATH, EISDIR/EROFS/EACCES/ETXTBSY.  The result tells the syscall layer what it got: a
location and, for regular files and character devices, a fresh host descriptor to donate.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFCHR, S_IFDIR, S_IFREG
from occlum.vfs.cred import new_owner
from occlum.vfs.inode import MAY_READ, MAY_WRITE, ROOT, Cred, Inode, SetAttr, check_access
from occlum.vfs.ops import drop_setid_for_writer
from occlum.vfs.path import Location, PathOp, resolve, walk_to_parent

__all__ = ["OpenResult", "open_path"]

O_PATH = os.O_PATH
# O_TMPFILE includes O_DIRECTORY's bit, so test it as a whole
O_TMPFILE = os.O_TMPFILE


@dataclass(slots=True)
class OpenResult:
    """What an open produced.

    ``kind`` is the S_IF* type of the file.  ``host_fd`` is set for regular files and
    character devices (unless O_PATH): the caller owns it and closes its copy after donating.
    Directories, FIFOs, sockets and O_PATH opens have ``host_fd`` None: the syscall layer makes
    its own object (an :class:`~occlum.vfs.dirfile.OpenDirectory`, a pipe, ...).
    """

    location: Location
    kind: int
    host_fd: int | None
    created: bool
    flags: int


def open_path(
    op: PathOp,
    flags: int,
    mode: int = 0,
    umask: int = 0o022,
    *,
    running: Callable[[Inode], bool] | None = None,
) -> OpenResult:
    """Open ``op``'s path like ``openat(dirfd, path, flags, mode)``, with ``op.cred``'s rights
    (None: the LibOS's own, root's); the flags decide whether a final symlink is followed.
    ``running`` tells whether a regular file is a running program, which is not opened for
    writing (ETXTBSY)."""
    if op.cred is None:
        op = replace(op, cred=ROOT)
    cred = op.cred
    assert cred is not None
    if flags & O_TMPFILE == O_TMPFILE:
        return _open_tmpfile(op, cred, flags, mode, umask)
    if flags & O_PATH:
        flags &= O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    creat = bool(flags & os.O_CREAT)
    if creat and flags & os.O_DIRECTORY:
        raise SyscallError(errno.EINVAL, "O_CREAT with O_DIRECTORY")
    follow = not flags & os.O_NOFOLLOW and not (creat and flags & os.O_EXCL)
    created = False
    if creat:
        loc, created = _open_creat(op, cred, flags, mode, umask)
    else:
        loc = resolve(op if op.follow == follow else replace(op, follow=follow))
    inode = loc.inode
    kind = inode.ftype
    if flags & O_PATH:
        if flags & os.O_DIRECTORY and kind != S_IFDIR:
            raise SyscallError(errno.ENOTDIR, "O_DIRECTORY on a non-directory")
        return OpenResult(loc, kind, None, created, flags)
    if inode.is_symlink:
        raise SyscallError(errno.ELOOP, "final component is a symlink and O_NOFOLLOW")
    if flags & os.O_DIRECTORY and kind != S_IFDIR:
        raise SyscallError(errno.ENOTDIR, "O_DIRECTORY on a non-directory")
    acc = flags & os.O_ACCMODE
    if acc == os.O_ACCMODE:
        raise SyscallError(errno.EINVAL, "invalid access mode")
    want = 0
    if acc in (os.O_RDONLY, os.O_RDWR):
        want |= MAY_READ
    if acc in (os.O_WRONLY, os.O_RDWR) or flags & os.O_TRUNC:
        want |= MAY_WRITE
    if kind == S_IFDIR:
        if creat:
            raise SyscallError(errno.EISDIR, "O_CREAT on a directory")
        if want & MAY_WRITE:
            raise SyscallError(errno.EISDIR, "directory opened for writing")
    if not created:
        check_access(inode.getattr(), cred, want)
    if want & MAY_WRITE and inode.fs.readonly and kind in (S_IFREG, S_IFDIR):
        raise SyscallError(errno.EROFS, "write access on a read-only file system")
    host_fd: int | None = None
    if kind == S_IFREG:
        if want & MAY_WRITE and running is not None and running(inode):
            raise SyscallError(errno.ETXTBSY, "the file is a running program")
        # O_TRUNC truncates even with O_RDONLY (unspecified by POSIX, done by Linux; the
        # write permission was checked above)
        if flags & os.O_TRUNC and not created:
            inode.setattr(SetAttr(size=0))
        if want & MAY_WRITE and not created:
            drop_setid_for_writer(inode, cred)
        host_fd = inode.open_host_fd(flags)
    elif kind == S_IFCHR:
        host_fd = inode.open_host_fd(flags)
    return OpenResult(loc, kind, host_fd, created, flags)


def _open_tmpfile(op: PathOp, cred: Cred, flags: int, mode: int, umask: int) -> OpenResult:
    """``O_TMPFILE``: a new regular file with no name in the directory at ``path``."""
    if flags & (os.O_CREAT | O_PATH) or flags & os.O_ACCMODE not in (os.O_WRONLY, os.O_RDWR):
        raise SyscallError(errno.EINVAL, "O_TMPFILE needs write access, no O_CREAT or O_PATH")
    loc = resolve(replace(op, follow=not flags & os.O_NOFOLLOW))
    d = loc.inode
    if not d.is_dir:
        raise SyscallError(errno.ENOTDIR, "O_TMPFILE names a non-directory")
    st = d.getattr()
    check_access(st, cred, MAY_WRITE | 1)
    if d.fs.readonly:
        raise SyscallError(errno.EROFS, "O_TMPFILE on a read-only file system")
    perm, uid, gid = new_owner(cred, st, S_IFREG | (mode & 0o7777 & ~umask))
    inode = d.tmpfile(perm & 0o7777, uid, gid, linkable=not flags & os.O_EXCL)
    host_fd = inode.open_host_fd(flags & ~O_TMPFILE)
    # Linux names it "#<ino>" in /proc/PID/fd, below the directory it was made in
    named = Location(loc.mount, inode, loc, b"#%d" % inode.ino)
    return OpenResult(named, S_IFREG, host_fd, True, flags & ~O_TMPFILE | os.O_CREAT)


def _open_creat(op: PathOp, cred: Cred, flags: int, mode: int, umask: int) -> tuple[Location, bool]:
    w, pn = walk_to_parent(op)
    if pn.name in (b".", b".."):
        # a directory that exists: O_EXCL says so first
        if flags & os.O_EXCL:
            raise SyscallError(errno.EEXIST, "O_CREAT|O_EXCL on an existing directory")
        raise SyscallError(errno.EISDIR, "O_CREAT on a directory")
    if pn.trailing_slash:
        raise SyscallError(errno.EISDIR, "O_CREAT on a directory path")
    excl = bool(flags & os.O_EXCL)
    parent, name = pn.parent, pn.name
    while True:
        try:
            loc = w.step(parent, name)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
        else:
            if excl:
                raise SyscallError(errno.EEXIST, "O_CREAT|O_EXCL on an existing file")
            if loc.inode.is_symlink and not flags & os.O_NOFOLLOW:
                # a dangling symlink: create its target, wherever it points
                queue: deque[bytes] = deque()
                start = w.follow(parent, loc, queue)
                if loc.inode.is_magic_link and not queue:
                    return start, False
                target = loc.inode.readlink()
                if not queue or target.endswith(b"/"):
                    raise SyscallError(errno.EISDIR, "O_CREAT through a symlink to a directory")
                name = queue.pop()
                parent = w.walk(start, queue, follow_final=True, dir_final=True)
                w.search(parent)
                continue
            return loc, False
        pst = parent.inode.getattr()
        check_access(pst, cred, MAY_WRITE | 1)
        if parent.inode.fs.readonly:
            raise SyscallError(errno.EROFS, "create on a read-only file system")
        # setgid directories hand their group down, as on Linux
        perm, uid, gid = new_owner(cred, pst, S_IFREG | (mode & 0o7777 & ~umask))
        inode = parent.inode.create(name, perm & 0o7777, uid, gid)
        return Location(parent.mount, inode, parent, name), True
