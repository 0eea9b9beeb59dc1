"""Messages with descriptors (SCM_RIGHTS) over a Unix socket: the one way the supervisor, the
launcher, the spawner and the `occlum exec` client pass descriptors to each other."""

from __future__ import annotations

import array
import socket


def send_fds(sock: socket.socket, data: bytes, fds: list[int] | None = None) -> None:
    """One message, with ``fds`` attached when there are any; raises ``OSError``."""
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)


def recv_fds(sock: socket.socket, size: int, maxfds: int) -> tuple[bytes, list[int]]:
    """One message and the descriptors that came with it (the caller owns them)."""
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(size, socket.CMSG_LEN(maxfds * fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)
