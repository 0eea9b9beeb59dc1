"""The path and file family: open, stat, directories, links, names, attributes.

Handlers decode arguments (user memory through ``t.mem``), resolve through the VFS and answer;
regular files and devices are donated as host descriptors (DESIGN 3.2), directories and O_PATH
opens as handle descriptors whose identity leads back to the LibOS object.

Over 1 000 lines until the VFS work it does inline (``.``/``..``, EXDEV, EROFS, owner rules,
the umask) moves to ``vfs/ops.py`` (issue 13, item 5).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    AT_EACCESS,
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_NO_AUTOMOUNT,
    AT_REMOVEDIR,
    AT_STATX_SYNC_TYPE,
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    RESOLVE_ALL,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    S_ISGID,
    S_ISUID,
    S_ISVTX,
    Stat,
    pack_stat,
    pack_statfs,
    pack_statx,
)
from occlum.abi.syscalls import NR
from occlum.kernel.api import PROCEED, Donate
from occlum.kernel.objects import FileRef
from occlum.syscalls.common import (
    dirfd_base,
    fd_file_location,
    fd_file_ref,
    fd_location,
    fd_ref,
    s32,
    s64,
)
from occlum.syscalls.exec import program_running
from occlum.vfs import (
    OpenDirectory,
    check_access,
    check_rename,
    open_path,
    resolve,
    resolve_parent,
)
from occlum.vfs.cred import (
    CAP_CHOWN,
    CAP_DAC_OVERRIDE,
    CAP_FOWNER,
    CAP_FSETID,
    CAP_SYS_CHROOT,
    may_delete,
    new_owner,
)
from occlum.vfs.inode import MAY_EXEC, MAY_READ, MAY_WRITE, Inode
from occlum.vfs.xattr import (
    XATTR_CREATE,
    XATTR_NAME_MAX,
    XATTR_REPLACE,
    XATTR_SIZE_MAX,
)
from occlum.vfs.xattr import may_access as may_xattr
from occlum.vfs.xattr import visible as xattr_visible

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task
    from occlum.vfs.path import Location, ParentAndName

O_CLOEXEC = os.O_CLOEXEC
O_PATH = os.O_PATH
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
ID_UNCHANGED = 0xFFFFFFFF  # (uid_t)-1


def _path(t: Task, addr: int) -> bytes:
    return t.mem.read_cstring(addr)


def _resolve_at(
    libos: LibOS, t: Task, dirfd: int, path: bytes, flags: int, *, follow: bool = True
) -> Location:
    """The common *at() resolution: AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW and a dirfd base."""
    p = t.process
    if not path:
        if flags & AT_EMPTY_PATH:
            return fd_location(libos, t, dirfd)
        raise SyscallError(errno.ENOENT, "empty path")
    base = None if path.startswith(b"/") else dirfd_base(libos, t, dirfd)
    return resolve(p.root, p.cwd, path, follow_final=follow and not flags & AT_SYMLINK_NOFOLLOW,
                   dir_fd_base=base, cred=t.cred)  # fmt: skip


def parent_at(libos: LibOS, t: Task, dirfd: int, path: bytes):  # type: ignore[no-untyped-def]
    p = t.process
    if not path:
        raise SyscallError(errno.ENOENT, "empty path")
    base = None if path.startswith(b"/") else dirfd_base(libos, t, dirfd)
    pn = resolve_parent(p.root, p.cwd, path, dir_fd_base=base, cred=t.cred)
    if not t.cred.capable(CAP_DAC_OVERRIDE):
        check_access(pn.parent.inode.getattr(), t.cred, MAY_WRITE | MAY_EXEC)
    return pn


def _check_sticky(t: Task, pn: ParentAndName) -> None:
    """Removing or replacing ``pn`` in a sticky directory: the file's or the directory's
    owner only (or CAP_FOWNER), as Linux's may_delete."""
    dir_st = pn.parent.inode.getattr()
    if dir_st.mode & S_ISVTX and not t.cred.capable(CAP_FOWNER):
        try:
            child = pn.parent.inode.lookup(pn.name)
        except SyscallError:
            return  # no such name: the operation reports that
        may_delete(dir_st, child.getattr(), t.cred)


# -- open ------------------------------------------------------------------------------------
def do_open(
    libos: LibOS, t: Task, dirfd: int, path: bytes, flags: int, mode: int, resolve_flags: int = 0
) -> Result:

    p = t.process
    base = None if path.startswith(b"/") else (dirfd_base(libos, t, dirfd) if path else None)
    res = open_path(
        p.root,
        p.cwd,
        base,
        path,
        flags,
        mode & 0o7777,
        p.umask,
        t.cred,
        resolve_flags=resolve_flags,
        running=partial(program_running, libos),
    )
    cloexec = bool(flags & O_CLOEXEC)
    if res.host_fd is not None:
        inode = res.location.inode
        # not a reopened pipe, terminal, ...
        if inode.fs.fstype != "anon" and not inode.opens_other_object:
            libos.objects.register(res.host_fd, FileRef(res.location))
        return Donate(res.host_fd, cloexec)
    if res.kind == S_IFIFO and not flags & O_PATH:
        return _open_fifo(libos, t, dirfd, path, flags, res.location.inode, cloexec)
    if res.kind == S_IFSOCK and not flags & O_PATH:
        raise SyscallError(errno.ENXIO, "cannot open a socket")
    if res.kind == S_IFDIR and not flags & O_PATH:
        handle = res.location.inode.directory_handle()
        if handle is None:
            handle = libos.objects.make_dir_handle()
        ref = FileRef(res.location, OpenDirectory(res.location))
    else:
        handle = libos.objects.make_path_handle()
        ref = FileRef(res.location, None, path_only=True)
    libos.objects.register(handle, ref)
    return Donate(handle, cloexec)


