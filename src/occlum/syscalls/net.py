"""Sockets: where they are made, and what Unix socket addresses name.

Programs live in a network namespace of the instance's own, also with ``"network": "host"``
(docs/internals.md, "Network"). There the abstract Unix socket names they bind are theirs
alone, as in a container: they meet neither the host's nor another instance's, and the kernel
reports them as the program gave them, so ``accept``, ``accept4``, ``recvfrom``, ``recvmsg``,
``getsockname`` and ``getpeername`` run natively with or without an address buffer. On the
host's network, the filter sends ``socket()`` for IPv4, IPv6 and ``NETLINK_ROUTE`` here: the
supervisor makes the socket in its own (the host's) network namespace and installs it, so
TCP and UDP reach the host's interfaces; every data call on it is native.

Served because their address names something in the LibOS: ``bind``, ``connect`` and
``sendto`` with a Unix socket path. ``bind`` creates the socket file in the LibOS file systems
(the usual EADDRINUSE, EACCES, ENOENT), then lets the program's own ``bind`` go through: the
kernel resolves the path in the instance's shadow root (every program's host root and cwd,
empty but for what the LibOS puts there), so the socket is bound at that same text, and
``getsockname``, ``accept`` and ``recvfrom`` report the name the program gave, as on Linux.
``connect`` and ``sendto`` resolve the path in the LibOS (symlinks, permissions, "not a
socket" -> ECONNREFUSED), hard-link the bound host socket at the text the caller gave, and let
the call through.

Not served, so not resolved in the LibOS: ``sendmsg``/``sendmmsg`` with a path (the address is
inside the message header, where the filter cannot look, and the launcher itself sends the
notification listener with a ``sendmsg`` under the filter): the kernel finds a path socket
only at the text it was bound with, or one a ``connect``/``sendto`` made reachable.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import socket
import struct
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import AT_FDCWD, S_IFMT, S_IFSOCK
from occlum.kernel.api import PROCEED, Donate
from occlum.platform import native
from occlum.syscalls.fs import parent_at
from occlum.vfs import PathOp, resolve
from occlum.vfs.cred import new_owner
from occlum.vfs.inode import MAY_WRITE, check_access

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task

AF_UNIX = 1
SOCK_RAW, SOCK_PACKET, SOCK_TYPE_MASK = 3, 10, 0xF
SOCK_CLOEXEC, SOCK_NONBLOCK = 0o2000000, 0o4000
SO_NETNS_COOKIE = 71  # Linux 5.14
_SUN_PATH = 108
_FAMILY = struct.Struct("<H")


def sys_socket(libos: LibOS, t: Task, family: int, type_: int, protocol: int) -> Result:
    """socket(AF_INET | AF_INET6 | AF_NETLINK (NETLINK_ROUTE), ...), as the filter sends it:
    on the host's network the supervisor makes it there; on the instance's own network the
    kernel makes it where the program is."""
    if libos.spec.network != "host":
        return PROCEED
    type_ &= 0xFFFFFFFF  # an int to the kernel
    if type_ & ~(SOCK_TYPE_MASK | SOCK_CLOEXEC | SOCK_NONBLOCK):
        raise SyscallError(errno.EINVAL, "unknown socket type flags")  # before any other
    if family != socket.AF_NETLINK and type_ & SOCK_TYPE_MASK == SOCK_RAW and protocol == 0:
        raise SyscallError(errno.EPROTONOSUPPORT, "a raw socket names its protocol")
    if family != socket.AF_NETLINK and type_ & SOCK_TYPE_MASK in (SOCK_RAW, SOCK_PACKET):
        # programs have no capabilities, the supervisor may: what the kernel tells a process
        # without CAP_NET_RAW (a packet socket, which AF_INET SOCK_PACKET still makes, too)
        raise SyscallError(errno.EPERM, "raw and packet sockets need CAP_NET_RAW")
    try:
        fd = native.socket_fd(family, type_ | SOCK_CLOEXEC, protocol)
    except OSError as exc:
        raise SyscallError(exc.errno or errno.EINVAL, "socket on the host's network")
    return Donate(fd, bool(type_ & SOCK_CLOEXEC))


# The network device requests that read a device's state through a struct ifreq (40 bytes, no
# pointer inside), by number (linux/sockios.h): NAME, FLAGS, ADDR, DSTADDR, BRDADDR, NETMASK,
# METRIC, MTU, HWADDR, INDEX, TXQLEN, MAP. The ones that change a device need CAP_NET_ADMIN,
# which programs never have: the kernel refuses them, where the program's socket is.
_IFREQ = 40
_IFREQ_READS = frozenset(
    (0x8910, 0x8913, 0x8915, 0x8917, 0x8919, 0x891B, 0x891D, 0x8921, 0x8927, 0x8933, 0x8942,
     0x8970)
)  # fmt: skip
_IFCONF = struct.Struct("<i4xQ")  # struct ifconf: ifc_len, ifc_buf


def sys_ioctl(libos: LibOS, t: Task, fd: int, request: int, arg: int) -> Result:
    """ioctl with a network device request (the filter sends no other): one that reads a
    device's state on a program's Unix socket is made on a Unix socket of the host's network,
    whose devices the program's IPv4 and IPv6 sockets see too (glibc's if_nametoindex and
    if_indextoname ask through a Unix socket). Every other continues in the kernel."""
    request &= 0xFFFFFFFF  # the kernel reads an unsigned int
    if libos.spec.network != "host" or (
        request not in _IFREQ_READS and request != native.SIOCGIFCONF
    ):
        return PROCEED
    try:
        dup = _duplicate(t, fd)
    except SyscallError:
        return PROCEED  # not a socket: the kernel's own answer (ENOTTY, EBADF)
    with dup as sock:
        if sock.family != AF_UNIX or _netns_cookie(sock) in (None, _host_netns_cookie()):
            return PROCEED
    host = _host_unix_socket()
    try:
        if request == native.SIOCGIFCONF:
            length, buf = _IFCONF.unpack(t.mem.read(arg, _IFCONF.size))
            got, data = native.ifconf(host.fileno(), length, ask=buf == 0)
            if data:
                t.mem.write(buf, data)
            t.mem.write(arg, struct.pack("<i", got))
            return 0
        ifr = bytearray(t.mem.read(arg, _IFREQ))
        fcntl.ioctl(host.fileno(), request, ifr, True)
    except OSError as exc:
        raise SyscallError(exc.errno or errno.EINVAL, "a network device request")
    t.mem.write(arg, bytes(ifr))
    return 0


@functools.cache
def _host_unix_socket() -> socket.socket:
    """A Unix socket of the supervisor's network namespace (the host's), kept for the
    network device requests."""
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)


def _unix_address(t: Task, addr: int, addrlen: int) -> bytes | None:
    """The sun_path bytes of an AF_UNIX address, or None for another family (or a bad one,
    which the kernel then rejects itself)."""
    if addr == 0 or addrlen < _FAMILY.size or addrlen > _FAMILY.size + _SUN_PATH:
        return None
    raw = t.mem.read(addr, addrlen)
    if _FAMILY.unpack_from(raw)[0] != AF_UNIX:
        return None
    return raw[_FAMILY.size :]


def _netns_cookie(sock: socket.socket) -> int | None:
    """The cookie of the network namespace ``sock`` belongs to (None before Linux 5.14)."""
    try:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
    except OSError:
        return None


@functools.cache
def _host_netns_cookie() -> int | None:
    """The cookie of the supervisor's network namespace (the host's)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        return _netns_cookie(sock)


