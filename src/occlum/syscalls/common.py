"""What the syscall families share once the serving loop has decoded the arguments by kind
(``kernel/api.py``): descriptors to LibOS objects, a dirfd and a path to a ``PathOp``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import AT_FDCWD
from occlum.kernel.objects import FileRef
from occlum.vfs.path import PathOp

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task
    from occlum.vfs.path import Location


def fd_ref(libos: LibOS, t: Task, fd: int) -> FileRef | None:
    """The LibOS object behind ``fd``; None for host-only objects; EBADF if not open."""
    if fd < 0:
        raise SyscallError(errno.EBADF, "negative descriptor")
    try:
        return libos.objects.lookup(t.process.host_pid, fd)
    except OSError:
        raise SyscallError(errno.EBADF, f"descriptor {fd} is not open")


def dirfd_base(libos: LibOS, t: Task, dirfd: int) -> Location:
    if dirfd == AT_FDCWD:
        return t.process.cwd
    ref = fd_ref(libos, t, dirfd)
    if ref is None:
        raise SyscallError(errno.ENOTDIR, "descriptor is not a directory")
    if not ref.location.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "descriptor is not a directory")
    return ref.location


def path_op(
    libos: LibOS, t: Task, dirfd: int, path: bytes, *, follow: bool = True, resolve_flags: int = 0
) -> PathOp:
    """The path ``path`` of an ``*at`` call as the calling thread names it: from its root, from
    ``dirfd``'s directory (or its cwd) when relative, searched with its credentials. An
    absolute or empty path never looks at ``dirfd`` (Linux ignores it then)."""
    p = t.process
    start = p.cwd if not path or path.startswith(b"/") else dirfd_base(libos, t, dirfd)
    return PathOp(p.root, start, path, follow, resolve_flags, t.cred)


def fd_location(libos: LibOS, t: Task, fd: int) -> Location:
    """The location behind ``fd`` for AT_EMPTY_PATH and f* calls; EBADF/EINVAL otherwise."""
    if fd == AT_FDCWD:
        return t.process.cwd
    ref = fd_ref(libos, t, fd)
    if ref is None:
        raise SyscallError(
            errno.EOPNOTSUPP, "not a LibOS file (a pipe, socket or other host object)"
        )
    return ref.location


def fd_file_ref(libos: LibOS, t: Task, fd: int) -> FileRef | None:
    """The object behind ``fd`` for calls that act on an open file (fchmod, fchown, futimens,
    the f*xattr calls, fsync): EBADF for a negative number (AT_FDCWD too) and for an O_PATH
    descriptor, which only names a file; None for host-only objects."""
    ref = fd_ref(libos, t, fd)
    if ref is not None and ref.path_only:
        raise SyscallError(errno.EBADF, "an O_PATH descriptor only names a file")
    return ref


def fd_file_location(libos: LibOS, t: Task, fd: int) -> Location:
    """Like :func:`fd_file_ref`, for a LibOS file (EOPNOTSUPP for a host object)."""
    ref = fd_file_ref(libos, t, fd)
    if ref is None:
        raise SyscallError(
            errno.EOPNOTSUPP, "not a LibOS file (a pipe, socket or other host object)"
        )
    return ref.location