def _open_fifo(
    libos: LibOS, t: Task, dirfd: int, path: bytes, flags: int, inode: Inode, cloexec: bool
) -> Result:
    """A LibOS FIFO is a host FIFO in the shadow root; the program opens it itself, at the
    path it gave, so a blocking open waits for the other end (and a signal interrupts it) as
    on Linux. A path relative to a directory descriptor cannot be found that way: then the
    LibOS opens the host FIFO without blocking (a reader does not wait for a writer, a writer
    without a reader gets ENXIO) and says so once."""

    if inode.fs.fstype == "hostfs":
        raise SyscallError(
            errno.ENXIO, "FIFOs on hostfs are not served (make them in ramfs or SEFS)"
        )
    if path.startswith(b"/") or s32(dirfd) == AT_FDCWD:
        libos.shadow.fifo(path, inode)
        return PROCEED
    name = libos.shadow.host_fifo(inode)
    libos.warn_once("fifo-dirfd", "a FIFO opened relative to a directory descriptor does not block")
    acc = flags & os.O_ACCMODE
    try:
        fd = os.open(name, acc | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=libos.shadow.fd)
    except OSError as exc:
        raise SyscallError(exc.errno or errno.ENXIO, "FIFO")
    if not flags & os.O_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return Donate(fd, cloexec)


def sys_open(libos: LibOS, t: Task, path: int, flags: int, mode: int) -> Result:
    return do_open(libos, t, AT_FDCWD, _path(t, path), s32(flags), mode)


def sys_creat(libos: LibOS, t: Task, path: int, mode: int) -> Result:
    return do_open(libos, t, AT_FDCWD, _path(t, path), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)


def sys_openat(libos: LibOS, t: Task, dirfd: int, path: int, flags: int, mode: int) -> Result:
    return do_open(libos, t, s32(dirfd), _path(t, path), s32(flags), mode)


def sys_openat2(libos: LibOS, t: Task, dirfd: int, path: int, how: int, size: int) -> Result:
    if size < 24:
        raise SyscallError(errno.EINVAL, "open_how too small")
    raw = t.mem.read(how, min(size, 4096))
    flags, mode, rflags = struct.unpack_from("<QQQ", raw)
    if any(raw[24:]):
        raise SyscallError(errno.E2BIG, "unknown open_how fields")
    if rflags & ~RESOLVE_ALL or flags >> 32:
        raise SyscallError(errno.EINVAL, "unknown flags")
    if rflags & RESOLVE_BENEATH and rflags & RESOLVE_IN_ROOT:
        raise SyscallError(errno.EINVAL, "RESOLVE_BENEATH with RESOLVE_IN_ROOT")
    if mode and not flags & (os.O_CREAT | os.O_TMPFILE):
        raise SyscallError(errno.EINVAL, "mode without O_CREAT")
    return do_open(libos, t, s32(dirfd), _path(t, path), flags, mode, rflags)


# -- stat ------------------------------------------------------------------------------------
def _stat_loc(loc: Location) -> bytes:
    return pack_stat(loc.inode.getattr())


def sys_stat(libos: LibOS, t: Task, path: int, buf: int) -> int:
    t.mem.write(buf, _stat_loc(_resolve_at(libos, t, AT_FDCWD, _path(t, path), 0)))
    return 0


def sys_lstat(libos: LibOS, t: Task, path: int, buf: int) -> int:
    t.mem.write(
        buf, _stat_loc(_resolve_at(libos, t, AT_FDCWD, _path(t, path), AT_SYMLINK_NOFOLLOW))
    )
    return 0


def _fd_stat_or_none(libos: LibOS, t: Task, fd: int) -> Stat | None:
    """The stat of descriptor ``fd``; None for host objects (the kernel's answer is right)."""
    fd = s32(fd)
    if fd < 0:
        raise SyscallError(errno.EBADF, "negative descriptor")
    try:
        ref, host = libos.objects.lookup_stat(t.process.host_pid, fd)
    except OSError:
        raise SyscallError(errno.EBADF, f"descriptor {fd} is not open")
    return None if ref is None else _fd_stat(ref, host)


def sys_fstat(libos: LibOS, t: Task, fd: int, buf: int) -> Result:

    st = _fd_stat_or_none(libos, t, fd)
    if st is None:
        return PROCEED  # a pipe, socket or other host object
    t.mem.write(buf, pack_stat(st))
    return 0


def _fd_stat(ref: FileRef, host: os.stat_result) -> Stat:
    """A descriptor's stat: the LibOS inode's, as ``stat`` on a name of it gives, with the
    size and times of the host object that native writes change (page-cache memfd, hostfs
    file), even after the last name is gone."""
    return ref.location.inode.fgetattr(host)


def sys_newfstatat(libos: LibOS, t: Task, dirfd: int, path: int, buf: int, flags: int) -> Result:

    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT):
        raise SyscallError(errno.EINVAL, "bad flags")
    name = _path(t, path)
    if not name and flags & AT_EMPTY_PATH and s32(dirfd) != AT_FDCWD:
        st = _fd_stat_or_none(libos, t, dirfd)
        if st is None:
            return PROCEED
        t.mem.write(buf, pack_stat(st))
        return 0
    t.mem.write(buf, _stat_loc(_resolve_at(libos, t, dirfd, name, flags)))
    return 0


