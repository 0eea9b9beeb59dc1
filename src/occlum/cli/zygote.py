"""The zygote of ``occlum run``: a per-user, per-LibOS process that has imported the whole
LibOS once and forks one child per run, so that a run pays no imports (see
docs/internals.md, "A fast occlum run", and :mod:`occlum.cli.fastrun` for the client).

``python -m occlum.cli.zygote SOCKET READY_FD`` is started by the first ``occlum run`` that
finds none. It imports every module of the package, takes the lock ``SOCKET.lock`` (a second
zygote for the same socket ends at once), listens on ``SOCKET`` and writes ``ready`` to
``READY_FD``. Each connection is a request of the same user (``SO_PEERCRED``) that the
zygote either declines (``F``: the client then runs directly, nothing has run) or serves: a
child, forked from the zygote, takes the client's descriptors 0-2, working directory, umask,
environment, resource limits, nice value, CPU affinity, OOM score, signal mask and ignored
signals, joins the client's cgroups, and runs the ``occlum`` command line exactly as the
direct path would. The zygote reports the child's wait status, relays the signals the
client sends, and kills the child if the client goes away (as the direct path's supervisor
dies with its process).

It declines a client that differs in what a child cannot take on: namespaces, credentials,
capabilities, no_new_privs, a seccomp filter, a controlling terminal, a larger hard resource
limit, the environment the interpreter itself reads at start (``PYTHON*``, ``LD_*``,
``GLIBC_TUNABLES``, ``MALLOC_*``) - and every request once a file of the LibOS package
changed since it started (it then stops listening, and the next run starts a new zygote).

A run's child is forked ahead (the *spare*): when a run starts and when one ends, the zygote
forks the next run's child, which leaves the zygote's state and waits; a request is handed to
it (its descriptors, and the rest pickled, over a socket pair of their own), so that no run
waits for a fork of the zygote. A spare forked before the zygote kept another image file is
let go, never used.

It also keeps the image files its runs verified (``imagefs.VERIFIED``): a child hands each
sealed memfd it fills to the zygote, which keeps up to ``OCCLUM_ZYGOTE_CACHE_BYTES`` of them
(least recently kept first out); every later child inherits them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import importlib
import json
import os
import pickle
import pkgutil
import resource
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field

import occlum
from occlum.cli import fastrun
from occlum.cli import zygote_wire as wire
from occlum.cli.entry import internal_error
from occlum.fs import imagefs
from occlum.platform import fdbudget, native
from occlum.platform.fdpass import recv_fds, send_fds
from occlum.platform.readiness import readable

_NAMESPACES = ("mnt", "net", "pid", "uts", "ipc", "user", "cgroup", "time")
_SAME_STATUS = (
    "Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff", "CapBnd",
    "CapAmb",
)  # fmt: skip
_STARTUP_ENV = (b"PYTHON", b"LD_", b"GLIBC_TUNABLES", b"MALLOC_")
_RLIMITS = sorted(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))
_ALL_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
_KEPT_FD_BASE = 1 << 15  # kept memfds live above every soft limit a run is likely to set
_MAX_KEPT_FILES = 4096


def fingerprint(root: str) -> list[tuple[str, int, int, int, int]]:
    """Every file and directory of the package (but bytecode) by path, inode, size, mtime and
    ctime (which no one can set back): what changes when the LibOS source that a run would
    measure and import changes."""
    out: list[tuple[str, int, int, int, int]] = []
    todo = [root]
    while todo:
        d = todo.pop()
        st = os.stat(d)
        out.append((d, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        todo.append(e.path)
                elif not e.name.endswith((".pyc", ".pyo")):
                    s = e.stat(follow_symlinks=False)
                    out.append((e.path, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns))
    out.sort()
    return out


def _warm_up() -> None:
    """Import every module of the package, and what a run imports lazily, so that no child
    imports from disk (the staleness check covers the package's files)."""
    for mod in pkgutil.walk_packages(occlum.__path__, "occlum."):
        if mod.name.endswith(("__main__", ".entry")):
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(mod.name)
    import occlum.boot as boot
    from occlum.enclave import measure
    from occlum.syscalls import table

    measure.libos_digest()
    table.rows()
    boot.prepare()
    # what is imported now stays: no collection of the children walks (and so copies) it
    gc.freeze()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _status(pid: int | str) -> dict[str, str]:
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _stat_fields(pid: int | str) -> list[str]:
    raw = _read(f"/proc/{pid}/stat")
    return raw[raw.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def _startup_env(env: dict[bytes, bytes]) -> dict[bytes, bytes]:
    return {k: v for k, v in env.items() if k.startswith(_STARTUP_ENV)}


@dataclass(slots=True)
class Peer:
    """What a child takes on from its client, read from the client's /proc entry."""

    pid: int
    rlimits: list[tuple[int, int, int]]
    nice: int
    affinity: set[int]
    oom_score_adj: str
    sigmask: int
    sigign: int
    cgroups: list[tuple[str, str]]  # (hierarchy line prefix "N:controllers", path) to join


@dataclass(slots=True)
class Run:
    conn: socket.socket
    pid: int
    pidfd: int


@dataclass(slots=True)
class Spare:
    """A child forked ahead of the next run, waiting on ``sock`` for it (see ``make_spare``)."""

    pid: int
    pidfd: int
    sock: socket.socket  # the zygote's end
    kept_gen: int  # the kept files it inherited: ``Zygote.kept_gen`` when it was forked


@dataclass(slots=True)
class Zygote:
    sock_path: str
    package: str
    fingerprint: list[tuple[str, int, int, int, int]]
    startup_env: dict[bytes, bytes]
    listener: socket.socket
    lock_fd: int
    kept_r: socket.socket
    kept_w: socket.socket
    closer: socket.socket  # to the closer process (see _start_closer)
    cache_bytes: int
    idle: float
    sel: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    runs: dict[int, Run] = field(default_factory=dict)  # by pidfd
    by_conn: dict[int, Run] = field(default_factory=dict)  # by the connection's descriptor
    kept: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)
    kept_bytes: int = 0
    kept_gen: int = 0  # counts the changes of ``kept``
    spare: Spare | None = None
    listening: bool = True
    last_active: float = field(default_factory=time.monotonic)
    pid: int = field(default_factory=os.getpid)

    # --- declining ---------------------------------------------------------------------

    def decline_reason(self, pid: int, ident: bytes, env: dict[bytes, bytes]) -> str | None:
        """Why a child could not be what the direct path is for client ``pid``, or None."""
        if ident != wire.identity():
            return "another interpreter or LibOS"
        for ns in _NAMESPACES:
            try:
                if os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"):
                    return f"{ns} namespace"
            except FileNotFoundError:
                continue  # a kernel without that namespace type
        theirs, ours = _status(pid), _status("self")
        for key in _SAME_STATUS:
            if theirs.get(key) != ours.get(key):
                return key
        if _stat_fields(pid)[4] != "0":  # tty_nr: /dev/tty inside is the caller's terminal
            return "controlling terminal"
        if _startup_env(env) != self.startup_env:
            return "interpreter environment"
        if _read(f"/proc/{pid}/personality") != _read("/proc/self/personality"):
            return "personality"
        return None

    def peer(self, pid: int) -> Peer | str:
        rlimits = []
        for res in _RLIMITS:
            soft, hard = resource.prlimit(pid, res)
            ours = resource.getrlimit(res)[1]
            if ours != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > ours):
                return f"hard resource limit {res}"  # a child cannot raise its hard limit
            rlimits.append((res, soft, hard))
        st = _status(pid)
        own = {line.split(":", 2)[0]: line for line in _read("/proc/self/cgroup").splitlines()}
        cgroups = []
        for line in _read(f"/proc/{pid}/cgroup").splitlines():
            hier, controllers, path = line.split(":", 2)
            if own.get(hier) != line:
                cgroups.append((f"{hier}:{controllers}", path))
        return Peer(
            pid=pid,
            rlimits=rlimits,
            nice=int(_stat_fields(pid)[16]),
            affinity=os.sched_getaffinity(pid),
            oom_score_adj=_read(f"/proc/{pid}/oom_score_adj").strip(),
            sigmask=int(st["SigBlk"], 16),
            sigign=int(st["SigIgn"], 16),
            cgroups=cgroups,
        )

    # --- serving -----------------------------------------------------------------------

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_active = time.monotonic()
        with contextlib.suppress(OSError):  # first: the grace period goes by beside the run
            self.closer.send(PRIME, socket.MSG_DONTWAIT)
        fds: list[int] = []
        try:
            conn.settimeout(10.0)
            pid, uid, _gid = struct.unpack(
                "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            )
            if uid != os.getuid():
                conn.close()
                return
            ident, argv, env, umask, fds = self.read_request(conn)
            if self.stale():
                self.stop_listening()
                reason: str | None = "stale"
            else:
                reason = self.decline_reason(pid, ident, env)
            peer = self.peer(pid) if reason is None else reason
            if isinstance(peer, str):
                conn.sendall(wire.DECLINED)
                conn.close()
                for fd in fds:
                    os.close(fd)
                return
        except (OSError, ValueError, KeyError, IndexError):
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        conn.settimeout(None)
        self.start(conn, peer, argv, env, umask, fds)

    def read_request(
        self, conn: socket.socket
    ) -> tuple[bytes, list[bytes], dict[bytes, bytes], int, list[int]]:
        head, fds = recv_fds(conn, 4, wire.REQUEST_FDS)
        try:
            if len(head) < 4:
                head += _recv_exact(conn, 4 - len(head))
            (size,) = struct.unpack("<I", head)
            if size > wire.MAX_REQUEST or len(fds) != wire.REQUEST_FDS:
                raise ValueError("request too large, or without its descriptors")
            ident, argv, env, umask = wire.decode_request(_recv_exact(conn, size))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return ident, argv, env, umask, fds

    def start(
        self,
        conn: socket.socket,
        peer: Peer,
        argv: list[bytes],
        env: dict[bytes, bytes],
        umask: int,
        fds: list[int],
    ) -> None:
        pid = self.hand_to_spare(conn, peer, argv, env, umask, fds)
        if pid is not None:
            for fd in fds:
                os.close(fd)
            self.add_run(conn, pid)
            self.make_spare()  # the next one, while this run boots
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            with contextlib.suppress(OSError):
                conn.sendall(wire.DECLINED)
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        if pid == 0:
            code = 1
            try:
                code = self.child(conn, peer, argv, env, umask, fds)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        self.add_run(conn, pid)
        self.make_spare()

    def add_run(self, conn: socket.socket, pid: int) -> None:
        pidfd = os.pidfd_open(pid)
        run = Run(conn, pid, pidfd)
        self.runs[pidfd] = run
        self.by_conn[conn.fileno()] = run
        self.sel.register(pidfd, selectors.EVENT_READ, "exit")
        self.sel.register(conn, selectors.EVENT_READ, "client")

    # --- the spare -----------------------------------------------------------------------

    def make_spare(self) -> None:
        """Fork the child of the next run now, off any run's path (a fork of the zygote is
        2-5 ms): when a run starts (it boots meanwhile) and when one ended. It inherits the
        kept files of this moment: a spare forked before ``kept`` changed is let go, never
        used (a run gets every file kept before its request)."""
        if self.spare is not None and self.spare.kept_gen != self.kept_gen:
            self.dismiss_spare()
        if self.spare is not None or not self.listening:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:
            code = 1
            try:
                ours.close()
                code = self.spare_main(theirs)
            finally:
                os._exit(code)
        theirs.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            ours.close()
            return
        self.spare = Spare(pid, pidfd, ours, self.kept_gen)
        self.sel.register(pidfd, selectors.EVENT_READ, "spare")

    def dismiss_spare(self) -> None:
        """End the spare (also when it ended by itself: its pidfd is readable)."""
        spare, self.spare = self.spare, None
        if spare is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(spare.pidfd)
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(spare.pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spare.pid, 0)
        os.close(spare.pidfd)
        spare.sock.close()

    def hand_to_spare(
        self,
        conn: socket.socket,
        peer: Peer,
        argv: list[bytes],
        env: dict[bytes, bytes],
        umask: int,
        fds: list[int],
    ) -> int | None:
        """Give the run to the spare; its pid, or None (no spare that can take it)."""
        spare = self.spare
        if spare is None or spare.kept_gen != self.kept_gen:
            self.dismiss_spare()
            return None
        data = pickle.dumps((peer, argv, env, umask), pickle.HIGHEST_PROTOCOL)
        try:
            send_fds(spare.sock, struct.pack("<I", len(data)), [conn.fileno(), *fds])
            spare.sock.sendall(data)
        except OSError:  # it died meanwhile
            self.dismiss_spare()
            return None
        self.spare = None
        self.sel.unregister(spare.pidfd)
        os.close(spare.pidfd)  # the run's pidfd is opened anew in add_run
        spare.sock.close()
        return spare.pid

    def spare_main(self, sock: socket.socket) -> int:
        """In the spare: leave the zygote's state, wait for a run and become its child."""
        try:
            if not self.leave():
                return 1
            head, fds = recv_fds(sock, 4, 1 + wire.REQUEST_FDS)
        except KeyboardInterrupt:
            return 0
        if not head and not fds:
            return 0  # dismissed (or a zygote that died)
        try:
            if len(head) < 4 or len(fds) != 1 + wire.REQUEST_FDS:
                raise ValueError("a request without its descriptors")
            (size,) = struct.unpack("<I", head)
            peer, argv, env, umask = pickle.loads(_recv_exact(sock, size))
        except (OSError, ValueError, pickle.UnpicklingError):
            if fds:  # nothing ran: the client runs directly, as for a fork that failed
                with contextlib.suppress(OSError):
                    os.write(fds[0], wire.DECLINED)
            return 1
        sock.close()
        conn = socket.socket(fileno=fds[0])
        return self.child(conn, peer, argv, env, umask, fds[1:], left=True)

    def client_message(self, conn: socket.socket) -> None:
        run = self.by_conn.get(conn.fileno())
        if run is None:
            return
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:  # the client is gone: so is the run, as its supervisor would be
            self.sel.unregister(conn)
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(run.pidfd, signal.SIGKILL)
            return
        for i in range(0, len(data) - 1, 2):
            if data[i : i + 1] == wire.SIGNAL:
                with contextlib.suppress(OSError, ValueError):
                    signal.pidfd_send_signal(run.pidfd, data[i + 1])

    def reap(self, pidfd: int) -> None:
        run = self.runs.pop(pidfd, None)
        if run is None:  # not a run's
            return
        self.sel.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(run.pid, 0)
        self.by_conn.pop(run.conn.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(run.conn)
        with contextlib.suppress(OSError):
            run.conn.sendall(wire.EXITED + struct.pack("<i", status))
        run.conn.close()
        self.last_active = time.monotonic()
        self.make_spare()  # anew if the run kept files (the client has its answer first)

    # --- the child ---------------------------------------------------------------------

    def child(
        self,
        conn: socket.socket,
        peer: Peer,
        argv: list[bytes],
        env: dict[bytes, bytes],
        umask: int,
        fds: list[int],
        *,
        left: bool = False,
    ) -> int:
        """Become the client's ``occlum`` process and run its command line; the exit code.
        ``left``: a spare, which has left the zygote's state already."""
        try:
            if not left and not self.leave():
                return 1
            _become(peer, fds, umask, env)
        except KeyboardInterrupt:  # a relayed SIGINT: what the direct path's start-up does
            return 130
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                conn.sendall(wire.DECLINED)
            return 0
        imagefs.VERIFIED.publish = self.offer_kept
        fdbudget.hand_off = self.hand_to_closer
        fdbudget.on_short = _let_kept_go
        try:
            conn.sendall(wire.STARTED)
        except OSError:
            return 1
        conn.close()
        return _run_command(argv)

    def leave(self) -> bool:
        """In a child: die with the zygote, and close what is the zygote's; False if the
        zygote is gone already."""
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.pid:
            return False  # the zygote died before PDEATHSIG held
        self.sel.close()
        if self.listening:
            self.listener.close()
        self.kept_r.close()
        os.close(self.lock_fd)
        for run in self.runs.values():
            os.close(run.pidfd)
            run.conn.close()
        if self.spare is not None:
            os.close(self.spare.pidfd)
            self.spare.sock.close()
        return True

    def hand_to_closer(self, fd: int) -> None:
        """In a child: let the closer drop the last reference of a slow-closing descriptor."""
        self.closer.sendmsg(
            [b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))],
            socket.MSG_DONTWAIT,
        )  # fmt: skip

    def offer_kept(self, name: str, memfd: int, size: int) -> None:
        """In a child: hand a verified memfd to the zygote (best effort: it is a cache)."""
        if size > self.cache_bytes:
            return
        data = json.dumps([name, size]).encode()
        with contextlib.suppress(OSError):
            self.kept_w.sendmsg(
                [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", memfd))],
                socket.MSG_DONTWAIT,
            )  # fmt: skip

    # --- the kept files ----------------------------------------------------------------

    def take_kept(self) -> None:
        while True:
            try:
                msg, anc, _flags, _addr = self.kept_r.recvmsg(
                    4096, socket.CMSG_LEN(4), socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            fds = [
                struct.unpack("i", data[:4])[0]
                for level, typ, data in anc
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS and len(data) >= 4
            ]
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            try:
                name, size = json.loads(msg)
                self.keep(str(name), int(size), fds[0])
            except (ValueError, TypeError, OSError):
                os.close(fds[0])

    def keep(self, name: str, size: int, memfd: int) -> None:
        """Keep a child's verified memfd if it is sealed for good and of the size it said."""
        try:
            sealed = fcntl.fcntl(memfd, fcntl.F_GET_SEALS) & _ALL_SEALS == _ALL_SEALS
            if not sealed or os.fstat(memfd).st_size != size or name in self.kept:
                os.close(memfd)
                return
            try:
                high = fcntl.fcntl(memfd, fcntl.F_DUPFD_CLOEXEC, _KEPT_FD_BASE)
            except OSError:  # a hard limit below the base: kept where it is
                high = fcntl.fcntl(memfd, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError:
            os.close(memfd)
            return
        os.close(memfd)
        while self.kept and (
            self.kept_bytes + size > self.cache_bytes or len(self.kept) >= _MAX_KEPT_FILES
        ):
            old_name, (old_fd, old_size) = self.kept.popitem(last=False)
            imagefs.VERIFIED.files.pop(old_name, None)
            os.close(old_fd)
            self.kept_bytes -= old_size
        self.kept[name] = (high, size)
        self.kept_bytes += size
        self.kept_gen += 1
        imagefs.VERIFIED.files[name] = high

    # --- life ----------------------------------------------------------------------------

    def stale(self) -> bool:
        try:
            return fingerprint(self.package) != self.fingerprint
        except OSError:
            return True

    def stop_listening(self) -> None:
        """Take no more runs (the ones under way go on); a new zygote may start at once."""
        if not self.listening:
            return
        self.listening = False
        self.dismiss_spare()
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.listener)
        with contextlib.suppress(OSError):
            if os.stat(self.sock_path).st_ino == os.fstat(self.listener.fileno()).st_ino:
                os.unlink(self.sock_path)
        self.listener.close()
        os.close(self.lock_fd)
        self.lock_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

    def serve(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.kept_r, selectors.EVENT_READ, "kept")
        self.make_spare()
        while self.listening or self.runs:
            timeout = max(0.0, self.last_active + self.idle - time.monotonic())
            events = self.sel.select(timeout if not self.runs else None)
            if not events and not self.runs:
                self.stop_listening()
                break
            for key, _mask in events:
                try:
                    self.event(key)
                except Exception:  # a bug here must not end the runs under way: logged
                    traceback.print_exc()

    def event(self, key: selectors.SelectorKey) -> None:
        if key.data == "accept":
            self.accept()
        elif key.data == "kept":
            self.take_kept()
        elif key.data == "exit":
            self.take_kept()  # what the run verified, before its client returns
            self.reap(int(key.fd))
        elif key.data == "client":
            self.client_message(key.fileobj)  # type: ignore[arg-type]
        elif key.data == "spare":  # it ended before a run came
            self.dismiss_spare()


PRIME = b"p"  # to the closer: a run is starting (see _start_closer)
PRIME_WINDOW = 1.0  # seconds the closer keeps the cgroup lock primed after a run's request
PRIME_EVERY = 0.004  # well inside the ~10 ms after which a migration waits for a grace period


def _start_closer(keep_open: list[int], prime_fd: int = -1) -> socket.socket:
    """A process that closes the descriptors sent to it: the last close of an inotify instance
    waits for an SRCU grace period (10-20 ms), which a run would pay at each tree's end and at
    its exit; a child hands such descriptors over (``fdbudget.hand_off``) and the closer pays
    instead. It ends when no one can send to it any more.

    It also primes the cgroup lock (``prime_fd``: a ``cgroup.procs`` of its own cgroup, or -1):
    every move of a process into a cgroup takes the kernel's ``cgroup_threadgroup_rwsem`` for
    writing, and the first writer after a quiet spell waits for an RCU grace period to switch
    the lock's readers to their slow path (``rcu_sync``): 6-17 ms here, paid by the first
    tree's setup process as it joins the tree's pids cgroup, while a writer that follows within
    ~10 ms of another waits for nothing. Told ``PRIME`` (the zygote accepted a run), the
    closer moves itself into the cgroup it is already in every ``PRIME_EVERY`` for
    ``PRIME_WINDOW``, so that the grace period is waited for beside the run's start-up, not
    in it (each move is a no-op for the closer and costs ~50 us)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid:
        theirs.close()
        if prime_fd >= 0:
            os.close(prime_fd)
        return ours
    try:
        ours.close()
        for fd in keep_open:
            os.close(fd)
        prime_until = 0.0
        while True:
            timeout = None
            if prime_fd >= 0 and prime_until:
                now = time.monotonic()
                if now < prime_until:
                    with contextlib.suppress(OSError):
                        os.write(prime_fd, b"0")
                    timeout = PRIME_EVERY
                else:
                    prime_until = 0.0
            if timeout is not None and not readable([theirs.fileno()], timeout):
                continue
            msg, anc, _flags, _addr = theirs.recvmsg(
                16, socket.CMSG_LEN(64 * 4), socket.MSG_CMSG_CLOEXEC
            )
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    for i in range(0, len(data) - len(data) % 4, 4):
                        with contextlib.suppress(OSError):
                            os.close(struct.unpack_from("i", data, i)[0])
            if not msg and not anc:
                break
            if msg == PRIME:
                prime_until = time.monotonic() + PRIME_WINDOW
    finally:
        os._exit(0)


def _cgroup_prime_fd() -> int:
    """``cgroup.procs`` of this process's own cgroup, open for writing, or -1 (none ours to
    write): of the v1 pids hierarchy, where the trees' pids cgroups are made, else of the v2
    one. Either primes the lock, which is one for every hierarchy."""
    try:
        mounts = _read("/proc/self/mountinfo").splitlines()
        lines = [line.split(":", 2) for line in _read("/proc/self/cgroup").splitlines()]
        v1 = [(c, p) for h, c, p in lines if h != "0" and "pids" in c.split(",")]
        v2 = [("", p) for h, _c, p in lines if h == "0"]
        for (controllers, path), is_v2 in [*((x, False) for x in v1), *((x, True) for x in v2)]:
            base = _cgroup_mount(mounts, is_v2, controllers)
            if base is None:
                continue
            with contextlib.suppress(OSError):
                procs = os.path.join(base, path.lstrip("/"), "cgroup.procs")
                return os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    except (OSError, ValueError, IndexError):
        pass
    return -1


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise ValueError("the request was cut short")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _join_cgroups(cgroups: list[tuple[str, str]]) -> None:
    """Move this process into the client's cgroups where they differ from the zygote's."""
    if not cgroups:
        return
    mounts = _read("/proc/self/mountinfo").splitlines()
    for hier, path in cgroups:
        controllers = hier.split(":", 1)[1]
        base = _cgroup_mount(mounts, hier.split(":", 1)[0] == "0", controllers)
        if base is None:
            raise OSError(errno.ENOENT, f"no mount of cgroup hierarchy {hier}")
        fd = os.open(os.path.join(base, path.lstrip("/"), "cgroup.procs"), os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _cgroup_mount(mounts: list[str], v2: bool, controllers: str) -> str | None:
    want = set(controllers.split(",")) - {""}
    for line in mounts:
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3]
        if fields[3] != "/":
            continue  # a bind mount of a part of the hierarchy
        if v2 and fstype == "cgroup2":
            return fields[4]
        if not v2 and fstype == "cgroup" and want <= set(options.split(",")):
            return fields[4]
    return None


def _let_kept_go() -> bool:
    """In a run: close the kept image files it inherited (every image's, up to
    ``_MAX_KEPT_FILES``) when its descriptors run short; they only spare it verifications,
    and its own page cache holds copies of those it uses."""
    kept = imagefs.VERIFIED.files
    for fd in kept.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    let_go = bool(kept)
    kept.clear()
    return let_go


def _become(peer: Peer, fds: list[int], umask: int, env: dict[bytes, bytes]) -> None:
    """Take on the client's process state (raises OSError where it cannot)."""
    _join_cgroups(peer.cgroups)
    for res, soft, hard in peer.rlimits:
        resource.setrlimit(res, (soft, hard))
    if os.getpriority(os.PRIO_PROCESS, 0) != peer.nice:
        os.setpriority(os.PRIO_PROCESS, 0, peer.nice)
    os.sched_setaffinity(0, peer.affinity)
    if _read("/proc/self/oom_score_adj").strip() != peer.oom_score_adj:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(peer.oom_score_adj)
    for i in range(3):
        os.dup2(fds[i], i)
    os.fchdir(fds[3])
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    os.umask(umask)
    os.environb.clear()
    os.environb.update(env)
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if peer.sigign & (1 << (sig - 1)):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(
        signal.SIG_SETMASK, {s for s in range(1, signal.NSIG) if peer.sigmask & (1 << (s - 1))}
    )


def _run_command(args: list[bytes]) -> int:
    """Run the ``occlum`` command line as the console script would; its exit code."""
    argv = [os.fsdecode(a) for a in args]
    sys.argv = ["occlum", *argv]
    code = 0
    try:
        # a plain run without click's parsing (3-4 ms in a child, whose every page touched
        # is a copy): the code of the direct path, which gives what the full command line does
        plain = fastrun.plain_run(argv)
        if plain is not None:
            code = fastrun.run_direct(*plain)
        else:
            from occlum.cli.main import main

            main(argv)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # said as the console script says it
        code = internal_error(exc)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    return code & 0xFF


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m occlum.cli.zygote SOCKET READY_FD", file=sys.stderr)
        return 2
    sock_path, ready_fd = argv[0], int(argv[1])
    os.set_inheritable(ready_fd, False)
    os.chdir("/")
    lock_fd = os.open(sock_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.write(ready_fd, wire.STALE_EXIT)  # another zygote is starting or serving
        return 0
    package = wire.package_dir()
    before = fingerprint(package)
    _warm_up()
    after = fingerprint(package)
    if before != after:
        return 1  # the LibOS changed while it was imported: no ready, the client runs directly
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        listener.bind(sock_path)
    finally:
        os.umask(old)
    listener.listen(64)
    kept_r, kept_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        cache_bytes = int(os.environ.get(wire.CACHE_ENV, wire.DEFAULT_CACHE_BYTES))
    except ValueError:
        cache_bytes = wire.DEFAULT_CACHE_BYTES
    try:
        idle = float(os.environ.get(wire.IDLE_ENV, wire.DEFAULT_IDLE))
    except ValueError:
        idle = wire.DEFAULT_IDLE
    closer = _start_closer(
        [lock_fd, listener.fileno(), kept_r.fileno(), kept_w.fileno(), ready_fd],
        _cgroup_prime_fd(),
    )
    zygote = Zygote(
        sock_path=sock_path,
        package=package,
        fingerprint=after,
        startup_env=_startup_env(dict(os.environb)),
        listener=listener,
        lock_fd=lock_fd,
        kept_r=kept_r,
        kept_w=kept_w,
        closer=closer,
        cache_bytes=max(0, cache_bytes),
        idle=idle,
    )
    with open(sock_path + ".pid.tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(sock_path + ".pid.tmp", sock_path + ".pid")
    os.write(ready_fd, b"ready")
    os.close(ready_fd)
    try:
        zygote.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
