"""The client side of a fast ``occlum run``: hand the run to the user's zygote
(:mod:`occlum.cli.zygote`), starting one if there is none, and wait for its outcome.

:func:`run_via_zygote` returns None whenever the run must take the direct path instead, with
nothing run: ``OCCLUM_NO_ZYGOTE=1``, a descriptor 0-2 that is a terminal or closed, no safe
socket directory, no zygote that can start, or a zygote that declined. Once the zygote said
the run started, its outcome is final: the run's exit status, or its death by a signal,
which this process then dies of too. SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1,
SIGUSR2 and SIGALRM are relayed to the run's process.

Only the standard library is imported here (plus :mod:`occlum.cli.zygote_wire`).
"""

from __future__ import annotations

import _socket  # socket.py costs more to import than the whole request
import os
import select
import signal
import sys

from occlum.cli import zygote_wire as wire
from occlum.platform.readiness import readable

RELAYED = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH,
    signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM,
)  # fmt: skip
START_TIMEOUT = 30.0  # seconds a new zygote may take to import the LibOS on a loaded machine


def is_run(args: list[str]) -> bool:
    """Whether the command line is ``[--instance-dir DIR] run ...``."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--instance-dir":
            i += 2
        elif arg.startswith("--instance-dir="):
            i += 1
        else:
            return arg == "run" and i + 1 < len(args)
    return False


def plain_run(args: list[str]) -> tuple[str, list[str]] | None:
    """(instance dir, argv) of ``[--instance-dir DIR] run PROGRAM [ARGS...]`` with no option of
    ``run`` and an instance directory that is a directory; None for anything else."""
    instance_dir = "."
    i = 0
    while i < len(args) and args[i] != "run":
        if args[i] == "--instance-dir" and i + 1 < len(args):
            instance_dir = args[i + 1]
            i += 2
        elif args[i].startswith("--instance-dir="):
            instance_dir = args[i].split("=", 1)[1]
            i += 1
        else:
            return None
    rest = args[i + 1 :]
    if not rest or rest[0].startswith("-") or not os.path.isdir(instance_dir):
        return None  # options, --help, a missing program: the full command line
    return instance_dir, rest


def run_direct(instance_dir: str, argv: list[str]) -> int:
    """``occlum run`` as the full command line runs it, without loading the command-line
    framework (click, rich): the exit status, or 1 with one line for a ``UserError``."""
    from occlum.errors import UserError

    try:
        from occlum.instance.fusemount import refuse_if_mounted
        from occlum.instance.layout import Instance
        from occlum.instance.runspec import to_run_spec
        from occlum.instance.wire import refuse_if_started

        inst = Instance.at(instance_dir)
        refuse_if_started(inst.run_dir)
        refuse_if_mounted(inst)  # a volume `occlum mount` serves is not the LibOS's to write
        spec = to_run_spec(inst, argv, os.environ)
        try:
            import occlum.boot as boot
        except ImportError as e:
            if e.name in ("occlum.boot", "occlum.kernel"):
                raise UserError("the LibOS kernel (occlum.boot) is not available in this build")
            raise
        with inst.running():
            try:
                return int(boot.run(spec))
            except KeyboardInterrupt:  # as the full command line's run: no line of its own
                return 130
    except UserError as e:
        if not e.shown:
            print(f"occlum: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130


def _usable_stdio() -> bool:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False  # closed: a child could not look the same
        if os.isatty(fd):
            return False  # the terminal's session and foreground: the direct path
    return True


def _connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _start_zygote(path: str) -> bool:
    """Start a zygote for ``path`` in a session of its own; whether one is ready (this one or
    another that was starting)."""
    r, w = os.pipe()
    try:
        log = os.open(path + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError:
        os.close(r)
        os.close(w)
        return False
    try:
        pid = os.fork()
    except OSError:
        for fd in (r, w, log):
            os.close(fd)
        return False
    if pid == 0:  # becomes the zygote
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            os.close(r)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(log, 2)
            os.set_inheritable(w, True)
            # -P: the caller's working directory is not put on the module path (a file there
            # named like a module the zygote imports would be imported instead)
            os.execv(
                sys.executable, [sys.executable, "-P", "-m", "occlum.cli.zygote", path, str(w)]
            )
        finally:
            os._exit(127)
    os.close(w)
    os.close(log)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    try:
        ready = readable([r], START_TIMEOUT)
        answer = os.read(r, 16) if ready else b""
    finally:
        os.close(r)
    if answer == wire.STALE_EXIT:  # another zygote holds the lock: give it a moment
        return True
    return answer == b"ready"


def _request(sock: _socket.socket, args: list[str]) -> bytes:
    umask = os.umask(0)
    os.umask(umask)
    env = [k + b"=" + v for k, v in os.environb.items()]
    data = wire.encode_request([os.fsencode(a) for a in args], env, umask)
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    try:
        fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, 1, 2, cwd))
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        if sent < len(data):
            sock.sendall(data[sent:])
    finally:
        os.close(cwd)
    return sock.recv(1)


def run_via_zygote(args: list[str]) -> int | None:
    """Run ``occlum ARGS`` (a ``run`` command line) through the zygote; its exit code, or
    None to take the direct path."""
    if os.environ.get(wire.DISABLE_ENV, "") not in ("", "0") or not _usable_stdio():
        return None
    base = wire.zygote_dir()
    if base is None:
        return None
    path = os.path.join(base, wire.zygote_key() + ".sock")
    sock = _connect(path)
    if sock is None:
        if not _start_zygote(path):
            return None
        for _ in range(50):  # a zygote that was starting already binds within a moment
            sock = _connect(path)
            if sock is not None:
                break
            select.select([], [], [], 0.1)
        if sock is None:
            return None
    try:
        relay = {s: signal.getsignal(s) for s in RELAYED}
        try:

            def forward(signum: int, _frame: object) -> None:
                try:
                    sock.send(wire.SIGNAL + bytes([signum]))
                except OSError:
                    pass

            for s, old in relay.items():
                if old != signal.SIG_IGN:  # an ignored signal stays ignored, as it would be
                    signal.signal(s, forward)
            try:
                first = _request(sock, args)
            except OSError:
                return None
            if first == wire.EXITED:  # a relayed signal ended it before the command began
                status = _wait_status(sock, first)
            elif first != wire.STARTED:
                return None  # declined, or a zygote that went away: nothing has run
            else:
                status = _wait_status(sock)
        finally:
            for s, old in relay.items():
                if old is not None:
                    signal.signal(s, old)
    finally:
        sock.close()
    if status is None:
        print("occlum: error: the zygote serving this run ended", file=sys.stderr)
        return 1
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.waitstatus_to_exitcode(status)


def _wait_status(sock: _socket.socket, buf: bytes = b"") -> int | None:
    while True:
        try:
            chunk = sock.recv(64)
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
        at = buf.find(wire.EXITED)
        if at >= 0 and len(buf) >= at + 5:
            return int.from_bytes(buf[at + 1 : at + 5], "little", signed=True)
