"""Unix domain socket addresses: paths live in the LibOS file systems, abstract names stay in
the instance.

Sockets themselves are the host kernel's and every data call runs natively; ``bind``,
``connect``, ``getsockname``, ``getpeername``, and ``sendto``, ``recvfrom``, ``accept`` and
``accept4`` with an address, are served, because their address names something:

- **A path** names a socket file in the LibOS file systems. ``bind`` creates it there (the
  usual EADDRINUSE, EACCES, ENOENT), then lets the program's own ``bind`` go through: the
  kernel resolves the path in the instance's shadow root (every program's host root and cwd,
  empty but for what the LibOS puts there), so the socket is bound at that same text, and
  ``getsockname``, ``accept`` and ``recvfrom`` report the name the program gave, as on Linux.
  ``connect`` and ``sendto`` resolve the path in the LibOS (symlinks, permissions, "not a
  socket" -> ECONNREFUSED), hard-link the bound host socket at the text the caller gave, and
  let the call through.
- **An abstract name** (a leading NUL byte) lives in the network namespace; an instance on the
  host's network would share it with the host. There the LibOS binds and connects for the
  program (on a duplicate of its socket) under a name prefixed with the instance's own, so
  instances and the host cannot reach each other's abstract sockets. ``sendto`` does the same
  (without blocking: a full receiver gives EAGAIN); ``getsockname``, ``getpeername``,
  ``accept`` and ``recvfrom`` take the prefix off the names they report (see below for how a
  blocking ``accept`` or ``recvfrom`` waits). The prefix is 7 bytes; a name longer than the
  100 bytes left (Linux allows 107) is bound on the host as a second prefix and a SHA-256 of
  the name, which the LibOS maps back to the name when it reports it.

Not served, so not translated: ``sendmsg``/``sendmmsg`` (the address is inside the message
header, where the filter cannot look, and the launcher itself sends the notification
listener with a ``sendmsg`` under the filter): the kernel finds a path socket only at the text
it was bound with (or one a ``connect``/``sendto`` made reachable), and an abstract name
without the prefix, where the Landlock scope every instance process is in refuses any name the
host bound. ``recvmsg``/``recvmmsg`` report an abstract sender's name with it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import socket
import struct
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import AT_FDCWD, S_IFMT, S_IFSOCK
from occlum.kernel.api import PROCEED, Donate
from occlum.kernel.waits import Outcome
from occlum.platform import native
from occlum.platform.memory import TaskMemory
from occlum.syscalls.fs import parent_at
from occlum.vfs import PathOp, resolve
from occlum.vfs.cred import new_owner
from occlum.vfs.inode import MAY_WRITE, check_access

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task

AF_UNIX = 1
_SUN_PATH = 108
_FAMILY = struct.Struct("<H")


def _unix_address(t: Task, addr: int, addrlen: int) -> bytes | None:
    """The sun_path bytes of an AF_UNIX address, or None for another family (or a bad one,
    which the kernel then rejects itself)."""
    if addr == 0 or addrlen < _FAMILY.size or addrlen > _FAMILY.size + _SUN_PATH:
        return None
    raw = t.mem.read(addr, addrlen)
    if _FAMILY.unpack_from(raw)[0] != AF_UNIX:
        return None
    return raw[_FAMILY.size :]


@functools.cache
def _abstract_prefix(instance_dir: str) -> bytes:
    """What the instance's abstract names start with on the host (after the NUL): a second
    NUL, which names of host programs practically never start with, and six bytes of a hash
    of the instance directory. Seven bytes: a name of up to 100 bytes keeps its own bytes."""
    return b"\0" + hashlib.sha256(instance_dir.encode()).digest()[:6]


@functools.cache
def _long_prefix(instance_dir: str) -> bytes:
    """What the host's name for a longer name starts with: \\1, never a short name's \\0."""
    return b"\1" + _abstract_prefix(instance_dir)[1:]


# The instance's abstract names of 101 to 107 bytes that programs bound, by their host name
# (the long prefix and a digest): only bound names are ever reported back. A program that
# binds ever new names must not grow it without end: past the bound the oldest go (a socket
# still bound to one would then be reported under its host name).
_LONG_NAMES: dict[bytes, bytes] = {}
_LONG_NAMES_KEPT = 1 << 16


def _abstract_name(libos: LibOS, name: bytes) -> bytes:
    """The host's abstract name for the instance's abstract ``name`` (without the NUL)."""
    prefix = _abstract_prefix(libos.spec.instance_dir)
    if 1 + len(prefix) + len(name) <= _SUN_PATH:
        return b"\0" + prefix + name
    digest = hashlib.sha256(prefix + name).digest()
    return b"\0" + _long_prefix(libos.spec.instance_dir) + digest


def _instance_name(libos: LibOS, host: bytes) -> bytes | None:
    """The instance's abstract name (with its NUL) for the host's abstract name ``host``, or
    None for a name the instance did not make."""
    short = b"\0" + _abstract_prefix(libos.spec.instance_dir)
    if host.startswith(short):
        return b"\0" + host[len(short) :]
    name = _LONG_NAMES.get(host)
    return None if name is None else b"\0" + name


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
        if op == "connect":  # the kernel takes the supervisor for the client (SO_PEERCRED)
            _ABSTRACT_CLIENTS.pop(ino := os.fstat(sock.fileno()).st_ino, None)
            _ABSTRACT_CLIENTS[ino] = (t.process.pid, t.cred.euid, t.cred.egid)
            if len(_ABSTRACT_CLIENTS) > _ABSTRACT_CLIENTS_KEPT:
                del _ABSTRACT_CLIENTS[next(iter(_ABSTRACT_CLIENTS))]
    return 0


def _path_of(sun_path: bytes) -> bytes:
    end = sun_path.find(b"\0")
    return sun_path if end < 0 else sun_path[:end]


def sys_bind(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    sun_path = _unix_address(t, addr, addrlen)
    if sun_path is None or not sun_path:  # another family, or autobind
        return PROCEED
    if sun_path[0] == 0:
        if libos.spec.network != "host":
            return PROCEED  # the instance's own network namespace confines it already
        host = _abstract_name(libos, sun_path[1:])
        _on_duplicate(libos, t, fd, "bind", host)
        if not host.startswith(b"\0\0"):
            _LONG_NAMES.pop(host, None)
            _LONG_NAMES[host] = sun_path[1:]
            if len(_LONG_NAMES) > _LONG_NAMES_KEPT:
                del _LONG_NAMES[next(iter(_LONG_NAMES))]
        return 0
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
        if libos.spec.network != "host":
            return PROCEED
        return _on_duplicate(libos, t, fd, "connect", _abstract_name(libos, sun_path[1:]))
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
    """sendto with an address (the filter lets the others through): an abstract name gets the
    instance's prefix, a path is made reachable at the caller's text, as for connect."""

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
                return sock.sendto(data, flags | socket.MSG_DONTWAIT, target)
            except OSError as exc:
                raise SyscallError(exc.errno or errno.EINVAL, "sendto an abstract socket")
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


def _sockname(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int, peer: bool) -> Result:
    """getsockname/getpeername: the kernel's answer, but an abstract name without the
    instance's prefix."""

    if libos.spec.network != "host" or addr == 0 or addrlen == 0:
        return PROCEED
    with _duplicate(t, fd) as sock:
        if sock.family != socket.AF_UNIX:
            return PROCEED
        try:
            name = sock.getpeername() if peer else sock.getsockname()
        except OSError:
            return PROCEED
    ours = _instance_name(libos, name) if isinstance(name, bytes) else None
    if ours is None:
        return PROCEED
    raw = _FAMILY.pack(AF_UNIX) + ours
    room = struct.unpack("<I", t.mem.read(addrlen, 4))[0]
    t.mem.write(addr, raw[: min(room, len(raw))])
    t.mem.write(addrlen, struct.pack("<I", len(raw)))
    return 0


