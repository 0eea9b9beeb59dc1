"""A started instance: ``occlum start`` boots the LibOS in a background server that runs
programs on request (``occlum exec``), signals them (``occlum kill``), lists them (``occlum
ps``) and stops (``occlum stop``), flushing every file system.

    occlum start ──fork──► server (a session of its own, log in run/server.log)
                             main thread:   the LibOS (init stage, then a tree whose first
                                            process is the spawner) serving system calls
                             server thread: run/occlum.sock, one connection per client,
                                            and the channel to the spawner

The server thread never touches the LibOS's state: it talks to the spawner (which forks and
execs inside the instance, under the filter) and reads the host's /proc for the processes of
the instance's PID namespace. One server per instance directory: it holds an exclusive lock
on run/server.lock for its whole life, so a second ``occlum start`` (or an ``occlum run``)
is refused while it runs, and a server that died leaves no lock behind.

The protocol is one JSON object per SOCK_SEQPACKET message (see :mod:`occlum.instance.client`).

About 570 lines, one room: the server, its clients' protocol and the spawner's channel are
one conversation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occlum.errors import UserError
from occlum.instance.exec_native import install_native_client
from occlum.instance.wire import (
    LOCK_NAME,
    LOG_NAME,
    MAX_MESSAGE,
    PID_NAME,
    SOCKET_NAME,
    lock_holder,
    socket_address,
)
from occlum.platform.fdpass import recv_fds, send_fds

STOP_TIMEOUT = 10.0  # seconds from SIGTERM to SIGKILL, as `docker stop`
REPORT_GRACE = 2.0  # after the last kill: how long the spawner may take to report the exits


@dataclass(slots=True)
class ProcRow:
    pid: int
    ppid: int
    state: str
    threads: int
    rss_kib: int
    command: str
    host_pid: int = 0


def _status_fields(host_pid: int) -> dict[str, str]:
    with open(f"/proc/{host_pid}/status", "rb") as f:
        text = f.read().decode(errors="replace")
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def instance_processes(init_pid: int) -> list[ProcRow]:
    """Every process of the instance's PID namespace, init included, with LibOS pids."""
    try:
        ns = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
    except OSError:
        return []
    found: list[tuple[int, dict[str, str]]] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}/ns/pid").st_ino != ns:
                continue
            found.append((int(name), _status_fields(int(name))))
        except OSError:
            continue
    inner = {host: int(st["NSpid"].split()[-1]) for host, st in found if "NSpid" in st}
    rows: list[ProcRow] = []
    for host, st in found:
        if host not in inner:
            continue
        try:
            with open(f"/proc/{host}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
            command = " ".join(w.decode(errors="replace") for w in words if w)
        except OSError:
            command = ""
        rows.append(
            ProcRow(
                pid=inner[host],
                ppid=inner.get(int(st.get("PPid", "0") or 0), 0),
                state=st.get("State", "?").split()[0],
                threads=int(st.get("Threads", "1") or 1),
                rss_kib=int((st.get("VmRSS", "0 kB").split() or ["0"])[0]),
                command=command or f"[{st.get('Name', '?')}]",
                host_pid=host,
            )
        )
    rows.sort(key=lambda r: r.pid)
    return rows


@dataclass(slots=True)
class Exec:
    conn: socket.socket
    pid: int = 0


@dataclass
class Server:
    """The server thread's state; ``attach`` starts it once the spawner runs."""

    listening: socket.socket
    check_program: Callable[[str], str]  # entry-point check: the normalized path or UserError
    environment: Callable[[dict[str, str]], list[str]]  # the client's env -> the program's
    init_pid: int = 0
    spawner_pid: int = 0
    channel: socket.socket | None = None
    started_at: float = field(default_factory=time.time)
    execs: dict[int, Exec] = field(default_factory=dict)
    conns: dict[socket.socket, int] = field(default_factory=dict)  # -> exec id (0: none)
    stop_waiters: list[socket.socket] = field(default_factory=list)
    stopping: bool = False
    stop_deadline: float = 0.0
    killed_at: float = 0.0
    next_id: int = 1
    finished: bool = False
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- the main thread's side -------------------------------------------------------------
    def attach(self, init_pid: int, channel: socket.socket) -> None:
        self.init_pid = init_pid
        self.channel = channel
        with (
            contextlib.suppress(OSError, ValueError),
            open(f"/proc/{init_pid}/task/{init_pid}/children", "rb") as f,
        ):
            self.spawner_pid = int(f.read().split()[0])
        self.sel.register(self.listening, selectors.EVENT_READ, "listen")
        self.sel.register(channel, selectors.EVENT_READ, "spawner")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._run, name="occlum-server", daemon=True)
        self.thread.start()

    def request_stop(self) -> None:
        """SIGTERM to the server: a graceful stop (safe from a signal handler)."""
        self._wake(b"T")

    def finish(self) -> None:
        """The LibOS ended (every file system written back): answer `occlum stop` and end."""
        self._wake(b"F")
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _wake(self, what: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake_w, what)

    # -- the server thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self.finished:
            timeout = 0.1 if self.stopping else None
            for key, _ in self.sel.select(timeout):
                what = key.data
                try:
                    if what == "listen":
                        self._accept()
                    elif what == "spawner":
                        self._from_spawner()
                    elif what == "wake":
                        self._woken()
                    else:
                        self._from_client(key.fileobj)  # type: ignore[arg-type]
                except Exception as exc:  # one bad client must not end the server
                    print(f"occlum server: internal error: {exc!r}", file=sys.stderr, flush=True)
            if self.stopping and not self.finished:
                self._stop_step()
        self._close_all()

    def _woken(self) -> None:
        try:
            data = os.read(self.wake_r, 64)
        except BlockingIOError:
            return
        if b"F" in data:
            self.finished = True
        if b"T" in data:
            self._begin_stop(STOP_TIMEOUT)

    def _accept(self) -> None:
        try:
            conn, _ = self.listening.accept()
        except OSError:
            return
        self.conns[conn] = 0
        self.sel.register(conn, selectors.EVENT_READ, "client")

    def _drop(self, conn: socket.socket) -> None:
        rid = self.conns.pop(conn, 0)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        if rid and rid in self.execs:
            # the client went away while its program runs: a hang-up, as a closed terminal gives
            self._to_spawner({"op": "signal", "id": rid, "sig": int(signal.SIGHUP)})
            del self.execs[rid]
        if conn in self.stop_waiters:
            self.stop_waiters.remove(conn)
        conn.close()

    @staticmethod
    def _reply(conn: socket.socket, obj: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.send(json.dumps(obj).encode())

    def _to_spawner(self, obj: dict[str, Any], fds: list[int] | None = None) -> bool:
        if self.channel is None:
            return False
        try:
            send_fds(self.channel, json.dumps(obj).encode(), fds)
        except OSError:
            return False
        return True

    def _from_client(self, conn: socket.socket) -> None:
        try:
            msg, fds = recv_fds(conn, MAX_MESSAGE, 3)
        except OSError:
            msg, fds = b"", []
        try:
            if not msg:
                self._drop(conn)
                return
            try:
                req = json.loads(msg)
                op = req["op"]
            except (ValueError, KeyError, TypeError):
                self._reply(conn, {"error": "malformed request"})
                return
            handler = {
                "exec": self._exec,
                "signal": self._signal,
                "kill": self._kill,
                "ps": self._ps,
                "host_pid": self._host_pid,
                "status": self._status,
                "stop": self._stop,
            }.get(op)
            if handler is None:
                self._reply(conn, {"error": f"unknown request {op!r}"})
                return
            handler(conn, req, fds)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _exec(self, conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
        if self.stopping:
            self._reply(conn, {"error": "the instance is stopping"})
            return
        argv = [str(a) for a in req.get("argv") or []]
        if not argv:
            self._reply(conn, {"error": "no program given (e.g. occlum exec /bin/hello)"})
            return
        if len(fds) != 3:
            self._reply(conn, {"error": "the client passed no stdin, stdout and stderr"})
            return
        try:
            argv[0] = self.check_program(argv[0])
        except UserError as exc:
            self._reply(conn, {"error": str(exc), "code": exc.exit_code})
            return
        env = self.environment(dict(req.get("env") or {}))
        rid = self.next_id
        self.next_id += 1
        order = {"op": "exec", "id": rid, "argv": argv, "env": env, "tty": bool(req.get("tty"))}
        if not self._to_spawner(order, fds):
            self._reply(conn, {"error": "the instance's spawner is gone"})
            return
        self.execs[rid] = Exec(conn)
        self.conns[conn] = rid

    def _signal(self, conn: socket.socket, req: dict[str, Any], _fds: list[int]) -> None:
        rid = self.conns.get(conn, 0)
        if rid and rid in self.execs:
            self._to_spawner({"op": "signal", "id": rid, "sig": int(req.get("sig", 0))})

    def _kill(self, conn: socket.socket, req: dict[str, Any], _fds: list[int]) -> None:
        pid, sig = int(req.get("pid", 0)), int(req.get("sig", signal.SIGTERM))
        rows = {r.pid: r for r in instance_processes(self.init_pid)}
        row = rows.get(pid)
        if row is None or row.host_pid in (self.init_pid, self.spawner_pid):
            self._reply(conn, {"error": f"no process {pid} in the instance (see occlum ps)"})
            return
        try:
            os.kill(row.host_pid, sig)
        except OSError as exc:
            self._reply(conn, {"error": f"cannot signal process {pid}: {exc.strerror}"})
            return
        self._reply(conn, {"ok": True})

    def programs(self) -> list[ProcRow]:
        """The processes of the instance that are programs (not its init or spawner)."""
        return [
            r
            for r in instance_processes(self.init_pid)
            if r.host_pid not in (self.init_pid, self.spawner_pid)
        ]

    def _host_pid(self, conn: socket.socket, req: dict[str, Any], _fds: list[int]) -> None:
        """``occlum gdb --pid``: the host pid of a program, and the path it was executed by
        (where the stub is linked in the instance's mount namespace: the program's path)."""
        pid = int(req.get("pid", 0))
        # (a zombie has no memory left to debug)
        row = next((r for r in self.programs() if r.pid == pid and r.state != "Z"), None)
        if row is None:
            self._reply(conn, {"error": f"no process {pid} in the instance (see occlum ps)"})
            return
        try:
            exe = os.readlink(f"/proc/{row.host_pid}/exe")
        except OSError as exc:
            self._reply(conn, {"error": f"process {pid}: {exc.strerror}"})
            return
        self._reply(conn, {"host_pid": row.host_pid, "exe": exe})

    def _ps(self, conn: socket.socket, _req: dict[str, Any], _fds: list[int]) -> None:
        rows = [
            {k: getattr(r, k) for k in ("pid", "ppid", "state", "threads", "rss_kib", "command")}
            for r in self.programs()
        ]
        self._reply(conn, {"ps": rows})

    def _status(self, conn: socket.socket, _req: dict[str, Any], _fds: list[int]) -> None:
        self._reply(
            conn,
            {
                "status": {
                    "pid": os.getpid(),
                    "started_at": self.started_at,
                    "processes": len(self.programs()),
                    "execs": len(self.execs),
                    "stopping": self.stopping,
                }
            },
        )

    def _stop(self, conn: socket.socket, req: dict[str, Any], _fds: list[int]) -> None:
        self.stop_waiters.append(conn)
        self._begin_stop(float(req.get("timeout", STOP_TIMEOUT)))

    def _begin_stop(self, timeout: float) -> None:
        if self.stopping:
            self.stop_deadline = min(self.stop_deadline, time.monotonic() + timeout)
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + max(timeout, 0.0)
        for r in self.programs():
            with contextlib.suppress(OSError):
                os.kill(r.host_pid, signal.SIGTERM)

    def _stop_step(self) -> None:
        """Stopping: SIGKILL what outlived the timeout; once every program is gone and its
        exit reported, close the spawner's channel: the tree ends and the LibOS writes back."""
        left = self.programs()
        now = time.monotonic()
        if left and now >= self.stop_deadline:
            for r in left:
                with contextlib.suppress(OSError):
                    os.kill(r.host_pid, signal.SIGKILL)
            self.killed_at = self.killed_at or now
            return
        if left:
            return
        if self.execs and now - (self.killed_at or self.stop_deadline) < REPORT_GRACE:
            return  # the spawner is about to report the last exits
        if self.channel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.channel)
            self.channel.close()
            self.channel = None

    def _from_spawner(self) -> None:
        assert self.channel is not None
        try:
            msg = self.channel.recv(MAX_MESSAGE)
        except OSError:
            msg = b""
        if not msg:  # the spawner ended: so does the instance
            self.sel.unregister(self.channel)
            self.channel.close()
            self.channel = None
            for gone in self.execs.values():
                self._reply(gone.conn, {"error": "the instance stopped before the command ended"})
            self.execs.clear()
            self.stopping = True
            return
        try:
            rep = json.loads(msg)
            rid = int(rep["id"])
        except (ValueError, KeyError, TypeError):
            return
        ex = self.execs.get(rid)
        if ex is None:
            return
        if "pid" in rep:
            ex.pid = int(rep["pid"])
            self._reply(ex.conn, {"pid": ex.pid})
        elif "status" in rep:
            self._reply(ex.conn, {"exit": int(rep["status"])})
            del self.execs[rid]
            self.conns[ex.conn] = 0
        elif "error" in rep:
            self._reply(ex.conn, {"error": str(rep["error"])})
            del self.execs[rid]
            self.conns[ex.conn] = 0

    def _close_all(self) -> None:
        for conn in self.stop_waiters:
            self._reply(conn, {"stopped": True})
        for ex in self.execs.values():
            self._reply(ex.conn, {"error": "the instance stopped before the command ended"})
        for conn in list(self.conns):
            with contextlib.suppress(OSError):
                conn.close()
        self.listening.close()
        if self.channel is not None:
            self.channel.close()


# -- starting -----------------------------------------------------------------------------


def start_server(run_dir: Path, make_libos: Callable[[], Any], config: Any) -> int:
    """``occlum start``: boot the instance in a background server; return once it serves.

    ``make_libos`` builds the LibOS (in the server process); ``config`` is the built
    configuration (entry points and env). Returns the server's pid; a boot failure is a
    ``UserError`` with the server's own message.
    """
    from occlum.instance.config import build_env, check_entry_point

    run_dir.mkdir(parents=True, exist_ok=True)
    holder = lock_holder(run_dir)
    if holder is not None:
        raise UserError(
            f"the instance is already started (server pid {holder}); occlum stop stops it"
        )
    why = install_native_client(run_dir)
    if why is not None:
        print(f"occlum: note: {why}; occlum exec uses its Python client", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        first = os.fork()
    except OSError as exc:  # EAGAIN: the host's limit on processes
        os.close(ready_r)
        os.close(ready_w)
        raise UserError(f"cannot start the server: fork: {exc.strerror}")
    if first == 0:  # detach: a session of its own, then the server is an orphan
        os.close(ready_r)
        try:
            os.setsid()
            try:
                second = os.fork()
            except OSError as exc:
                os.write(ready_w, f"error cannot start the server: fork: {exc.strerror}\n".encode())
                raise
            if second != 0:
                os._exit(0)
            _server_main(
                run_dir,
                make_libos,
                lambda path: check_entry_point(config, path),
                lambda host_env: [f"{k}={v}" for k, v in build_env(config, host_env)],
                ready_w,
            )
        finally:
            os._exit(1)
    os.close(ready_w)
    os.waitpid(first, 0)
    # one line; not EOF: the instance's own processes are forks of the server and hold the pipe
    chunks = []
    while (chunk := os.read(ready_r, 4096)) and b"\n" not in chunk:
        chunks.append(chunk)
    os.close(ready_r)
    answer = b"".join([*chunks, chunk]).decode(errors="replace")
    if answer.startswith("ok "):
        return int(answer.split()[1])
    why = answer.removeprefix("error ").strip() or (
        f"the server ended while booting (see {run_dir / LOG_NAME})"
    )
    raise UserError(why)


def _server_main(
    run_dir: Path,
    make_libos: Callable[[], Any],
    check_program: Callable[[str], str],
    environment: Callable[[dict[str, str]], list[str]],
    ready_w: int,
) -> None:
    def tell(text: str) -> None:
        nonlocal ready_w
        if ready_w >= 0:
            with contextlib.suppress(OSError):
                os.write(ready_w, text.encode() + b"\n")
            os.close(ready_w)
            ready_w = -1

    log_fd = os.open(run_dir / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    lock_fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        tell("error the instance is already started")
        return
    pid_path, sock_path = run_dir / PID_NAME, run_dir / SOCKET_NAME
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"occlum server {os.getpid()} starting at {stamp}", file=sys.stderr, flush=True)
    try:
        pid_path.write_text(f"{os.getpid()}\n")
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()  # left by a server that died: the lock says none runs
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        address, dirfd = socket_address(run_dir)
        try:
            listening.bind(address)
        finally:
            os.close(dirfd)
        os.chmod(sock_path, 0o600)
        listening.listen(64)
    except OSError as exc:
        tell(f"error cannot listen on {sock_path}: {exc.strerror}")
        return
    server = Server(listening, check_program, environment)
    code = 1
    try:
        libos = make_libos()

        def started(init_pid: int, channel: socket.socket) -> None:
            server.attach(init_pid, channel)
            tell(f"ok {os.getpid()}")

        signal.signal(signal.SIGTERM, lambda _s, _f: server.request_stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        from occlum.kernel import stages  # in the server process only, as the LibOS is

        code = stages.serve(libos, started)
    except UserError as exc:
        tell(f"error {exc}")
        print(f"occlum server: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:
        tell(f"error the server failed: {exc!r} (see {run_dir / LOG_NAME})")
        traceback.print_exc()
    finally:
        server.finish()
        with contextlib.suppress(OSError):
            sock_path.unlink()
        with contextlib.suppress(OSError):
            pid_path.unlink()
        print(f"occlum server {os.getpid()} stopped", file=sys.stderr, flush=True)
        os.close(lock_fd)
        tell("error the server ended while booting")
        os._exit(0 if code == 0 else 1)