def sys_statx(
    libos: LibOS, t: Task, dirfd: int, path: int, flags: int, mask: int, buf: int
) -> Result:

    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE) or (
        flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
    ):
        raise SyscallError(errno.EINVAL, "bad flags")
    if mask & 0x80000000:
        raise SyscallError(errno.EINVAL, "reserved statx mask bit")
    name = _path(t, path)
    if not name and flags & AT_EMPTY_PATH and s32(dirfd) != AT_FDCWD:
        st = _fd_stat_or_none(libos, t, dirfd)
        if st is None:
            return PROCEED
        loc = fd_location(libos, t, dirfd)
    else:
        loc = _resolve_at(libos, t, dirfd, name, flags)
        st = loc.inode.getattr()
    t.mem.write(buf, pack_statx(st, mask, loc.mount.mount_id))
    return 0


def sys_statfs(libos: LibOS, t: Task, path: int, buf: int) -> int:
    loc = _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0)
    t.mem.write(buf, pack_statfs(loc.inode.fs.statfs()))
    return 0


def sys_fstatfs(libos: LibOS, t: Task, fd: int, buf: int) -> Result:

    ref = fd_ref(libos, t, s32(fd))
    if ref is None:
        return PROCEED
    t.mem.write(buf, pack_statfs(ref.location.inode.fs.statfs()))
    return 0


# -- access, readlink --------------------------------------------------------------------------
def _access(libos: LibOS, t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    if flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL, "bad flags")
    if mode & ~7:
        raise SyscallError(errno.EINVAL, "bad access mode")
    loc = _resolve_at(libos, t, dirfd, _path(t, path), flags & ~AT_EACCESS)
    st = loc.inode.getattr()
    want = (
        (MAY_READ if mode & 4 else 0)
        | (MAY_WRITE if mode & 2 else 0)
        | (MAY_EXEC if mode & 1 else 0)
    )
    if want:
        # access() asks with the real ids (and, for a real uid other than 0, no
        # capabilities); faccessat2's AT_EACCESS with the effective ones
        c = t.cred
        if not flags & AT_EACCESS:
            c = replace(
                c, fsuid=c.uid, fsgid=c.gid, cap_effective=c.cap_permitted if c.uid == 0 else 0
            )
        check_access(st, c, want)
    if mode & 2 and loc.inode.fs.readonly and (st.mode & S_IFMT) in (S_IFREG, S_IFDIR):
        raise SyscallError(errno.EROFS, "read-only file system")
    return 0


def sys_access(libos: LibOS, t: Task, path: int, mode: int) -> int:
    return _access(libos, t, AT_FDCWD, path, mode, 0)


def sys_faccessat(libos: LibOS, t: Task, dirfd: int, path: int, mode: int) -> int:
    return _access(libos, t, dirfd, path, mode, 0)