def sys_getsockname(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    return _sockname(libos, t, fd, addr, addrlen, peer=False)


def sys_getpeername(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    return _sockname(libos, t, fd, addr, addrlen, peer=True)


# --- accept and recvfrom with an address -----------------------------------------------------
#
# The filter sends accept/accept4 with an address and recvfrom with a source address here
# (without one they are native). On a Unix socket of an instance on the host's network the
# peer's name may carry the instance's prefix, so the LibOS does the call itself on a
# duplicate of the program's socket and writes the name without it; everything else
# (TCP, UDP, another network namespace) continues in the kernel.
#
# A call that would block cannot be done here: the serving loop must not wait in a handler.
# It waits in the loop's selector (kernel/waits.py), unanswered until its socket is readable;
# the loop then makes the call, without blocking, and answers it.

_TIMEVAL = struct.Struct("<qq")
_STREAM_CHUNK = 1 << 20  # most bytes one served recvfrom of a stream socket returns


def _peer_address(libos: LibOS, name: object) -> bytes:
    """The sockaddr_un the kernel gave for a peer Python shows as ``name`` (None: no name,
    "": an unnamed socket, bytes: an abstract name, str: a path), the prefix taken off."""
    family = _FAMILY.pack(AF_UNIX)
    if name is None:
        return b""
    if isinstance(name, str):
        # a path: the kernel's length counts the terminating NUL
        return family + os.fsencode(name) + b"\0" if name else family
    assert isinstance(name, bytes)
    return family + (_instance_name(libos, name) or name)


def _room(t: Task, addrlen: int) -> int:
    """The size of the program's address buffer (``*addrlen``); EINVAL if negative."""
    room: int = struct.unpack("<i", t.mem.read(addrlen, 4))[0]
    if room < 0:
        raise SyscallError(errno.EINVAL, "negative address length")
    return room


def _put_address(mem: TaskMemory, addr: int, addrlen: int, room: int, raw: bytes) -> None:
    mem.write(addr, raw[:room])
    mem.write(addrlen, struct.pack("<I", len(raw)))


def _unix_for_names(libos: LibOS, t: Task, fd: int) -> _duplicate | None:
    """The program's socket ``fd`` when it is a Unix socket whose peers' names the LibOS must
    show (the instance shares the host's network), else None (the kernel's call is right)."""
    if libos.spec.network != "host":
        return None
    dup = _duplicate(t, fd)
    if dup.sock.family != socket.AF_UNIX:
        dup.close()
        return None
    return dup


def _nonblocking(sock: socket.socket) -> bool:
    """Whether the program's open socket is O_NONBLOCK (its flags, not Python's view)."""
    return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


def _rcvtimeo(sock: socket.socket) -> float:
    sec: int
    usec: int
    sec, usec = _TIMEVAL.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    return sec + usec / 1e6


def sys_accept(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int) -> Result:
    return _accept(libos, t, fd, addr, addrlen, 0)


def sys_accept4(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int, flags: int) -> Result:
    return _accept(libos, t, fd, addr, addrlen, flags)


def _accept(libos: LibOS, t: Task, fd: int, addr: int, addrlen: int, flags: int) -> Result:
    """accept with an address (the filter lets the others through): on a Unix socket the
    client's name without the instance's prefix."""

    dup = _unix_for_names(libos, t, fd)
    if dup is None:
        return PROCEED
    with dup as sock:
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return PROCEED  # EINVAL from the kernel
        room = _room(t, addrlen)
        attempt = functools.partial(_accept_now, libos, addr, addrlen, room, flags)
        if _nonblocking(sock):
            return attempt(t.mem, sock)
        # a blocking accept: the loop accepts once a client is queued
        return libos.waits.until_readable(t, sock, _rcvtimeo(sock), attempt)


def _accept_now(
    libos: LibOS,
    addr: int,
    addrlen: int,
    room: int,
    flags: int,
    mem: TaskMemory,
    sock: socket.socket,
) -> Outcome:
    try:
        conn, name = sock.accept()
        new_fd = conn.detach()
    except OSError as exc:
        return -(exc.errno or errno.EINVAL)
    try:
        if flags & socket.SOCK_NONBLOCK:
            os.set_blocking(new_fd, False)
        _put_address(mem, addr, addrlen, room, _peer_address(libos, name))
    except (SyscallError, OSError) as exc:
        os.close(new_fd)
        return -exc.errno if isinstance(exc, SyscallError) else -(exc.errno or errno.EIO)
    return Donate(new_fd, bool(flags & socket.SOCK_CLOEXEC))


def sys_recvfrom(
    libos: LibOS, t: Task, fd: int, buf: int, length: int, flags: int, addr: int, addrlen: int
) -> Result:
    """recvfrom with a source address (the filter lets the others through): on a Unix socket
    the sender's name without the instance's prefix."""

    dup = _unix_for_names(libos, t, fd)
    if dup is None:
        return PROCEED
    with dup as sock:
        if sock.type == socket.SOCK_STREAM and flags & socket.MSG_WAITALL:
            return PROCEED  # a stream's sender is its one peer: the kernel's name it is
        room = _room(t, addrlen)
        attempt = functools.partial(_recvfrom_now, libos, buf, length, flags, addr, addrlen, room)
        res = attempt(t.mem, sock)
        if res != -errno.EAGAIN or flags & socket.MSG_DONTWAIT or _nonblocking(sock):
            return res
        return libos.waits.until_readable(t, sock, _rcvtimeo(sock), attempt)


def _recvfrom_now(
    libos: LibOS,
    buf: int,
    length: int,
    flags: int,
    addr: int,
    addrlen: int,
    room: int,
    mem: TaskMemory,
    sock: socket.socket,
) -> Outcome:
    """One recvfrom that does not block: EAGAIN when nothing is there."""
    try:
        if sock.type == socket.SOCK_STREAM:
            size = min(length, _STREAM_CHUNK)
        else:  # a datagram comes whole: ask its size, so as not to cut it
            size = min(length, sock.recv_into(bytearray(1), 1, _PEEK_SIZE))
        data = bytearray(size)
        n, name = sock.recvfrom_into(data, size, flags | socket.MSG_DONTWAIT)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    try:
        mem.write(buf, bytes(data[: min(n, size)]))
        _put_address(mem, addr, addrlen, room, _peer_address(libos, name))
    except SyscallError as exc:
        return -exc.errno
    return n


_PEEK_SIZE = socket.MSG_PEEK | socket.MSG_TRUNC | socket.MSG_DONTWAIT


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
# Client sockets the LibOS connected to an abstract name for a program (the kernel then names
# the supervisor as their peer), by socket inode: the program's pid and effective ids when it
# connected, as Linux records them. Bounded as _LONG_NAMES: past the bound the oldest go (their
# servers then see pid 0 and ids -1).
_ABSTRACT_CLIENTS: dict[int, tuple[int, int, int]] = {}
_ABSTRACT_CLIENTS_KEPT = 4096
# sock_diag (linux/sock_diag.h, unix_diag.h): one Unix socket by inode, with its peer's inode
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST = 4, 20, 1
UDIAG_SHOW_PEER, UNIX_DIAG_PEER = 0x4, 2
_NLMSGHDR = struct.Struct("<IHHII")
_UNIX_DIAG_REQ = struct.Struct("<BBHIIIII")
_UNIX_DIAG_MSG_SIZE = 16
_NLA = struct.Struct("<HH")


def _unix_peer_inode(ino: int) -> int | None:
    """The inode of the peer of the Unix socket with inode ``ino`` (in the supervisor's
    network namespace), as the kernel's sock_diag reports it; None if it has none."""
    req = _UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, ino, UDIAG_SHOW_PEER,
                              0xFFFFFFFF, 0xFFFFFFFF)  # fmt: skip
    msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
            nl.send(msg + req)
            reply = nl.recv(8192)
    except OSError:
        return None
    if len(reply) < _NLMSGHDR.size + _UNIX_DIAG_MSG_SIZE:
        return None
    length, kind = _NLMSGHDR.unpack_from(reply)[:2]
    if kind != SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: no such socket
    at = _NLMSGHDR.size + _UNIX_DIAG_MSG_SIZE
    while at + _NLA.size <= min(length, len(reply)):
        nla_len, nla_type = _NLA.unpack_from(reply, at)
        if nla_len < _NLA.size:
            return None
        if nla_type == UNIX_DIAG_PEER and nla_len >= _NLA.size + 4:
            return int(struct.unpack_from("<I", reply, at + _NLA.size)[0])
        at += (nla_len + 3) & ~3
    return None


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
        if host_pid == os.getpid():  # a client whose abstract connect the LibOS made
            peer_ino = _unix_peer_inode(os.fstat(sock.fileno()).st_ino)
            client = None if peer_ino is None else _ABSTRACT_CLIENTS.get(peer_ino)
            host_pid = -1
    if host_pid == 0:
        return PROCEED  # no peer (or one outside the instance): the kernel's own answer
    if host_pid > 0:
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
