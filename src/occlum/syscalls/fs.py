"""The path and file family: open, stat, directories, links, names, attributes.

Handlers decode arguments (user memory through ``t.mem``, a dirfd and a path into a
:class:`~occlum.vfs.path.PathOp`), call one VFS operation (:mod:`occlum.vfs.ops`,
:func:`~occlum.vfs.open.open_path`) and copy its result out; the rules are the VFS's. Regular
files and devices are donated as host descriptors (DESIGN 3.2), directories and O_PATH opens
as handle descriptors whose identity leads back to the LibOS object.

About 880 lines: some fifty calls, each short (copy in, one VFS operation, copy out); split by
sub-family (names, attributes, directories) when it grows.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from functools import partial
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.flagsets import OPENAT2, RESOLVE, XATTR
from occlum.abi.fsabi import (
    AT_EACCESS,
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    S_IFDIR,
    S_IFIFO,
    S_IFSOCK,
    Stat,
    pack_stat,
    pack_statfs,
    pack_statx,
)
from occlum.abi.syscalls import NR
from occlum.kernel.api import ID_UNCHANGED, PROCEED, Donate
from occlum.kernel.objects import FileRef
from occlum.syscalls.common import (
    fd_file_location,
    fd_file_ref,
    fd_location,
    fd_ref,
    path_op,
)
from occlum.syscalls.exec import program_running
from occlum.vfs import (
    OpenDirectory,
    open_path,
    ops,
    resolve,
)
from occlum.vfs.inode import Inode
from occlum.vfs.xattr import (
    XATTR_NAME_MAX,
    XATTR_SIZE_MAX,
)

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task
    from occlum.vfs.path import Location, ParentAndName

O_CLOEXEC = os.O_CLOEXEC
O_PATH = os.O_PATH
_O_PATH_FLAGS = os.O_DIRECTORY | os.O_NOFOLLOW | O_PATH | O_CLOEXEC  # Linux's O_PATH_FLAGS
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _path(t: Task, addr: int) -> bytes:
    return t.mem.read_cstring(addr)


def _resolve_at(
    libos: LibOS, t: Task, dirfd: int, path: bytes, flags: int, *, follow: bool = True
) -> Location:
    """The common *at() resolution: AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW and a dirfd base."""
    if not path:
        if flags & AT_EMPTY_PATH:
            return fd_location(libos, t, dirfd)
        raise SyscallError(errno.ENOENT, "empty path")
    return resolve(
        path_op(libos, t, dirfd, path, follow=follow and not flags & AT_SYMLINK_NOFOLLOW)
    )


def parent_at(libos: LibOS, t: Task, dirfd: int, path: bytes) -> ParentAndName:
    """The directory where ``path`` (relative to ``dirfd``) would be made or removed, which
    the caller may change."""
    return ops.parent_for_change(path_op(libos, t, dirfd, path))


# -- open ------------------------------------------------------------------------------------
def do_open(
    libos: LibOS, t: Task, dirfd: int, path: bytes, flags: int, mode: int, resolve_flags: int = 0
) -> Result:

    res = open_path(
        path_op(libos, t, dirfd, path, resolve_flags=resolve_flags),
        flags,
        mode & 0o7777,
        t.process.umask,
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
    if path.startswith(b"/") or dirfd == AT_FDCWD:
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
    return do_open(libos, t, AT_FDCWD, _path(t, path), flags, mode)


def sys_creat(libos: LibOS, t: Task, path: int, mode: int) -> Result:
    return do_open(libos, t, AT_FDCWD, _path(t, path), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)


def sys_openat(libos: LibOS, t: Task, dirfd: int, path: int, flags: int, mode: int) -> Result:
    return do_open(libos, t, dirfd, _path(t, path), flags, mode)


def sys_openat2(libos: LibOS, t: Task, dirfd: int, path: int, how: int, size: int) -> Result:
    if size < 24:
        raise SyscallError(errno.EINVAL, "open_how too small")
    raw = t.mem.read(how, min(size, 4096))
    flags, mode, rflags = struct.unpack_from("<QQQ", raw)
    if any(raw[24:]):
        raise SyscallError(errno.E2BIG, "unknown open_how fields")
    # the sets of open(2)'s flags and RESOLVE_*, refused here since they are not registers
    flags = OPENAT2.check(flags)
    rflags = RESOLVE.check(rflags)
    if flags & (os.O_CREAT | os.O_TMPFILE):
        if mode & ~0o7777:
            raise SyscallError(errno.EINVAL, "mode beyond 07777")
    elif mode:
        raise SyscallError(errno.EINVAL, "mode without O_CREAT")
    if flags & O_PATH and flags & ~_O_PATH_FLAGS:  # open(2) drops them (vfs/open.py)
        raise SyscallError(errno.EINVAL, "O_PATH with flags it does not take")
    return do_open(libos, t, dirfd, _path(t, path), flags, mode, rflags)


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
    name = _path(t, path)
    if not name and flags & AT_EMPTY_PATH and dirfd != AT_FDCWD:
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
    name = _path(t, path)
    if not name and flags & AT_EMPTY_PATH and dirfd != AT_FDCWD:
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
    ref = fd_ref(libos, t, fd)
    if ref is None:
        return PROCEED
    t.mem.write(buf, pack_statfs(ref.location.inode.fs.statfs()))
    return 0


# -- access, readlink --------------------------------------------------------------------------
def _access(libos: LibOS, t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    loc = _resolve_at(libos, t, dirfd, _path(t, path), flags & ~AT_EACCESS)
    ops.access(loc, t.cred, mode, effective=bool(flags & AT_EACCESS))
    return 0


def sys_access(libos: LibOS, t: Task, path: int, mode: int) -> int:
    return _access(libos, t, AT_FDCWD, path, mode, 0)


def sys_faccessat(libos: LibOS, t: Task, dirfd: int, path: int, mode: int) -> int:
    return _access(libos, t, dirfd, path, mode, 0)


def sys_faccessat2(libos: LibOS, t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    return _access(libos, t, dirfd, path, mode, flags)


def _readlink(libos: LibOS, t: Task, dirfd: int, path: int, buf: int, size: int) -> int:
    if size <= 0:
        raise SyscallError(errno.EINVAL, "bad buffer size")
    name = _path(t, path)
    loc = _resolve_at(libos, t, dirfd, name, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, follow=False)
    target = ops.readlink(loc, named=bool(name))[:size]
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
    ref = fd_ref(libos, t, fd)
    if ref is None or ref.path_only:
        raise SyscallError(errno.EBADF if ref else errno.ENOTDIR, "not a directory descriptor")
    od = ref.directory
    if od is None:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    # The directory position is the handle's own file offset, so that lseek/rewinddir (native
    # calls) and dup'd descriptors behave as on Linux.
    from occlum.platform import native

    copy = native.pidfd_getfd(t.process.pidfd, fd)
    try:
        od.pos = os.lseek(copy, 0, os.SEEK_CUR)
        data = od.getdents64(min(count, 1 << 20))
        os.lseek(copy, od.pos, os.SEEK_SET)
    finally:
        os.close(copy)
    return data


def sys_mkdirat(libos: LibOS, t: Task, dirfd: int, path: int, mode: int) -> int:
    ops.mkdir_at(path_op(libos, t, dirfd, _path(t, path)), mode, t.process.umask)
    return 0


def sys_mkdir(libos: LibOS, t: Task, path: int, mode: int) -> int:
    return sys_mkdirat(libos, t, AT_FDCWD, path, mode)


def sys_mknodat(libos: LibOS, t: Task, dirfd: int, path: int, mode: int, dev: int) -> int:
    ops.mknod_type(mode)  # before the name, as Linux
    ops.mknod_at(path_op(libos, t, dirfd, _path(t, path)), mode, t.process.umask)
    return 0


def sys_mknod(libos: LibOS, t: Task, path: int, mode: int, dev: int) -> int:
    return sys_mknodat(libos, t, AT_FDCWD, path, mode, dev)


def sys_unlinkat(libos: LibOS, t: Task, dirfd: int, path: int, flags: int) -> int:
    op = path_op(libos, t, dirfd, _path(t, path))
    if flags & AT_REMOVEDIR:
        ops.rmdir_at(op)
    else:
        # a socket file's name is free again, on the host too, when its last name goes
        ops.unlink_at(op, gone=libos.shadow.forget_socket if libos.shadow.host_sockets else None)
    return 0


def sys_unlink(libos: LibOS, t: Task, path: int) -> int:
    return sys_unlinkat(libos, t, AT_FDCWD, path, 0)


def sys_rmdir(libos: LibOS, t: Task, path: int) -> int:
    return sys_unlinkat(libos, t, AT_FDCWD, path, AT_REMOVEDIR)


def sys_renameat2(
    libos: LibOS, t: Task, olddirfd: int, oldpath: int, newdirfd: int, newpath: int, flags: int
) -> int:
    ops.rename_flags(flags)
    # Linux's order: the old name is found before the new directory descriptor is looked at
    old = parent_at(libos, t, olddirfd, _path(t, oldpath))
    new = parent_at(libos, t, newdirfd, _path(t, newpath))
    ops.rename_at(old, new, flags, t.cred)
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
    src = _resolve_at(libos, t, olddirfd, _path(t, oldpath), flags & AT_EMPTY_PATH,
                      follow=bool(flags & AT_SYMLINK_FOLLOW))  # fmt: skip
    ops.link_at(src, path_op(libos, t, newdirfd, _path(t, newpath)))
    return 0


def sys_link(libos: LibOS, t: Task, oldpath: int, newpath: int) -> int:
    return sys_linkat(libos, t, AT_FDCWD, oldpath, AT_FDCWD, newpath, 0)


def sys_symlinkat(libos: LibOS, t: Task, target: int, newdirfd: int, linkpath: int) -> int:
    text = _path(t, target)
    if not text:
        raise SyscallError(errno.ENOENT, "empty target")  # before the link's name is read
    ops.symlink_at(text, path_op(libos, t, newdirfd, _path(t, linkpath)))
    return 0


def sys_symlink(libos: LibOS, t: Task, target: int, linkpath: int) -> int:
    return sys_symlinkat(libos, t, target, AT_FDCWD, linkpath)


# -- cwd and root ----------------------------------------------------------------------------
def _set_cwd(libos: LibOS, t: Task, loc: Location) -> int:
    ops.may_chdir(loc, t.cred)
    libos.proctable.settle_children(t.process)
    t.process.cwd = loc
    return 0


def sys_chdir(libos: LibOS, t: Task, path: int) -> int:
    return _set_cwd(libos, t, _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0))


def sys_fchdir(libos: LibOS, t: Task, fd: int) -> int:
    ref = fd_ref(libos, t, fd)
    if ref is None:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    return _set_cwd(libos, t, ref.location)


def sys_chroot(libos: LibOS, t: Task, path: int) -> int:
    loc = _resolve_at(libos, t, AT_FDCWD, _path(t, path), 0)
    ops.may_chroot(loc, t.cred)
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
    ops.chmod(loc, t.cred, mode)
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
    # ids are unsigned 32-bit (up to 2^32-2, decoded by kind); 0xffffffff (-1) leaves one
    # unchanged
    ops.chown(
        loc, t.cred, None if uid == ID_UNCHANGED else uid, None if gid == ID_UNCHANGED else gid
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
    ops.utimes(loc, t.cred, atime, mtime, now)
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
    if path == 0 and dirfd != AT_FDCWD:
        # futimens: the descriptor's own file; no flag applies to it
        if flags:
            raise SyscallError(errno.EINVAL, "flags with a NULL path")
        loc = fd_file_location(libos, t, dirfd)
    else:
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
    if path == 0 and dirfd != AT_FDCWD:
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
    if length < 0:  # before the path is read, as Linux
        raise SyscallError(errno.EINVAL, "negative length")
    op = path_op(libos, t, AT_FDCWD, _path(t, path))
    ops.truncate(op, length, partial(program_running, libos))
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

    ref = fd_ref(libos, t, fd)
    if ref is None or arg == F_UNLCK:
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
    return _answer(t, ops.xattr_get(loc, t.cred, _xattr_name(t, name)), value, size)


def _listxattr(t: Task, loc: Location, buf: int, size: int) -> int:
    return _answer(t, ops.xattr_list(loc, t.cred), buf, size)


def _setxattr(t: Task, loc: Location, name: int, value: int, size: int, flags: int) -> int:
    key = _xattr_name(t, name)
    if size > XATTR_SIZE_MAX:
        raise SyscallError(errno.E2BIG, "attribute value larger than 64 KiB")
    data = t.mem.read(value, size) if size else b""
    ops.xattr_set(loc, t.cred, key, data, flags)
    return 0


def _removexattr(t: Task, loc: Location, name: int) -> int:
    ops.xattr_remove(loc, t.cred, _xattr_name(t, name))
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
    return _setxattr(t, loc, name, value, size, flags)


def sys_fsetxattr(
    libos: LibOS, t: Task, fd: int, name: int, value: int, size: int, flags: int
) -> Result:

    loc = _xattr_fd(libos, t, fd)
    return PROCEED if loc is None else _setxattr(t, loc, name, value, size, flags)


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
    name = _path(t, path) if path or not at_flags & AT_EMPTY_PATH else b""
    if name or not at_flags & AT_EMPTY_PATH:
        return _resolve_at(libos, t, dirfd, name, at_flags)
    if dirfd == AT_FDCWD:
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
    flags = XATTR.check(flags)  # not a register: the set is checked here
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
def _commit_if_protected(libos: LibOS, t: Task, fd: int, *, whole: bool = False) -> Result:
    ref = fd_file_ref(libos, t, fd)
    if ref is not None and ref.location.inode.fs in libos.filesystems.persistent():
        # a SEFS file: its volume commits (encrypts and writes) now, atomically
        inode = ref.location.inode
        if whole:
            inode.fs.sync()
        else:
            inode.fs.sync_file(inode)  # fsync, fdatasync: that file's contents, and the tree
        # a full host: the commit went through, but this file's (for syncfs: some file's)
        # contents did not fit
        for why in inode.fs.unstored(None if whole else inode):
            raise SyscallError(errno.ENOSPC, why)
        return 0
    return PROCEED  # host files and host objects: the kernel's own fsync


def sys_fsync(libos: LibOS, t: Task, fd: int) -> Result:
    return _commit_if_protected(libos, t, fd)


def sys_fdatasync(libos: LibOS, t: Task, fd: int) -> Result:
    return _commit_if_protected(libos, t, fd)


def sys_syncfs(libos: LibOS, t: Task, fd: int) -> Result:
    return _commit_if_protected(libos, t, fd, whole=True)


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