def sys_faccessat2(libos: LibOS, t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    return _access(libos, t, dirfd, path, mode, flags)


def _readlink(libos: LibOS, t: Task, dirfd: int, path: int, buf: int, size: int) -> int:
    if s32(size) <= 0:
        raise SyscallError(errno.EINVAL, "bad buffer size")
    loc = _resolve_at(
        libos, t, dirfd, _path(t, path), AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, follow=False
    )
    if not loc.inode.is_symlink:
        empty = not _path(t, path)
        raise SyscallError(errno.ENOENT if empty else errno.EINVAL, "not a symbolic link")
    target = loc.inode.readlink()[:size]
    t.mem.write(buf, target)
    return len(target)


def sys_readlink(libos: LibOS, t: Task, path: int, buf: int, size: int) -> int:
    return _readlink(libos, t, AT_FDCWD, path, buf, size)


def sys_readlinkat(libos: LibOS, t: Task, dirfd: int, path: int, buf: int, size: int) -> int:
    return _readlink(libos, t, dirfd, path, buf, size)


# -- directories ----------------------------------------------------------------------------
def sys_getdents64(libos: LibOS, t: Task, fd: int, buf: int, count: int) -> int:
    data = _dirents64(libos, t, fd, count)
    t.mem.write(buf, data)
    return len(data)


_DIRENT_HEAD = 18  # d_ino, d_off, d_reclen: the same in both layouts


def sys_getdents(libos: LibOS, t: Task, fd: int, buf: int, count: int) -> int:
    """The old ``linux_dirent`` layout: the name right after d_reclen, then its NUL, and
    d_type in the record's last byte. A record is exactly as long as its ``linux_dirent64``
    (both are the 18-byte head, the name, two bytes, rounded up to 8), so the listing is the
    getdents64 one with each record's bytes moved."""
    data = _dirents64(libos, t, fd, count)
    out = bytearray(len(data))
    at = 0
    while at < len(data):
        reclen = int.from_bytes(data[at + 16 : at + 18], "little")
        dtype = data[at + _DIRENT_HEAD]
        name = data[at + _DIRENT_HEAD + 1 : at + reclen].split(b"\0", 1)[0]
        out[at : at + _DIRENT_HEAD] = data[at : at + _DIRENT_HEAD]
        out[at + _DIRENT_HEAD : at + _DIRENT_HEAD + len(name)] = name
        out[at + reclen - 1] = dtype
        at += reclen
    t.mem.write(buf, bytes(out))
    return len(out)


def _dirents64(libos: LibOS, t: Task, fd: int, count: int) -> bytes:
    """The next ``linux_dirent64`` records of the program's directory ``fd``, at most
    ``count`` bytes of them."""
    ref = fd_ref(libos, t, s32(fd))
    if ref is None or ref.path_only:
        raise SyscallError(errno.EBADF if ref else errno.ENOTDIR, "not a directory descriptor")
    od = ref.directory
    if od is None:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    # The directory position is the handle's own file offset, so that lseek/rewinddir (native
    # calls) and dup'd descriptors behave as on Linux.
    from occlum.platform import native

    copy = native.pidfd_getfd(t.process.pidfd, s32(fd))
    try:
        od.pos = os.lseek(copy, 0, os.SEEK_CUR)
        data = od.getdents64(min(count, 1 << 20))
        os.lseek(copy, od.pos, os.SEEK_SET)
    finally:
        os.close(copy)
    return data


def sys_mkdirat(libos: LibOS, t: Task, dirfd: int, path: int, mode: int) -> int:
    p = t.process
    pn = parent_at(libos, t, dirfd, _path(t, path))
    pn.check_new(want_dir=True)
    # as Linux: no set-id bit from the mode; a set-group-id parent passes on its group and
    # its S_ISGID
    perm, gid = mode & 0o1777 & ~p.umask, t.cred.fsgid
    parent = pn.parent.inode.getattr()
    if parent.mode & S_ISGID:
        perm, gid = perm | S_ISGID, parent.gid
    pn.parent.inode.mkdir(pn.name, perm, t.cred.fsuid, gid)
    return 0


def sys_mkdir(libos: LibOS, t: Task, path: int, mode: int) -> int:
    return sys_mkdirat(libos, t, AT_FDCWD, path, mode)


def sys_mknodat(libos: LibOS, t: Task, dirfd: int, path: int, mode: int, dev: int) -> int:
    p = t.process
    kind = mode & S_IFMT or S_IFREG
    # Linux's order: the type first (may_mknod), then the name (filename_create), then the
    # right to make a device, which a program never has here (no CAP_MKNOD)
    if kind == S_IFDIR:
        raise SyscallError(errno.EPERM, "use mkdir")
    if kind not in (S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK):
        raise SyscallError(errno.EINVAL, "unknown file type")
    pn = parent_at(libos, t, dirfd, _path(t, path))
    pn.check_new()
    if kind in (S_IFCHR, S_IFBLK):
        try:
            pn.parent.inode.lookup(pn.name)
        except SyscallError as exc:
            if exc.errno != errno.ENOENT:
                raise
            raise SyscallError(errno.EPERM, "device nodes cannot be created in the LibOS")
        raise SyscallError(errno.EEXIST, "the name exists")
    perm, uid, gid = new_owner(t.cred, pn.parent.inode.getattr(), mode & 0o7777 & ~p.umask)
    if kind == S_IFREG:
        pn.parent.inode.create(pn.name, perm, uid, gid)
    else:
        pn.parent.inode.mknod(pn.name, kind | perm, 0, uid, gid)
    return 0


def sys_mknod(libos: LibOS, t: Task, path: int, mode: int, dev: int) -> int:
    return sys_mknodat(libos, t, AT_FDCWD, path, mode, dev)


def sys_unlinkat(libos: LibOS, t: Task, dirfd: int, path: int, flags: int) -> int:
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL, "bad flags")
    pn = parent_at(libos, t, dirfd, _path(t, path))
    _check_sticky(t, pn)
    if flags & AT_REMOVEDIR:
        if pn.name == b".":
            raise SyscallError(errno.EINVAL, "cannot remove '.'")
        if pn.name == b"..":
            raise SyscallError(errno.ENOTEMPTY, "cannot remove '..'")
        child = pn.parent.inode.lookup(pn.name)
        if child.is_dir and pn.parent.mount.table.covering(pn.parent.mount, child.ino):
            raise SyscallError(errno.EBUSY, "a file system is mounted there")
        pn.parent.inode.rmdir(pn.name)
    else:
        if pn.trailing_slash:
            child = pn.parent.inode.lookup(pn.name)
            raise SyscallError(errno.EISDIR if child.is_dir else errno.ENOTDIR, "trailing slash")
        if pn.name in (b".", b".."):
            raise SyscallError(errno.EISDIR, "is a directory")
        child = pn.parent.inode.lookup(pn.name) if libos.shadow.host_sockets else None
        pn.parent.inode.unlink(pn.name)
        if child is not None and child.getattr().nlink == 0:
            libos.shadow.forget_socket(child)  # a socket file's name is free again, on the host too
    return 0


def sys_unlink(libos: LibOS, t: Task, path: int) -> int:
    return sys_unlinkat(libos, t, AT_FDCWD, path, 0)


def sys_rmdir(libos: LibOS, t: Task, path: int) -> int:
    return sys_unlinkat(libos, t, AT_FDCWD, path, AT_REMOVEDIR)


def sys_renameat2(
    libos: LibOS, t: Task, olddirfd: int, oldpath: int, newdirfd: int, newpath: int, flags: int
) -> int:
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) or (
        flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)
    ):
        raise SyscallError(errno.EINVAL, "bad rename flags")
    if flags & RENAME_WHITEOUT:
        raise SyscallError(errno.EINVAL, "RENAME_WHITEOUT is not supported")
    old = parent_at(libos, t, olddirfd, _path(t, oldpath))
    new = parent_at(libos, t, newdirfd, _path(t, newpath))
    check_rename(old, new, flags)
    _check_sticky(t, old)
    _check_sticky(t, new)
    old.parent.inode.rename(old.name, new.parent.inode, new.name, flags)
    return 0


