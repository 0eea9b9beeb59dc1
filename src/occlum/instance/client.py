"""The client side of a started instance: ``occlum exec``, ``kill``, ``ps``, ``stop`` and the
server part of ``status`` (see :mod:`occlum.instance.server` for the server).

``exec`` passes the caller's stdin, stdout and stderr to the program as descriptors. When the
caller's stdin and stdout are a terminal, the program gets a pseudo-terminal of its own instead
(as ``docker exec -it``): the client puts its terminal in raw mode and copies bytes both ways,
so Ctrl-C, Ctrl-Z and job control act inside; window size changes follow. Otherwise Ctrl-C
(and SIGTERM, SIGHUP, SIGQUIT) on the client are sent to the program's process group.

This is the Python client, which the ``occlum`` console script runs for ``occlum exec`` when
the native one (:mod:`occlum.instance.exec_native`) is not there: it imports as little as it
can, since its imports are most of its start-up (``_socket`` rather than ``socket``, which
brings ``enum`` and ``selectors``; no ``typing`` at run time; the terminal's modules only for
a terminal).
"""

from __future__ import annotations

import _socket
import errno
import json
import os
import signal

from occlum.errors import UserError
from occlum.instance.wire import LOG_NAME, MAX_MESSAGE, SOCKET_NAME, socket_address
from occlum.platform.fdpass import send_fds
from occlum.platform.readiness import readable

TYPE_CHECKING = False  # typing's own import costs a few milliseconds of every exec
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

REPLY_TIMEOUT = 30.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
FATAL_QUIET = {signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGKILL, signal.SIGHUP}


class ServerGone(UserError):
    """The server closed the connection (or is gone)."""


class ServerSilent(ServerGone):
    """The server did not answer in time."""


def connect(run_dir: str | os.PathLike[str]) -> _socket.socket:
    """A connection to the instance's server, or a one-line ``UserError`` saying why not."""
    run_dir = os.fspath(run_dir)
    sock_path = os.path.join(run_dir, SOCKET_NAME)
    if not os.path.exists(sock_path):
        raise UserError("the instance is not started (occlum start starts it)")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        address, dirfd = socket_address(run_dir)
    except OSError as exc:
        raise UserError(f"cannot reach {run_dir}: {exc.strerror}")
    try:
        sock.connect(address)
    except ConnectionRefusedError:
        sock.close()
        raise UserError(
            f"the instance's server is gone: {sock_path} was left by a server that ended "
            f"(see {os.path.join(run_dir, LOG_NAME)}); occlum start starts it again"
        )
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot reach the instance's server at {sock_path}: {exc.strerror}")
    finally:
        os.close(dirfd)
    return sock


def _send(sock: _socket.socket, obj: dict[str, Any], fds: list[int] | None = None) -> None:
    try:
        send_fds(sock, json.dumps(obj).encode(), fds)
    except OSError as exc:
        if exc.errno == errno.EMSGSIZE:
            raise UserError("the arguments and environment are too large to send to the server")
        raise ServerGone(f"the instance's server closed the connection: {exc.strerror}")


def _receive(sock: _socket.socket) -> dict[str, Any]:
    try:
        msg = sock.recv(MAX_MESSAGE)
    except TimeoutError:
        raise ServerSilent("the instance's server does not answer")
    except OSError as exc:
        raise ServerGone(f"the instance's server closed the connection: {exc.strerror}")
    if not msg:
        raise ServerGone("the instance's server closed the connection")
    reply: dict[str, Any] = json.loads(msg)
    if "error" in reply:
        raise UserError(str(reply["error"]), int(reply.get("code", 1)))
    return reply


def request(
    run_dir: str | os.PathLike[str], obj: dict[str, Any], timeout: float = REPLY_TIMEOUT
) -> dict[str, Any]:
    """One request, one answer (ps, kill, status)."""
    sock = connect(run_dir)
    try:
        sock.settimeout(timeout)
        _send(sock, obj)
        return _receive(sock)
    finally:
        sock.close()


