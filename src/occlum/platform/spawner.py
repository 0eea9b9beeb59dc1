"""The spawner of a started instance: the first process of its tree, under the same filter as
every program, that starts each program ``occlum exec`` asks for and reports how it ended.

It runs in the instance's namespaces and under its filter, so that the programs it forks share
the instance's one listener, process table and file systems, exactly like children of one
program. It never touches a path itself (its code is imported before the filter goes on: an
import afterwards would ask the LibOS for the module's file), and it serves one channel to the
supervisor, a SOCK_SEQPACKET socket carrying one JSON object per message:

    supervisor → spawner   {"op": "exec", "id": N, "argv": [...], "env": [...], "tty": bool}
                           with the program's stdin, stdout and stderr as SCM_RIGHTS
                           {"op": "signal", "id": N, "sig": S}   (to the program's process group)
    spawner → supervisor   {"id": N, "pid": P} or {"id": N, "error": "..."}, then
                           {"id": N, "status": W}                (a wait status, as waitpid's)

The channel closing (the instance stops) ends the spawner.

A child is forked ahead of each request: it waits on a socket of its own for its order (the
request and its three descriptors), so that an ``occlum exec`` pays no ``fork`` of the
spawner's 30 MB and none of the Python work a fresh child does (its first touches of the
copied memory, its signal dispositions): only the order's hand-over and the ``execve``. Until
its ``execve`` such a child still runs the spawner's executable, by which the supervisor tells
it from the programs (``occlum ps``, ``occlum kill``, what ``occlum stop`` waits for). A ready
child killed meanwhile (``kill -9 -1`` from a program) is replaced; without one (a fork refused
by ``max_num_of_threads``) a request forks as it comes.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import termios
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from occlum.platform.fdpass import recv_fds, send_fds
from occlum.platform.limits import ProgramLimits, apply_program_limits

MAX_MESSAGE = 1 << 20
REFILL_AFTER = 0.005  # seconds of idleness after which the child ahead is forked anyway


def _send(channel: socket.socket, obj: dict[str, object]) -> None:
    with contextlib.suppress(OSError):
        channel.send(json.dumps(obj).encode())


def exec_program(
    path: bytes,
    argv: list[bytes],
    env: list[bytes],
    limits: ProgramLimits | None,
    signals: Iterable[int] = range(1, signal.NSIG),
) -> NoReturn:
    """The last steps of every program's start (the first program of `occlum run` and each one
    the spawner starts): default signal dispositions, nothing blocked, the instance's limits,
    no descriptor but the standard streams, then ``execve``; a failure is one line on the
    program's stderr and exit status 127.

    The program gets its file name as argv[0] ("hello" for /bin/hello), as Occlum's
    ``occlum run`` and ``occlum exec`` pass it, when its directory is on the environment's
    ``PATH`` (as a shell's search would pass it); otherwise the path itself. Programs find
    their own file through argv[0] and ``PATH`` (Python's ``sys.executable``, which
    ``subprocess`` and ``multiprocessing`` run): a bare name off ``PATH`` leaves them none.
    ``path`` is what is executed; ``signals`` are the ones whose disposition may not be the
    default yet."""
    argv = [program_name(path, env), *argv[1:]]
    try:
        signal.set_wakeup_fd(-1)
        _default_dispositions(signals)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if limits is not None:
            apply_program_limits(limits)
        # the standard streams only, as Occlum's programs start: a descriptor the host shell
        # left open without close-on-exec would be a host file outside every mount
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.execve(path, argv, dict(e.split(b"=", 1) for e in env if b"=" in e))  # type: ignore[misc]
    except OSError as exc:
        _cannot_start(path, exc)
    os._exit(127)


def _default_dispositions(signals: Iterable[int]) -> None:
    for sig in signals:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)


def program_name(path: bytes, env: list[bytes]) -> bytes:
    """argv[0] for the program at ``path``: its file name when a search of ``PATH`` (in
    ``env``) finds it by that name's directory, else ``path``."""
    where = os.path.dirname(path).rstrip(b"/") or b"/"
    for e in env:
        if e.startswith(b"PATH="):
            if where in (d.rstrip(b"/") or b"/" for d in e[5:].split(b":")):
                return os.path.basename(path)
            break
    return path


def _cannot_start(path: bytes, exc: OSError) -> None:
    with contextlib.suppress(OSError):
        os.write(
            2, f"occlum: cannot start {path.decode(errors='replace')}: {exc.strerror}\n".encode()
        )


def _child(
    req: dict[str, object],
    fds: list[int],
    limits: ProgramLimits | None,
    signals: Iterable[int] = range(1, signal.NSIG),
) -> NoReturn:
    """In the forked child: become the program's process (group or session), then exec it."""
    argv = [os.fsencode(a) for a in req["argv"]]  # type: ignore[attr-defined]
    env = [os.fsencode(e) for e in req["env"]]  # type: ignore[attr-defined]
    try:
        if req.get("tty"):
            # a session of its own whose controlling terminal is the client's pseudo-terminal:
            # job control, Ctrl-C and Ctrl-Z work inside as on a login terminal
            os.setsid()
            fcntl.ioctl(fds[0], termios.TIOCSCTTY, 0)
        else:
            os.setpgid(0, 0)  # Ctrl-C on the client reaches the whole pipeline
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
    except OSError as exc:
        _cannot_start(argv[0], exc)
        os._exit(127)
    exec_program(argv[0], argv, env, limits, signals)


# the spawner's own dispositions (launch._spawner_process) that a ready child keeps while it
# waits: a program's `kill -TERM -1` must not end it either
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE)


