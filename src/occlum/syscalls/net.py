"""Unix domain socket addresses: paths live in the LibOS file systems, abstract names stay in
the instance.

Sockets themselves are the host kernel's and every data call runs natively; ``bind``,
``connect``, ``sendto`` with an address, ``getsockname`` and ``getpeername`` are served,
because their address names something:

- **A path** names a socket file in the LibOS file systems. ``bind`` creates it there (the
  usual EADDRINUSE, EACCES, ENOENT), then lets the program's own ``bind`` go through: the
  kernel resolves the path in the instance's shadow root (every program's host root and cwd,
  empty but for what the LibOS puts there), so the socket is bound at that same text, and
  ``getsockname``, ``accept`` and ``recvfrom`` report the name the program gave, as on Linux.
  ``connect`` and ``sendto`` resolve the path in the LibOS (symlinks, permissions, "not a
  socket" -> ECONNREFUSED), hard-link the bound host socket at the text the caller gave, and
  let the call through. ``sendmsg`` runs natively: it reaches a socket by the text it was
  bound with.
- **An abstract name** (a leading NUL byte) lives in the network namespace; an instance on the
  host's network would share it with the host. There the LibOS binds and connects for the
  program (on a duplicate of its socket) under a name prefixed with the instance's own, so
  instances and the host cannot reach each other's abstract sockets. ``sendto`` does the same
  (without blocking: a full receiver gives EAGAIN), ``getsockname``/``getpeername`` take the
  prefix off; ``accept`` and ``recvfrom`` run natively and show it.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import socket
import struct
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import AT_FDCWD, S_IFMT, S_IFSOCK
from occlum.platform import native
from occlum.syscalls.common import s32
from occlum.syscalls.fs import parent_at
from occlum.vfs import resolve
from occlum.vfs.inode import MAY_WRITE, check_access

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS, Result
    from occlum.kernel.process import Task

AF_UNIX = 1
_SUN_PATH = 108
_FAMILY = struct.Struct("<H")


def _unix_address(t: Task, addr: int, addrlen: int) -> bytes | None:
    """The sun_path bytes of an AF_UNIX address, or None for another family (or a bad one,
    which the kernel then rejects itself)."""
    addrlen = s32(addrlen)
    if addr == 0 or addrlen < _FAMILY.size or addrlen > _FAMILY.size + _SUN_PATH:
        return None
    raw = t.mem.read(addr, addrlen)
    if _FAMILY.unpack_from(raw)[0] != AF_UNIX:
        return None
    return raw[_FAMILY.size :]


@functools.cache
def _abstract_prefix(instance_dir: str) -> bytes:
    """What the instance's abstract names start with on the host (after the NUL)."""
    return b"occlum-" + hashlib.sha256(instance_dir.encode()).hexdigest()[:12].encode() + b"/"


def _abstract_name(libos: LibOS, name: bytes) -> bytes:
    """The host's abstract name for the instance's abstract ``name`` (without the NUL)."""
    full = _abstract_prefix(libos.spec.instance_dir) + name
    if len(full) + 1 > _SUN_PATH:
        raise SyscallError(errno.EINVAL, "abstract socket name too long for the instance prefix")
    return b"\0" + full


def _on_duplicate(libos: LibOS, t: Task, fd: int, op: str, address: bytes) -> int:
    """``bind`` or ``connect`` the program's socket ``fd`` to ``address``, from here."""
    with _duplicate(t, fd) as sock:
        if sock.family != socket.AF_UNIX:
            raise SyscallError(errno.EINVAL, "not a Unix domain socket")
        try:
            if op == "bind":
                sock.bind(address)
            else:
                sock.connect(address)
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EINVAL, f"{op} of an abstract socket")
    return 0


def _path_of(sun_path: bytes) -> bytes:
    end = sun_path.find(b"\0")
    return sun_path if end < 0 else sun_path[:end]


