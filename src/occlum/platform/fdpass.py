"""Messages with descriptors (SCM_RIGHTS) over a Unix socket: the one way the supervisor, the
launcher, the spawner and the `occlum exec` client pass descriptors to each other. Only
``_socket`` is used, the base of ``socket``: the Python exec client imports this module, and
``socket`` would cost it ``enum`` and ``selectors``."""

from __future__ import annotations

import _socket
import array


def send_fds(sock: _socket.socket, data: bytes, fds: list[int] | None = None) -> None:
    """One message, with ``fds`` attached when there are any; raises ``OSError``."""
    if fds:
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)


def recv_fds(sock: _socket.socket, size: int, maxfds: int) -> tuple[bytes, list[int]]:
    """One message and the descriptors that came with it (the caller owns them)."""
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(size, _socket.CMSG_LEN(maxfds * fds.itemsize))
    for level, typ, data in anc:
        if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)