def sys_renameat(
    libos: LibOS, t: Task, olddirfd: int, oldpath: int, newdirfd: int, newpath: int
) -> int:
    return sys_renameat2(libos, t, olddirfd, oldpath, newdirfd, newpath, 0)


def sys_rename(libos: LibOS, t: Task, oldpath: int, newpath: int) -> int:
    return sys_renameat2(libos, t, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


def sys_linkat(
    libos: LibOS, t: Task, olddirfd: int, oldpath: int, newdirfd: int, newpath: int, flags: int
) -> int:
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL, "bad flags")
    src = _resolve_at(libos, t, olddirfd, _path(t, oldpath), flags & AT_EMPTY_PATH,
                      follow=bool(flags & AT_SYMLINK_FOLLOW))  # fmt: skip
    if src.inode.is_dir:
        raise SyscallError(errno.EPERM, "hard link to a directory")
    pn = parent_at(libos, t, newdirfd, _path(t, newpath))
    pn.check_new()
    if src.mount is not pn.parent.mount:
        raise SyscallError(errno.EXDEV, "link across mounts")
    pn.parent.inode.link(pn.name, src.inode)
    return 0


def sys_link(libos: LibOS, t: Task, oldpath: int, newpath: int) -> int:
    return sys_linkat(libos, t, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


def sys_symlinkat(libos: LibOS, t: Task, target: int, newdirfd: int, linkpath: int) -> int:
    text = _path(t, target)
    if not text:
        raise SyscallError(errno.ENOENT, "empty target")
    pn = parent_at(libos, t, newdirfd, _path(t, linkpath))
    pn.check_new()
    _perm, uid, gid = new_owner(t.cred, pn.parent.inode.getattr(), 0o777)
    pn.parent.inode.symlink(pn.name, text, uid, gid)
    return 0


def sys_symlink(libos: LibOS, t: Task, target: int, linkpath: int) -> int:
    return sys_symlinkat(libos, t, target, AT_FDCWD, linkpath)


# -- cwd and root ----------------------------------------------------------------------------
def _set_cwd(libos: LibOS, t: Task, loc: Location) -> int:
    if not loc.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    check_access(loc.inode.getattr(), t.cred, MAY_EXEC)
    libos.proctable.settle_children(t.process)
    t.process.cwd = loc
    return 0


def sys_chdir(libos: LibOS, t: Task, path: int) -> int:
    return _set_cwd(libos, t, _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0))


def sys_fchdir(libos: LibOS, t: Task, fd: int) -> int:
    ref = fd_ref(libos, t, s32(fd))
    if ref is None:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    return _set_cwd(libos, t, ref.location)


def sys_chroot(libos: LibOS, t: Task, path: int) -> int:
    loc = _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0)
    if not loc.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    if not t.cred.capable(CAP_SYS_CHROOT):
        raise SyscallError(errno.EPERM, "chroot needs CAP_SYS_CHROOT")
    libos.proctable.settle_children(t.process)
    t.process.root = loc
    return 0


def sys_getcwd(libos: LibOS, t: Task, buf: int, size: int) -> int:
    p = t.process
    path = p.cwd.absolute_path(p.root) + b"\0"
    if size < len(path):
        raise SyscallError(errno.ERANGE, "buffer too small")
    t.mem.write(buf, path)
    return len(path)


def sys_umask(libos: LibOS, t: Task, mask: int) -> int:
    p = t.process
    old = p.umask
    libos.proctable.settle_children(p)
    p.umask = mask & 0o777
    return old


# -- attributes ------------------------------------------------------------------------------
def _chmod(t: Task, loc: Location, mode: int) -> int:
    st = loc.inode.getattr()
    cred = t.cred
    if not cred.owns(st):
        raise SyscallError(errno.EPERM, "not the owner")
    mode &= 0o7777
    if mode & S_ISGID and not cred.in_group(st.gid) and not cred.capable(CAP_FSETID):
        mode &= ~S_ISGID  # Linux drops it silently for a caller outside the file's group
    loc.inode.setattr(mode=mode)
    return 0


def sys_chmod(libos: LibOS, t: Task, path: int, mode: int) -> int:
    return _chmod(t, _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0), mode)


def sys_fchmod(libos: LibOS, t: Task, fd: int, mode: int) -> int:
    return _chmod(t, fd_file_location(libos, t, fd), mode)


def sys_fchmodat(libos: LibOS, t: Task, dirfd: int, path: int, mode: int) -> int:
    return _chmod(t, _resolve_at(libos, t, dirfd, _path(t, path), 0), mode)


