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

A program without a terminal is started with ``posix_spawn`` (a vfork): the child shares the
spawner's memory until its ``execve``, so no copy of the spawner's 60 MB of address space is
made, and none torn down again at the exec (a fork's child paid about 2 ms for both). Such a
child cannot set the instance's ``RLIMIT_AS`` and ``RLIMIT_STACK`` itself: the supervisor sets
them when it meets the child, at its ``execve`` (``Limits.limit_spawned``), before the exec goes
on. A program under a terminal is forked as before: it must take the terminal as its
controlling one (``TIOCSCTTY``), which ``posix_spawn`` cannot do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import termios
from typing import NoReturn

from occlum.platform.fdpass import recv_fds
from occlum.platform.limits import ProgramLimits, apply_program_limits
from occlum.platform.readiness import readable

MAX_MESSAGE = 1 << 20


def _send(channel: socket.socket, obj: dict[str, object]) -> None:
    with contextlib.suppress(OSError):
        channel.send(json.dumps(obj).encode())


def exec_program(
    path: bytes, argv: list[bytes], env: list[bytes], limits: ProgramLimits | None
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
    ``path`` is what is executed."""
    argv = [program_name(path, env), *argv[1:]]
    try:
        signal.set_wakeup_fd(-1)
        for sig in range(1, signal.NSIG):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
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


def _child(req: dict[str, object], fds: list[int], limits: ProgramLimits | None) -> NoReturn:
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
    exec_program(argv[0], argv, env, limits)


def serve_requests(channel: socket.socket, limits: ProgramLimits | None) -> int:
    """Start programs on request until the channel closes; return the spawner's exit code."""
    running: dict[int, int] = {}  # pid -> request id
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    while True:
        while running:  # report every program that ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            rid = running.pop(pid, None)
            if rid is not None:
                _send(channel, {"id": rid, "status": status})
        try:
            ready = readable([channel.fileno(), wake_r])
        except InterruptedError:
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
            _handle(channel, req, fds, running, limits)
        except (ValueError, KeyError, TypeError) as exc:
            _send(channel, {"id": -1, "error": f"bad request: {exc}"})
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


# every signal a program starts with the default disposition of (KILL and STOP always have it)
_ALL_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


def _spawn(req: dict[str, object], fds: list[int]) -> int:
    """Start a program without a terminal with ``posix_spawn``: a process group of its own, the
    client's stdin, stdout and stderr and no other descriptor (the spawner's own are
    close-on-exec, the received ones are closed), default signal dispositions, nothing
    blocked. Its pid; 0 if it cannot start (said on its stderr, as exec_program does)."""
    argv = [os.fsencode(a) for a in req["argv"]]  # type: ignore[attr-defined]
    env = [os.fsencode(e) for e in req["env"]]  # type: ignore[attr-defined]
    path = argv[0]
    actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in fds]
    try:
        return os.posix_spawn(
            path,
            [program_name(path, env), *argv[1:]],
            dict(e.split(b"=", 1) for e in env if b"=" in e),  # type: ignore[misc]
            file_actions=actions,
            setpgroup=0,  # Ctrl-C on the client reaches the whole pipeline
            setsigdef=_ALL_SIGNALS,
            setsigmask=(),
        )
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            raise  # the process limit: no program, as for a fork refused
        with contextlib.suppress(OSError):
            os.write(
                fds[2],
                f"occlum: cannot start {path.decode(errors='replace')}: {exc.strerror}\n".encode(),
            )
        return 0


def _handle(
    channel: socket.socket,
    req: dict[str, object],
    fds: list[int],
    running: dict[int, int],
    limits: ProgramLimits | None,
) -> None:
    rid = int(req["id"])  # type: ignore[call-overload]
    if req["op"] == "exec":
        if len(fds) != 3:
            _send(channel, {"id": rid, "error": "stdin, stdout and stderr were not passed"})
            return
        try:
            if not req.get("tty") and min(fds) > 2:
                pid = _spawn(req, fds)
            else:
                pid = os.fork()
                if pid == 0:
                    _child(req, fds, limits)
        except OSError as exc:  # EAGAIN: max_num_of_threads reached
            _send(channel, {"id": rid, "error": f"cannot start a process: {exc.strerror}"})
            return
        if pid == 0:  # it could not start: its stderr has the reason, 127 as a shell gives
            _send(channel, {"id": rid, "pid": 0})
            _send(channel, {"id": rid, "status": 127 << 8})
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