def stop(run_dir: str | os.PathLike[str], timeout: float) -> None:
    """Stop the server gracefully; return once it is gone (every file system written back)."""
    sock = connect(run_dir)
    try:
        sock.settimeout(timeout + REPLY_TIMEOUT)
        _send(sock, {"op": "stop", "timeout": timeout})
        try:
            _receive(sock)
        except ServerSilent:
            raise
        except ServerGone:
            pass  # it ended before answering: stopped all the same
    finally:
        sock.close()


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_exec(
    run_dir: str | os.PathLike[str],
    argv: list[str],
    env: Mapping[str, str],
    *,
    use_tty: bool | None = None,
) -> int:
    """``occlum exec``: run ``argv`` in the started instance; return its exit code."""
    if use_tty is None:
        use_tty = os.isatty(0) and os.isatty(1)
    sock = connect(run_dir)
    try:
        if use_tty:
            return _exec_tty(sock, argv, env)
        return _exec_plain(sock, argv, env)
    finally:
        sock.close()


def _started(sock: _socket.socket) -> int:
    sock.settimeout(REPLY_TIMEOUT)
    pid = int(_receive(sock)["pid"])
    sock.settimeout(None)
    return pid


def signal_name(sig: int) -> str:
    """SIGSEGV for 11; a real-time signal Python has no name for as SIGRTMIN+N (as the native
    client names it)."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"


def _ended(status: int, argv: list[str], pid: int) -> int:
    """The exit code for the program's wait status; a fatal signal is named in one line."""
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) not in FATAL_QUIET:
        name = signal_name(os.WTERMSIG(status))
        os.write(2, f"occlum: {argv[0]} (pid {pid}) killed by {name}\n".encode())
    return exit_code(status)


def _exec_plain(sock: _socket.socket, argv: list[str], env: Mapping[str, str]) -> int:
    _send(sock, {"op": "exec", "argv": argv, "env": dict(env), "tty": False}, [0, 1, 2])
    pid = _started(sock)
    old = {}

    def forward(signum: int, _frame: object) -> None:
        try:
            sock.send(json.dumps({"op": "signal", "sig": signum}).encode())
        except OSError:
            pass

    for sig in FORWARDED:
        old[sig] = signal.signal(sig, forward)
    try:
        # a forwarded signal interrupts nothing (PEP 475)
        return _ended(int(_receive(sock)["exit"]), argv, pid)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _winsize(fd: int) -> bytes:
    import fcntl
    import struct
    import termios

    return fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))


def _exec_tty(sock: _socket.socket, argv: list[str], env: Mapping[str, str]) -> int:
    import contextlib
    import fcntl
    import termios
    import tty

    master, slave = os.openpty()
    with contextlib.suppress(OSError):
        termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(0))
    with contextlib.suppress(OSError):
        fcntl.ioctl(master, termios.TIOCSWINSZ, _winsize(0))
    try:
        _send(sock, {"op": "exec", "argv": argv, "env": dict(env), "tty": True}, [slave] * 3)
    finally:
        os.close(slave)
    pid = _started(sock)
    saved = termios.tcgetattr(0)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    old_winch = signal.signal(signal.SIGWINCH, lambda _s, _f: None)
    tty.setraw(0)
    try:
        status = _pump(sock, master, wake_r)
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        for fd in (wake_r, wake_w, master):
            os.close(fd)
    return _ended(status, argv, pid)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue


def _pump(sock: _socket.socket, master: int, wake_r: int) -> int:
    """Copy the terminal to the program's pseudo-terminal and back until the program ends."""
    import contextlib
    import fcntl
    import termios

    watch = [0, master, sock.fileno(), wake_r]
    status: int | None = None
    while True:
        try:
            ready = readable(watch, 0.05 if status is not None else None)
        except InterruptedError:
            continue
        if status is not None and master not in ready:
            return status  # the program ended and its last output is out
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 64)
            with contextlib.suppress(OSError):
                fcntl.ioctl(master, termios.TIOCSWINSZ, _winsize(0))
        if 0 in ready:
            data = os.read(0, 4096)
            if data:
                _write_all(master, data)
            else:
                watch.remove(0)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every descriptor of the terminal's other side is closed
                data = b""
            if data:
                _write_all(1, data)
            else:
                watch.remove(master)
                if status is not None:
                    return status
        if sock.fileno() in ready and status is None:
            status = int(_receive(sock)["exit"])
            watch.remove(sock.fileno())
            if master not in watch:
                return status