def _check_abstract(t: Task, fd: int) -> None:
    """EPERM for an abstract name used with a Unix socket of the host's network namespace:
    one the program did not make inside (inherited from `occlum run`'s caller, or passed in
    by a host program), whose abstract names are the host's. Programs make theirs in the
    instance's namespace (``socketpair`` too); the Landlock scope (Linux 6.12) also keeps
    ``sendmsg`` on such a socket from the host's names, where the filter cannot look."""
    host = _host_netns_cookie()
    if host is None:
        return
    with _duplicate(t, fd) as sock:
        cookie = _netns_cookie(sock)
    if cookie == host:
        raise SyscallError(errno.EPERM, "a socket of the host's network names no abstract socket")


def _path_of(sun_path: bytes) -> bytes:
    end = sun_path.find(b"\0")
    return sun_path if end < 0 else sun_path[:end]


def sys_bind(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    sun_path = _unix_address(t, addr, addrlen)
    if sun_path is None or not sun_path:  # another family, or autobind
        return PROCEED
    if sun_path[0] == 0:
        _check_abstract(t, fd)
        return PROCEED
    path = _path_of(sun_path)
    if not path:
        raise SyscallError(errno.EINVAL, "empty socket path")
    p = t.process
    _check_unbound(t, fd)
    pn = parent_at(libos, t, AT_FDCWD, path)
    if pn.trailing_slash:
        raise SyscallError(errno.ENOENT, "trailing slash")
    perm, uid, gid = new_owner(t.cred, pn.parent.inode.getattr(), 0o777 & ~p.umask)
    try:
        node = pn.parent.inode.mknod(pn.name, S_IFSOCK | perm, 0, uid, gid)
    except SyscallError as exc:
        if exc.errno == errno.EEXIST:
            raise SyscallError(errno.EADDRINUSE, "the socket path exists")
        raise
    try:
        libos.shadow.socket(path, node)
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
    sun_path = _unix_address(t, addr, addrlen)
    if sun_path is None or not sun_path:
        return PROCEED
    if sun_path[0] == 0:
        _check_abstract(t, fd)
        return PROCEED
    path = _path_of(sun_path)
    if not path:
        raise SyscallError(errno.ENOENT, "empty socket path")
    p = t.process
    where = resolve(PathOp(p.root, p.cwd, path, cred=t.cred))
    st = where.inode.getattr()
    if st.mode & S_IFMT != S_IFSOCK:
        raise SyscallError(errno.ECONNREFUSED, "not a socket")
    check_access(st, t.cred, MAY_WRITE)
    if not libos.shadow.socket_link(path, where.inode):
        raise SyscallError(errno.ECONNREFUSED, "no socket is bound to that file")
    return PROCEED


def sys_sendto(
    libos: LibOS, t: Task, fd: int, buf: int, length: int, flags: int, addr: int, addrlen: int
) -> Result:
    """sendto with an address (the filter lets the others through): a path is made reachable
    at the caller's text, as for connect."""

    sun_path = _unix_address(t, addr, addrlen)
    if sun_path is None or not sun_path:
        return PROCEED
    if sun_path[0] == 0:
        _check_abstract(t, fd)
        return PROCEED
    _make_reachable(libos, t, _path_of(sun_path))
    return PROCEED


def _make_reachable(libos: LibOS, t: Task, path: bytes) -> None:
    """Make the socket file at ``path`` (in the LibOS) reachable by the kernel at that text,
    for a call that then continues in the kernel."""
    p = t.process
    try:
        where = resolve(PathOp(p.root, p.cwd, path, cred=t.cred))
    except SyscallError:
        return  # the kernel gives its own error for a name that is not there
    if where.inode.getattr().mode & S_IFMT == S_IFSOCK:
        libos.shadow.socket_link(path, where.inode)


class _duplicate:
    """The program's socket ``fd``, duplicated into the supervisor for the duration."""

    def __init__(self, t: Task, fd: int) -> None:
        try:
            self._fd = native.pidfd_getfd(t.process.pidfd, fd)
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
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            self.sock.detach()
            os.close(self._fd)
            self._fd = -1


# --- SO_PEERCRED -----------------------------------------------------------------------------
#
# The kernel records the ids of a Unix socket's peer when it connects (or listens), and those
# are its host ids: every process of the instance shares one host user, whatever user it is
# inside. The filter sends getsockopt(SOL_SOCKET, SO_PEERCRED) here (every other getsockopt is
# native); the LibOS asks the kernel which process the peer is and answers with that
# process's LibOS pid and credentials, as a server doing peer authentication (PostgreSQL's
# `peer`, D-Bus, systemd-style services) needs to see them.

SOL_SOCKET, SO_PEERCRED = 1, 17
_UCRED = struct.Struct("<iII")  # struct ucred: pid, uid, gid
NO_ID = 0xFFFFFFFF  # the ids Linux gives for a socket without its peer's credentials


def sys_getsockopt(
    libos: LibOS, t: Task, fd: int, level: int, optname: int, optval: int, optlen: int
) -> Result:
    from occlum.kernel.procinfo import leader_cred

    if level != SOL_SOCKET or optname != SO_PEERCRED:
        return PROCEED
    length = struct.unpack("<i", t.mem.read(optlen, 4))[0]
    if length < 0:
        raise SyscallError(errno.EINVAL, "negative option length")
    client: tuple[int, int, int] | None = None  # pid, euid, egid
    with _duplicate(t, fd) as sock:
        try:
            raw = sock.getsockopt(SOL_SOCKET, SO_PEERCRED, _UCRED.size)
        except OSError:
            return PROCEED  # not a socket that has a peer: the kernel says why
        host_pid = _UCRED.unpack(raw)[0]
    if host_pid == 0:
        return PROCEED  # no peer (or one outside the instance): the kernel's own answer
    peer = libos.proctable.find_host(host_pid)  # (met first if it has made no call)
    if peer is not None:
        cred = leader_cred(libos, peer)
        client = (peer.pid, cred.euid, cred.egid)
    # no client known: a peer that has exited since (its LibOS ids are gone, and the host's,
    # root's inside, would let any process pass for root by connecting and exiting)
    answer = _UCRED.pack(*(client or (0, NO_ID, NO_ID)))
    length = min(length, _UCRED.size)
    t.mem.write(optval, answer[:length])
    t.mem.write(optlen, struct.pack("<i", length))
    return 0