def sys_fchmodat2(libos: LibOS, t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    loc = _resolve_at(libos, t, dirfd, _path(t, path), flags)
    if loc.inode.is_symlink:
        raise SyscallError(errno.EOPNOTSUPP, "cannot chmod a symlink")
    return _chmod(t, loc, mode)


def _chown(t: Task, loc: Location, uid: int, gid: int) -> int:
    # ids are unsigned 32-bit (up to 2^32-2); 0xffffffff (-1) leaves one unchanged
    uid, gid = uid & ID_UNCHANGED, gid & ID_UNCHANGED
    st = loc.inode.getattr()
    cred = t.cred
    if not cred.capable(CAP_CHOWN):
        # Linux's chown_ok and chgrp_ok: the owner may give the file to a group of its own
        if uid != ID_UNCHANGED and not (cred.fsuid == st.uid == uid):
            raise SyscallError(errno.EPERM, "only root may give a file to another user")
        if gid != ID_UNCHANGED and not (
            cred.fsuid == st.uid and (cred.in_group(gid) or gid == st.gid)
        ):
            raise SyscallError(errno.EPERM, "not the owner, or not a group of the caller's")
    mode = None
    if not loc.inode.is_dir:
        # Linux drops a regular file's set-user-id bit (and set-group-id with group exec) at
        # every chown, even root's and even to the same ids
        m = st.mode
        kill = S_ISUID | (S_ISGID if m & 0o010 else 0)
        if m & kill:
            mode = m & 0o7777 & ~kill
    loc.inode.setattr(
        mode=mode,
        uid=None if uid == ID_UNCHANGED else uid,
        gid=None if gid == ID_UNCHANGED else gid,
    )
    return 0


def sys_chown(libos: LibOS, t: Task, path: int, uid: int, gid: int) -> int:
    return _chown(t, _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0), uid, gid)


def sys_lchown(libos: LibOS, t: Task, path: int, uid: int, gid: int) -> int:
    return _chown(t, _resolve_at(libos, t, AT_FDCWD, _path(t, path), AT_SYMLINK_NOFOLLOW), uid, gid)


def sys_fchown(libos: LibOS, t: Task, fd: int, uid: int, gid: int) -> int:
    return _chown(t, fd_file_location(libos, t, fd), uid, gid)


def sys_fchownat(
    libos: LibOS, t: Task, dirfd: int, path: int, uid: int, gid: int, flags: int
) -> int:
    return _chown(t, _resolve_at(libos, t, dirfd, _path(t, path), flags), uid, gid)


def _times(
    t: Task, loc: Location, atime: int | None, mtime: int | None, now: int | None = None
) -> int:
    """Set the times; who may (Linux's utimes rules): any explicit time needs the owner (or
    CAP_FOWNER), EPERM; "now" needs the owner or write permission, EACCES."""
    if atime is None and mtime is None:
        return 0
    st = loc.inode.getattr()
    if not t.cred.owns(st):
        if any(v is not None and v != now for v in (atime, mtime)):
            raise SyscallError(errno.EPERM, "only the owner may set explicit times")
        check_access(st, t.cred, MAY_WRITE)
    loc.inode.setattr(atime_ns=atime, mtime_ns=mtime)
    return 0


def _ts(sec: int, nsec: int, now: int) -> int | None:
    if nsec == UTIME_OMIT:
        return None
    if nsec == UTIME_NOW:
        return now
    if not 0 <= nsec < 1_000_000_000:
        raise SyscallError(errno.EINVAL, "bad tv_nsec")
    return sec * 1_000_000_000 + nsec


def sys_utimensat(libos: LibOS, t: Task, dirfd: int, path: int, times: int, flags: int) -> int:
    import time

    now = time.time_ns()
    stamps = None if times == 0 else struct.unpack("<qqqq", t.mem.read(times, 32))
    if path == 0 and s32(dirfd) != AT_FDCWD:
        # futimens: the descriptor's own file; no flag applies to it
        if flags:
            raise SyscallError(errno.EINVAL, "flags with a NULL path")
        loc = fd_file_location(libos, t, dirfd)
    else:
        if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
            raise SyscallError(errno.EINVAL, "bad flags")
        if path == 0:
            raise SyscallError(errno.EFAULT, "NULL path")
        loc = _resolve_at(libos, t, dirfd, _path(t, path), flags)
    if stamps is None:
        return _times(t, loc, now, now, now)
    a_s, a_ns, m_s, m_ns = stamps
    return _times(t, loc, _ts(a_s, a_ns, now), _ts(m_s, m_ns, now), now)


def sys_utimes(libos: LibOS, t: Task, path: int, times: int) -> int:
    return sys_futimesat(libos, t, AT_FDCWD, path, times)


def sys_futimesat(libos: LibOS, t: Task, dirfd: int, path: int, times: int) -> int:
    """utimes relative to ``dirfd``; a NULL path names ``dirfd`` itself (not AT_FDCWD)."""
    import time

    if times:
        a_s, a_us, m_s, m_us = struct.unpack("<qqqq", t.mem.read(times, 32))
        if not (0 <= a_us < 1_000_000 and 0 <= m_us < 1_000_000):
            raise SyscallError(errno.EINVAL, "microseconds out of range")
    if path == 0 and s32(dirfd) != AT_FDCWD:
        loc = fd_location(libos, t, dirfd)
    else:
        loc = _resolve_at(libos, t, dirfd, _path(t, path), 0)
    if times == 0:
        now = time.time_ns()
        return _times(t, loc, now, now, now)
    return _times(t, loc, a_s * 10**9 + a_us * 1000, m_s * 10**9 + m_us * 1000)


def sys_utime(libos: LibOS, t: Task, path: int, times: int) -> int:
    import time

    loc = _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0)
    if times == 0:
        now = time.time_ns()
        return _times(t, loc, now, now, now)
    a, m = struct.unpack("<qq", t.mem.read(times, 16))
    return _times(t, loc, a * 10**9, m * 10**9)