def sys_bind(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    from occlum.kernel.libos import PROCEED

    sun_path = _unix_address(t, addr, addrlen)
    if sun_path is None or not sun_path:  # another family, or autobind
        return PROCEED
    if sun_path[0] == 0:
        if libos.spec.network != "host":
            return PROCEED  # the instance's own network namespace confines it already
        return _on_duplicate(libos, t, fd, "bind", _abstract_name(libos, sun_path[1:]))
    path = _path_of(sun_path)
    if not path:
        raise SyscallError(errno.EINVAL, "empty socket path")
    p = t.process
    _check_unbound(t, fd)
    pn = parent_at(libos, t, AT_FDCWD, path)
    if pn.trailing_slash:
        raise SyscallError(errno.ENOENT, "trailing slash")
    try:
        node = pn.parent.inode.mknod(
            pn.name, S_IFSOCK | (0o777 & ~p.umask), 0, p.cred.uid, p.cred.gid
        )
    except SyscallError as exc:
        if exc.errno == errno.EEXIST:
            raise SyscallError(errno.EADDRINUSE, "the socket path exists")
        raise
    try:
        libos.shadow_socket(path, node)
    except SyscallError:
        pn.parent.inode.unlink(pn.name)
        raise
    return PROCEED


def _check_unbound(t: Task, fd: int) -> None:
    """EINVAL for a socket that already has an address (the kernel would say so only after the
    LibOS had made the socket file); EBADF/ENOTSOCK for what is not a socket."""
    with _duplicate(t, fd) as sock:
        if sock.family != socket.AF_UNIX:
            raise SyscallError(errno.EINVAL, "not a Unix domain socket")
        if sock.getsockname():
            raise SyscallError(errno.EINVAL, "the socket is already bound")


def sys_connect(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    from occlum.kernel.libos import PROCEED

    sun_path = _unix_address(t, addr, addrlen)
    if sun_path is None or not sun_path:
        return PROCEED
    if sun_path[0] == 0:
        if libos.spec.network != "host":
            return PROCEED
        return _on_duplicate(libos, t, fd, "connect", _abstract_name(libos, sun_path[1:]))
    path = _path_of(sun_path)
    if not path:
        raise SyscallError(errno.ENOENT, "empty socket path")
    p = t.process
    where = resolve(p.root, p.cwd, path, cred=p.cred)
    st = where.inode.getattr()
    if st.mode & S_IFMT != S_IFSOCK:
        raise SyscallError(errno.ECONNREFUSED, "not a socket")
    if p.cred.uid != 0:
        check_access(st, p.cred, MAY_WRITE)
    if not libos.shadow_socket_link(path, where.inode):
        raise SyscallError(errno.ECONNREFUSED, "no socket is bound to that file")
    return PROCEED


def sys_sendto(
    libos: LibOS, t: Task, fd: int, buf: int, length: int, flags: int, addr: int, addrlen: int
) -> Result:
    """sendto with an address (the filter lets the others through): an abstract name gets the
    instance's prefix, a path is made reachable at the caller's text, as for connect."""
    from occlum.kernel.libos import PROCEED

    sun_path = _unix_address(t, addr, addrlen)
    if sun_path is None or not sun_path:
        return PROCEED
    if sun_path[0] == 0:
        if libos.spec.network != "host":
            return PROCEED
        data = t.mem.read(buf, length) if length else b""
        target = _abstract_name(libos, sun_path[1:])
        with _duplicate(t, fd) as sock:
            try:
                return sock.sendto(data, flags & 0xFFFFFFFF | socket.MSG_DONTWAIT, target)
            except OSError as exc:
                raise SyscallError(exc.errno or errno.EINVAL, "sendto an abstract socket")
    path = _path_of(sun_path)
    p = t.process
    try:
        where = resolve(p.root, p.cwd, path, cred=p.cred)
    except SyscallError:
        return PROCEED  # the kernel gives its own error for a name that is not there
    if where.inode.getattr().mode & S_IFMT == S_IFSOCK:
        libos.shadow_socket_link(path, where.inode)
    return PROCEED


def _sockname(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int, peer: bool) -> Result:
    """getsockname/getpeername: the kernel's answer, but an abstract name without the
    instance's prefix."""
    from occlum.kernel.libos import PROCEED

    if libos.spec.network != "host" or addr == 0 or addrlen == 0:
        return PROCEED
    with _duplicate(t, fd) as sock:
        if sock.family != socket.AF_UNIX:
            return PROCEED
        try:
            name = sock.getpeername() if peer else sock.getsockname()
        except OSError:
            return PROCEED
    prefix = b"\0" + _abstract_prefix(libos.spec.instance_dir)
    if not isinstance(name, bytes) or not name.startswith(prefix):
        return PROCEED
    raw = _FAMILY.pack(AF_UNIX) + b"\0" + name[len(prefix) :]
    room = struct.unpack("<I", t.mem.read(addrlen, 4))[0]
    t.mem.write(addr, raw[: min(room, len(raw))])
    t.mem.write(addrlen, struct.pack("<I", len(raw)))
    return 0


def sys_getsockname(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    return _sockname(libos, t, fd, addr, addrlen, peer=False)


def sys_getpeername(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    return _sockname(libos, t, fd, addr, addrlen, peer=True)


class _duplicate:
    """The program's socket ``fd``, duplicated into the supervisor for the duration."""

    def __init__(self, t: Task, fd: int) -> None:
        try:
            self._fd = native.pidfd_getfd(t.process.pidfd, s32(fd))
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EBADF, "not a descriptor of the caller")
        try:
            self.sock = socket.socket(fileno=self._fd)
        except OSError:
            os.close(self._fd)
            raise SyscallError(errno.ENOTSOCK, "not a socket")

    def __enter__(self) -> socket.socket:
        return self.sock

    def __exit__(self, *_: object) -> None:
        self.sock.detach()
        os.close(self._fd)