@dataclass(slots=True)
class _Ready:
    """A child forked ahead of the next request (see the module's doc)."""

    pid: int
    orders: _socket.socket  # the spawner's end of the child's socket


def _fork_ready(limits: ProgramLimits | None) -> _Ready:
    """Fork a child that waits for its order; ``OSError`` if the fork fails."""
    # _socket's pair: socket.socketpair would ask the LibOS each socket's name (fdpass.py)
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        try:
            _await_order(theirs, limits)
        finally:
            os._exit(127)  # never back into the spawner's loop
    theirs.close()
    return _Ready(pid, ours)


def _await_order(orders: _socket.socket, limits: ProgramLimits | None) -> NoReturn:
    """In a ready child: all of a program's start that does not depend on the request, then
    wait for the order and start it. A spawner gone (or dropping this child) ends it."""
    signal.set_wakeup_fd(-1)
    # nothing of the spawner's stays open in here: its channel, its other ready children
    keep = orders.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    _default_dispositions(s for s in range(1, signal.NSIG) if s not in _IGNORED)
    try:
        msg, fds = recv_fds(orders, MAX_MESSAGE, 3)
    except OSError:
        os._exit(0)
    if not msg:
        os._exit(0)
    _child(json.loads(msg), fds, limits, _IGNORED)


def serve_requests(channel: socket.socket, limits: ProgramLimits | None) -> int:
    """Start programs on request until the channel closes; return the spawner's exit code."""
    running: dict[int, int] = {}  # pid -> request id
    spawn = _Spawn(limits)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    while True:
        while True:  # report every program that ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            rid = running.pop(pid, None)
            if rid is not None:
                _send(channel, {"id": rid, "status": status})
            elif spawn.ready is not None and pid == spawn.ready.pid:
                spawn.drop()  # killed while it waited: another one comes
        # the child ahead is forked while no program runs, or once the spawner has been idle a
        # moment: its fork and first steps then take no CPU from a program's start
        if not running:
            spawn.refill()
        idle = None if spawn.ready is not None or spawn.refused else REFILL_AFTER
        try:
            ready, _, _ = select.select([channel.fileno(), wake_r], [], [], idle)
        except InterruptedError:
            continue
        if not ready:
            spawn.refill()
            continue
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
        if channel.fileno() not in ready:
            continue
        try:
            msg, fds = recv_fds(channel, MAX_MESSAGE, 3)
        except InterruptedError:
            continue
        except OSError:
            return 1
        if not msg:
            return 0
        try:
            req = json.loads(msg)
            _handle(channel, msg, req, fds, running, spawn)
        except (ValueError, KeyError, TypeError) as exc:
            _send(channel, {"id": -1, "error": f"bad request: {exc}"})
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


class _Spawn:
    """The spawner's ready child, and the hand-over of an order to it."""

    def __init__(self, limits: ProgramLimits | None) -> None:
        self.limits = limits
        self.ready: _Ready | None = None
        self.refused = False  # the last fork failed: wait for a request to try again

    def refill(self) -> None:
        if self.ready is not None or self.refused:
            return
        try:
            self.ready = _fork_ready(self.limits)
        except OSError:  # EAGAIN: max_num_of_threads reached; a request forks as it comes
            self.refused = True

    def drop(self) -> None:
        if self.ready is not None:
            self.ready.orders.close()  # a child still waiting ends on its closed socket
            self.ready = None

    def start(self, order: bytes, fds: list[int]) -> int:
        """Hand ``order`` to the ready child (forked now if there is none); its pid."""
        self.refused = False
        for _ in range(2):  # a ready child that died meanwhile: one fresh try
            if self.ready is None:
                self.ready = _fork_ready(self.limits)
            ready = self.ready
            try:
                send_fds(ready.orders, order, fds)
            except OSError:
                self.drop()
                continue
            self.ready = None
            ready.orders.close()
            return ready.pid
        raise OSError(errno.ECHILD, "the child forked for the program ended before its start")


def _handle(
    channel: socket.socket,
    msg: bytes,
    req: dict[str, object],
    fds: list[int],
    running: dict[int, int],
    spawn: _Spawn,
) -> None:
    rid = int(req["id"])  # type: ignore[call-overload]
    if req["op"] == "exec":
        if len(fds) != 3:
            _send(channel, {"id": rid, "error": "stdin, stdout and stderr were not passed"})
            return
        try:
            pid = spawn.start(msg, fds)
        except OSError as exc:  # EAGAIN: max_num_of_threads reached
            _send(channel, {"id": rid, "error": f"cannot start a process: {exc.strerror}"})
            return
        running[pid] = rid
        _send(channel, {"id": rid, "pid": pid})
    elif req["op"] == "signal":
        sig = int(req["sig"])  # type: ignore[call-overload]
        for pid, r in running.items():
            if r == rid:
                try:
                    os.kill(-pid, sig)  # its process group: a pipeline gets it whole
                except OSError:
                    with contextlib.suppress(OSError):
                        os.kill(pid, sig)  # not yet a group leader
    else:
        _send(channel, {"id": rid, "error": f"unknown request {req['op']!r}"})