def sys_truncate(libos: LibOS, t: Task, path: int, length: int) -> int:
    length = s64(length)
    if length < 0:
        raise SyscallError(errno.EINVAL, "negative length")
    loc = _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0)
    if loc.inode.is_dir:
        raise SyscallError(errno.EISDIR, "is a directory")
    check_access(loc.inode.getattr(), t.cred, MAY_WRITE)
    if loc.inode.fs.readonly:
        raise SyscallError(errno.EROFS, "read-only file system")
    if program_running(libos, loc.inode):
        raise SyscallError(errno.ETXTBSY, "the file is a running program")
    loc.inode.setattr(size=length)
    return 0


# -- fcntl -----------------------------------------------------------------------------------
F_SETLEASE = 1024
F_UNLCK = 2


def sys_fcntl(libos: LibOS, t: Task, fd: int, cmd: int, arg: int) -> Result:
    """fcntl(F_SETLEASE), the only command the filter sends here (the others run natively).

    A lease on a LibOS file would be on the host object behind it (the page cache's memfd, a
    hostfs file), and another program's open of the file for writing is the supervisor's own
    open of that object: the kernel would hold the supervisor, and every program it serves,
    until the lease holder lets go or the host's lease-break-time passes. So LibOS files
    take no leases (``EINVAL``, as from a Linux file system without them); a program's own
    objects (a memfd it made) and a release proceed."""

    ref = fd_ref(libos, t, s32(fd))
    if ref is None or s32(arg) == F_UNLCK:
        return PROCEED
    raise SyscallError(errno.EINVAL, "no leases on LibOS files (a break would hold the LibOS)")


# -- extended attributes ----------------------------------------------------------------------
# f*xattr on a host object (a pipe, socket, memfd or eventfd the program holds) proceed: those
# are the program's own kernel objects, and no file of the host is behind them.
def _xattr_target(libos: LibOS, t: Task, path: int, follow: bool) -> Location:
    return _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0 if follow else AT_SYMLINK_NOFOLLOW)


def _xattr_fd(libos: LibOS, t: Task, fd: int) -> Location | None:
    """The LibOS file behind ``fd``; None for a host object (pipe, socket, memfd...), whose
    attributes are the kernel's to serve."""
    ref = fd_file_ref(libos, t, fd)
    return None if ref is None else ref.location


def _xattr_name(t: Task, addr: int) -> bytes:
    try:
        name = t.mem.read_cstring(addr, XATTR_NAME_MAX)
    except SyscallError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise SyscallError(errno.ERANGE, "attribute name longer than 255 bytes")
        raise
    if not name:
        raise SyscallError(errno.ERANGE, "empty attribute name")
    return name


def _answer(t: Task, data: bytes, buf: int, size: int) -> int:
    """Linux's sizing: size 0 asks for the length, a buffer too small is ERANGE."""
    if size == 0:
        return len(data)
    if len(data) > min(size, XATTR_SIZE_MAX):
        raise SyscallError(errno.ERANGE, "buffer too small")
    t.mem.write(buf, data)
    return len(data)


def _getxattr(t: Task, loc: Location, name: int, value: int, size: int) -> int:
    key = _xattr_name(t, name)
    may_xattr(loc.inode, key, t.cred, write=False)
    return _answer(t, loc.inode.get_xattr(key), value, size)


def _listxattr(t: Task, loc: Location, buf: int, size: int) -> int:
    cred = t.cred
    names = b"".join(n + b"\0" for n in loc.inode.list_xattr() if xattr_visible(n, cred))
    return _answer(t, names, buf, size)


def _setxattr(t: Task, loc: Location, name: int, value: int, size: int, flags: int) -> int:
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise SyscallError(errno.EINVAL, "bad flags")
    key = _xattr_name(t, name)
    if size > XATTR_SIZE_MAX:
        raise SyscallError(errno.E2BIG, "attribute value larger than 64 KiB")
    data = t.mem.read(value, size) if size else b""
    if loc.inode.fs.readonly:
        raise SyscallError(errno.EROFS, "read-only file system")
    may_xattr(loc.inode, key, t.cred, write=True)
    loc.inode.set_xattr(key, data, flags)
    return 0


def _removexattr(t: Task, loc: Location, name: int) -> int:
    key = _xattr_name(t, name)
    if loc.inode.fs.readonly:
        raise SyscallError(errno.EROFS, "read-only file system")
    may_xattr(loc.inode, key, t.cred, write=True)
    loc.inode.remove_xattr(key)
    return 0


def sys_getxattr(libos: LibOS, t: Task, path: int, name: int, value: int, size: int) -> int:
    return _getxattr(t, _xattr_target(libos, t, path, t.nr != NR["lgetxattr"]), name, value, size)


def sys_fgetxattr(libos: LibOS, t: Task, fd: int, name: int, value: int, size: int) -> Result:

    loc = _xattr_fd(libos, t, fd)
    return PROCEED if loc is None else _getxattr(t, loc, name, value, size)


def sys_listxattr(libos: LibOS, t: Task, path: int, buf: int, size: int) -> int:
    return _listxattr(t, _xattr_target(libos, t, path, t.nr != NR["llistxattr"]), buf, size)


def sys_flistxattr(libos: LibOS, t: Task, fd: int, buf: int, size: int) -> Result:

    loc = _xattr_fd(libos, t, fd)
    return PROCEED if loc is None else _listxattr(t, loc, buf, size)


def sys_setxattr(
    libos: LibOS, t: Task, path: int, name: int, value: int, size: int, flags: int
) -> int:
    loc = _xattr_target(libos, t, path, t.nr != NR["lsetxattr"])
    return _setxattr(t, loc, name, value, size, s32(flags))


def sys_fsetxattr(
    libos: LibOS, t: Task, fd: int, name: int, value: int, size: int, flags: int
) -> Result:

    loc = _xattr_fd(libos, t, fd)
    return PROCEED if loc is None else _setxattr(t, loc, name, value, size, s32(flags))


def sys_removexattr(libos: LibOS, t: Task, path: int, name: int) -> int:
    return _removexattr(t, _xattr_target(libos, t, path, t.nr != NR["lremovexattr"]), name)


def sys_fremovexattr(libos: LibOS, t: Task, fd: int, name: int) -> Result:

    loc = _xattr_fd(libos, t, fd)
    return PROCEED if loc is None else _removexattr(t, loc, name)


# Linux 6.13's *at forms: a dirfd, AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH (an empty or NULL
# path names the dirfd itself, as the f* forms), and for get and set a struct xattr_args.
_XATTR_ARGS = struct.Struct("<QII")  # value pointer, size, flags
_PAGE = 4096


def _xattr_at(libos: LibOS, t: Task, dirfd: int, path: int, at_flags: int) -> Location | None:
    """The file a *xattrat call names; None for a host object named by its descriptor."""
    at_flags = s32(at_flags)
    if at_flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL, "unknown AT_ flags")
    name = _path(t, path) if path or not at_flags & AT_EMPTY_PATH else b""
    if name or not at_flags & AT_EMPTY_PATH:
        return _resolve_at(libos, t, dirfd, name, at_flags)
    if s32(dirfd) == AT_FDCWD:
        raise SyscallError(errno.EBADF, "AT_EMPTY_PATH with AT_FDCWD")
    return _xattr_fd(libos, t, dirfd)


def _xattr_args(t: Task, uargs: int, usize: int) -> tuple[int, int, int]:
    if usize < _XATTR_ARGS.size:
        raise SyscallError(errno.EINVAL, "struct xattr_args too small")
    if usize > _PAGE:
        raise SyscallError(errno.E2BIG, "struct xattr_args too large")
    raw = t.mem.read(uargs, usize)
    if any(raw[_XATTR_ARGS.size :]):
        raise SyscallError(errno.E2BIG, "unknown fields of struct xattr_args set")
    value, size, flags = _XATTR_ARGS.unpack_from(raw)
    return value, size, flags


def sys_setxattrat(
    libos: LibOS, t: Task, dirfd: int, path: int, at_flags: int, name: int, uargs: int, usize: int
) -> Result:

    value, size, flags = _xattr_args(t, uargs, usize)
    loc = _xattr_at(libos, t, dirfd, path, at_flags)
    return PROCEED if loc is None else _setxattr(t, loc, name, value, size, flags)


def sys_getxattrat(
    libos: LibOS, t: Task, dirfd: int, path: int, at_flags: int, name: int, uargs: int, usize: int
) -> Result:

    value, size, flags = _xattr_args(t, uargs, usize)
    if flags:
        raise SyscallError(errno.EINVAL, "getxattrat takes no flags")
    loc = _xattr_at(libos, t, dirfd, path, at_flags)
    return PROCEED if loc is None else _getxattr(t, loc, name, value, size)


def sys_listxattrat(
    libos: LibOS, t: Task, dirfd: int, path: int, at_flags: int, buf: int, size: int
) -> Result:

    loc = _xattr_at(libos, t, dirfd, path, at_flags)
    return PROCEED if loc is None else _listxattr(t, loc, buf, size)


def sys_removexattrat(
    libos: LibOS, t: Task, dirfd: int, path: int, at_flags: int, name: int
) -> Result:

    loc = _xattr_at(libos, t, dirfd, path, at_flags)
    return PROCEED if loc is None else _removexattr(t, loc, name)


# -- write-back ----------------------------------------------------------------------------------
def _commit_if_protected(libos: LibOS, t: Task, fd: int) -> Result:

    ref = fd_file_ref(libos, t, fd)
    if ref is not None and ref.location.inode.fs in libos.filesystems.persistent():
        # a SEFS file: its volume commits (encrypts and writes) now, atomically
        ref.location.inode.fs.sync()
        return 0
    return PROCEED  # host files and host objects: the kernel's own fsync


def sys_fsync(libos: LibOS, t: Task, fd: int) -> Result:
    return _commit_if_protected(libos, t, fd)


def sys_fdatasync(libos: LibOS, t: Task, fd: int) -> Result:
    return _commit_if_protected(libos, t, fd)


def sys_syncfs(libos: LibOS, t: Task, fd: int) -> Result:
    return _commit_if_protected(libos, t, fd)


MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4


def sys_msync(libos: LibOS, t: Task, addr: int, length: int, flags: int) -> Result:
    """msync(MS_SYNC): stores through a shared mapping of a SEFS file reach the page cache
    directly, and the next commit takes them; which files the range maps is not known without
    reading /proc/PID/maps, so every protected file system commits (a volume with no change
    costs little). The kernel then checks the range and flags and does its own part."""

    if flags & MS_SYNC and not flags & MS_ASYNC:
        libos.filesystems.sync()
    return PROCEED


def sys_sync(libos: LibOS, t: Task) -> Result:

    libos.filesystems.sync()
    return PROCEED  # and the host's own sync, for hostfs
