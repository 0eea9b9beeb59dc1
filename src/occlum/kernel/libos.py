"""One LibOS instance: its file systems, its processes and the loop that serves their calls.

Everything runs on one thread. A notification is received, its task found (or discovered: a
new process is known by its first served call), its handler run, and the answer sent; no
handler blocks. Exits of processes arrive as readable pidfds in the same loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import select
import selectors
import signal
import socket
import struct
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable

from occlum.abi.errors import SyscallError, UserError
from occlum.abi.syscalls import NAME
from occlum.fs.procfs import ProcessInfo, ProcFs
from occlum.kernel.api import PROCEED, Donate, Entry, Result
from occlum.kernel.limits import Limits
from occlum.kernel.log import Log
from occlum.kernel.objects import ObjectRegistry
from occlum.kernel.process import CachedProgram, Process, Task
from occlum.kernel.proctable import SIGNAMES, ProcTable
from occlum.kernel.rootfs import FileSystems
from occlum.kernel.shadow import Shadow
from occlum.kernel.spec import RunSpec
from occlum.kernel.strace import format_call, format_result
from occlum.kernel.terminal import open_controlling_terminal
from occlum.platform import launch as launcher
from occlum.platform import native
from occlum.platform.seccomp import Listener
from occlum.platform.stub import build_stub
from occlum.vfs.mount import MountTable

# Fails, with one clear line (UserError), when a program cannot be started: (libos, path,
# which stage's file systems, the image they come from)
ProgramCheck = Callable[["LibOS", bytes, str, "str | None"], None]


class LibOS:
    """``table``: the syscall table (number -> entry), handed in by whoever assembles the LibOS
    (:mod:`occlum.boot`), so that the kernel never imports a handler module; ``check_program``
    says why a program cannot be started before its tree is launched."""

    def __init__(self, spec: RunSpec, table: dict[int, Entry], check_program: ProgramCheck) -> None:
        self.spec = spec
        self.check_program = check_program
        self.log = Log(spec.log_level)
        self.hostname = spec.hostname.encode()
        self.writeback_interval = _writeback_interval()
        self.next_writeback = time.monotonic() + self.writeback_interval
        self.limits = Limits(spec, self.log)
        # `occlum run` holds the terminal's foreground: each first program gets it, and it
        # comes back here when that program's tree ends
        self.foreground = _terminal_foreground()
        self.current: Task | None = None
        self.filesystems = FileSystems(spec, self.log, self._procfs, self.controlling_terminal)
        # the loop's own waits: process exits (pidfds), last closes, crash records, init's report
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.filesystems.close_watch.fd, selectors.EVENT_READ, "closes")
        self.proctable = ProcTable(spec, self.limits, lambda: self.mounts.root(), self.sel)
        self.objects = ObjectRegistry()
        self.objects.namer = self.filesystems.name_pty
        self.objects.live_keys = self.proctable.live_keys
        self.exec_cache: OrderedDict[tuple[int, int], CachedProgram] = OrderedDict()
        self.table = table
        # `occlum run --summary` and `occlum doctor` count the calls served: the handlers are
        # wrapped here, once, so that the serving loop pays nothing when counting is off
        self.stats: CallStats | None = None
        if spec.summary or spec.diagnose:
            from occlum.kernel.stats import CallStats

            self.stats = CallStats()
            self.table = self._counted_table()
        self.warned: set[int] = set()
        self.noted: set[str] = set()  # deviations already reported (warn_once)
        self.eio_reported: set[str] = set()
        self._info_cache: tuple[tuple[int, int], ProcessInfo | None] | None = None
        self.stub = build_stub()
        self.shadow = Shadow()  # the names the host kernel resolves: execve paths, FIFOs, sockets
        self.first_status: int | None = None
        self.tree_live = False  # a process tree was launched and not yet ended
        # the boot: "init" while the initfs's init runs (it mounts the root with mount_rootfs),
        # then "app"
        self.stage = "init" if spec.init_image is not None or spec.init_hash is not None else "app"

    # -- file systems (kernel/rootfs.py) ------------------------------------------------------
    @property
    def mounts(self) -> MountTable:
        """The mount table the instance's processes see."""
        return self.filesystems.mounts

    def controlling_terminal(self, flags: int) -> int:
        """``/dev/tty`` of the calling program: a new open of its controlling terminal."""
        if self.current is None:
            raise SyscallError(errno.ENXIO, "no caller")
        return open_controlling_terminal(
            self.current.process.host_pid, flags, self.filesystems.devpts
        )

    def _procfs(self, table: MountTable) -> ProcFs:
        from occlum.kernel import procinfo

        return ProcFs(
            self,
            mounts=table.mounts,
            hostname=lambda: self.hostname,
            net_view=procinfo.net_view(self),
        )

    def _write_back(self) -> None:
        """Periodic write-back: commit the protected file systems every few seconds of activity,
        so that a crash loses at most that much of what was not fsync'd. It runs between served
        calls (the supervisor has no other thread); a volume with no change costs little."""
        self.filesystems.sync()
        self.limits.check_threads()
        self.proctable.report_faults()
        self.limits.check_memory()
        self.next_writeback = time.monotonic() + self.writeback_interval

    # -- the process registry procfs reads --------------------------------------------------
    def current_pid(self) -> int:
        return self.current.process.pid if self.current else 1

    def pids(self) -> list[int]:
        self._poll_events(0)  # exits not yet handled (the loop polls only every few calls)
        self.proctable.settle_all()
        return sorted(self.proctable.by_pid)

    def info(self, pid: int) -> ProcessInfo | None:
        # one path walk through /proc asks several times; a snapshot serves the whole call
        key = (pid, self.current.notif_id if self.current else -1)
        cached = self._info_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        found = self._info(pid)
        self._info_cache = (key, found)
        return found

    def _info(self, pid: int) -> ProcessInfo | None:
        self._poll_events(0)
        p = self.proctable.by_pid.get(pid)
        if p is None:
            self.proctable.settle_all()  # a child forked natively that has not called the LibOS yet
            p = self.proctable.by_pid.get(pid)
            if p is None:
                return None
        from occlum.kernel.procinfo import process_info

        return process_info(self, p)

    # -- running --------------------------------------------------------------------------
    def run(self) -> int:
        """Boot: the init stage first (when the instance has an initfs), then the program."""
        spec = self.spec
        env = [f"{k}={v}".encode() for k, v in spec.env]
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self._forward_signal)
        try:
            if self.stage == "init":
                self._run_init(env)
            argv = [a.encode() for a in spec.argv]
            self.check_program(self, argv[0], "the instance", None)
            self._run_tree(argv, env)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self._shutdown()
        return self._exit_code()

    def _run_init(self, env: list[bytes]) -> None:
        """Run the initfs's init until it exits; it must have mounted the root (mount_rootfs)
        and exited with status 0. Then the root it mounted replaces the initfs."""
        argv = [a.encode() for a in self.spec.init_argv]
        self.check_program(self, argv[0], "the initfs", self.spec.init_image)
        self._run_tree(argv, env)
        status = self.first_status if self.first_status is not None else 127 << 8
        self._end_tree()
        fsys = self.filesystems
        pending, fsys.root_pending = fsys.root_pending, None
        init = self.spec.init_argv[0]
        if fsys.boot_error is not None:
            raise UserError(f"cannot mount the root file system: {fsys.boot_error}")
        if os.WIFSIGNALED(status):
            why = f"was killed by {SIGNAMES.get(os.WTERMSIG(status), os.WTERMSIG(status))}"
        else:
            why = f"exited with status {os.WEXITSTATUS(status)}"
        if pending is None:
            raise UserError(f"init ({init}) {why} without mounting the root file system")
        if status != 0:
            raise UserError(f"init ({init}) mounted the root file system but {why}")
        fsys.mounts = pending
        self.stage = "app"
        self.exec_cache.clear()  # the initfs's programs are gone with it

    def serve(self, started: Callable[[int, socket.socket], None]) -> int:
        """A started instance (``occlum start``): the init stage, then a tree whose first
        process is the spawner, which runs the programs asked for on its channel (see
        :mod:`occlum.platform.spawner`) until the channel closes. ``started`` is called with
        the host pid of the tree's init and the channel once the spawner runs."""
        env = [f"{k}={v}".encode() for k, v in self.spec.env]
        self.foreground = False
        self.log.echo = self._echo_to_caller
        try:
            if self.stage == "init":
                self._run_init(env)
            self._run_tree([b"/"], env, started=started)
        finally:
            self._shutdown()
        return self._exit_code()

    def _echo_to_caller(self, line: bytes) -> None:
        """A started instance's log line about the calling program goes to its stderr too (the
        `occlum exec` caller's), when that takes the line without blocking the supervisor."""
        t = self.current
        if t is None or t.process.pidfd < 0:
            return
        try:
            fd = native.pidfd_getfd(t.process.pidfd, 2)
        except OSError:
            return  # no stderr, or the process is gone
        try:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if poller.poll(0):  # room for PIPE_BUF bytes: a write of that much never waits
                os.write(fd, line[: select.PIPE_BUF])
        except OSError:
            pass
        finally:
            os.close(fd)

    def _run_tree(
        self,
        argv: list[bytes],
        env: list[bytes],
        *,
        started: Callable[[int, socket.socket], None] | None = None,
    ) -> None:
        """Start a process tree whose first program is ``argv`` (or the spawner) and serve it
        until it ends."""
        self.first_status = None
        procs = self.proctable
        procs.first_host_pid = 0
        procs.spawner_pid = 0  # a started instance's spawner, when it is in the memory cgroup
        cgroup_procs = self.limits.start_tree()  # first: it sets limits.program for the tree
        try:
            launched = launcher.launch(
                self.stub,
                argv[0],
                argv,
                env,
                hostname=self.hostname,
                network=self.spec.network,
                cgroup_procs=cgroup_procs,
                limits=self.limits.program,
                foreground=self.foreground,
                spawner=started is not None,
                every_exit=self.spec.diagnose,
            )
        except launcher.LaunchError as exc:  # e.g. fork's EAGAIN: the host's process limit
            self.limits.end_tree(launched=False)
            raise UserError(str(exc))
        procs.init_pid = launched.init_pid
        _raise_fd_limit()  # after the fork: the programs keep the limits they were given
        self.shadow.attach(launched.shadow_root_fd)
        self.filesystems.devpts.attach(launched.devpts_fd)
        os.mkdir(".handles", 0o700, dir_fd=self.shadow.fd)
        self.objects.scratch_fd = os.open(
            ".handles", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.shadow.fd
        )
        self.listener = Listener(launched.listener_fd)
        self.control = launched.control
        self.tree_live = True
        self.sel.register(self.control, selectors.EVENT_READ, "control")
        faults = procs.faults
        if faults.fd >= 0 and faults.fd not in self.sel.get_map():
            self.sel.register(faults.fd, selectors.EVENT_READ, "faults")
        if started is not None and launched.spawner is not None:
            procs.spawner_pid = self.limits.find_spawner(procs.init_pid)
            started(procs.init_pid, launched.spawner)
        self._loop()

    def _forward_signal(self, signum: int, _frame: object) -> None:
        try:
            os.kill(self.proctable.init_pid, signum)
        except ProcessLookupError:
            pass

    def _loop(self) -> None:
        """Serve until every process of the instance is gone.

        The loop blocks in NOTIF_RECV itself, not in epoll: with the sync-wake-up flag the
        kernel then wakes the supervisor on the caller's CPU (12 µs against 17 µs a round trip
        on our machines). Process exits, crash records and init's report are picked up without
        blocking every few calls, and once more at the end.
        """
        served = 0
        while True:
            if not self._serve_one():
                if self._listener_hung_up():
                    break
                continue
            served += 1
            if not served & 7:
                self._poll_events(0)
                if time.monotonic() >= self.next_writeback:
                    self._write_back()
        # init reports how the first program ended just before the namespace goes away
        self._poll_events(0)
        while self.first_status is None and self._poll_events(5.0):
            pass
        self.proctable.report_faults()  # whatever the readiness said: the records are all written

    def _listener_hung_up(self) -> bool:
        """True once no process of the instance is left to make a call."""
        poller = select.poll()
        poller.register(self.listener.fd, select.POLLIN)
        return any(ev & (select.POLLHUP | select.POLLERR) for _fd, ev in poller.poll(0))

    def _poll_events(self, timeout: float) -> bool:
        """Handle what is ready among exits, crash records and init's report; False if none."""
        ready = self.sel.select(timeout)
        for key, _ in ready:
            what = key.data
            if what == "faults":
                self.proctable.report_faults()
            elif what == "closes":
                self.filesystems.last_closes()
            elif what == "control":
                self._control_message()
            else:
                assert isinstance(what, Process)
                self.proctable.process_exited(what)
        return bool(ready)

    def _control_message(self) -> None:
        try:
            msg = self.control.recv(64)
        except OSError:
            msg = b""
        if msg.startswith(b"S"):
            self.first_status = struct.unpack("<i", msg[1:5])[0]
        elif not msg:
            self.sel.unregister(self.control)
            if self.first_status is None:
                self.first_status = 127 << 8

    def _exit_code(self) -> int:
        status = self.first_status if self.first_status is not None else (127 << 8)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig not in (
                signal.SIGINT,
                signal.SIGTERM,
                signal.SIGPIPE,
                signal.SIGKILL,
                signal.SIGHUP,
            ):
                self.proctable.report_first_crash(sig)
            return 128 + sig
        return os.WEXITSTATUS(status)

    def _end_tree(self) -> None:
        """Kill what is left of the current process tree and forget its processes."""
        if self.proctable.init_pid:
            try:
                os.kill(self.proctable.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.proctable.init_pid, 0)
            except ChildProcessError:
                pass
            self.proctable.init_pid = 0
            if self.foreground:
                _take_terminal_back()
        self.limits.end_tree()
        self.proctable.forget_all()
        if self.tree_live:
            self.tree_live = False
            with contextlib.suppress(KeyError):
                self.sel.unregister(self.control)
            self.control.close()
            self.listener.close()
        for fd in (self.objects.scratch_fd, self.shadow.fd):
            if fd >= 0:
                os.close(fd)
        self.objects.scratch_fd = -1
        self.shadow.attach(-1)
        self.objects.close()  # the tree's processes are gone, and every object with them
        self.filesystems.devpts.attach(-1)

    def _shutdown(self) -> None:
        self._end_tree()
        self.filesystems.close()

    # -- serving ---------------------------------------------------------------------------
    def _serve_one(self) -> bool:
        try:
            nid, tid, nr, _ip, args = self.listener.receive()
        except OSError:
            # ENOENT: the caller died meanwhile, or every process is gone (the loop tells
            # which); EINTR: a signal for the supervisor
            return False
        t = self.proctable.tasks.get(tid)
        if t is None:
            t = self.proctable.discover(tid)
            if t is None:
                self.listener.respond(nid, 0, -errno.ESRCH)
                return True
        t.notif_id = nid
        t.nr = nr
        self.current = t
        entry = self.table.get(nr)
        tracing = self.log.trace_on
        if tracing:  # decoded before the call: an exec replaces the memory it reads
            call = format_call(t, self._name(nr), entry.kinds if entry else (), args)
        why = ""
        try:
            if entry is None:
                res: Result = self.missing(t, nr)
            else:
                res = entry.handler(self, t, *args[: len(entry.kinds)])
        except SyscallError as exc:
            res = -exc.errno
            why = exc.why
            if exc.errno == errno.EIO and why and why not in self.eio_reported:
                # integrity failures are news for the user, not only for the program
                self.eio_reported.add(why)
                self.log.error(
                    f"{self._name(nr)} by {t.process.exe_path.decode(errors='replace')}: {why}"
                )
        except OSError as exc:  # a host operation of the supervisor failed (EMFILE, ENOMEM, ...)
            res = -(exc.errno or errno.EIO)
            why = f"host: {exc.strerror}"
        except Exception as exc:  # a LibOS bug: the program gets EIO, the instance lives on
            res = -errno.EIO
            why = "internal error"
            self._internal_error(t, nr, exc)
        if type(res) is int:
            if res < 0:
                self.listener.respond(nid, 0, res)
            else:
                self.listener.respond(nid, res)
        elif isinstance(res, Donate):
            host_fd = res.host_fd
            try:
                res = self.listener.add_fd(nid, host_fd, res.cloexec, send=True)
            except OSError as exc:
                # EMFILE (RLIMIT_NOFILE) and the like: the call fails, unanswered otherwise
                res = -(exc.errno or errno.EMFILE)
                self.listener.respond(nid, 0, res)
            finally:
                os.close(host_fd)
        elif res is PROCEED:
            self.listener.proceed(nid)
        if tracing:
            shown = "(continues in the host kernel)" if res is PROCEED else format_result(res, why)
            self.log.trace(f"[{t.process.pid}] {call} = {shown}")
        self.current = None
        return True

    def _internal_error(self, t: Task, nr: int, exc: Exception) -> None:
        self.log.error(
            f"internal error serving {self._name(nr)} for "
            f"{t.process.exe_path.decode(errors='replace')} (pid {t.process.pid}): {exc!r}; "
            "the call fails with EIO"
        )
        if self.log.level >= 4:
            self.log.debug("".join(traceback.format_exception(exc)))

    def _name(self, nr: int) -> str:
        entry = self.table.get(nr)
        return entry.name if entry is not None else NAME.get(nr, f"syscall_{nr}")

    def missing(self, t: Task, nr: int) -> int:
        stats = self.stats
        start = time.perf_counter_ns() if stats is not None else 0
        if nr not in self.warned:
            self.warned.add(nr)
            self.log.warn(
                f"{self._name(nr)} is not supported by the LibOS (ENOSYS), called by "
                f"{t.process.exe_path.decode(errors='replace')} (pid {t.process.pid})"
            )
        if stats is not None and self.stage == "app":
            stats.unserved(nr, self._name(nr), time.perf_counter_ns() - start)
        return -errno.ENOSYS

    def warn_once(self, key: str, msg: str) -> None:
        """Report a deviation from Linux the first time it happens."""
        if key not in self.noted:
            self.noted.add(key)
            self.log.warn(msg)

    # -- counting (occlum run --summary, occlum doctor) --------------------------------------
    def _counted_table(self) -> dict[int, Entry]:
        """The table with handlers that count into ``self.stats``; for ``occlum doctor`` they
        also note each calling process, and measure its peaks at execve and exit_group."""
        stats, limits = self.stats, self.limits
        assert stats is not None
        if limits.peaks is None:
            return stats.instrument(self.table)
        at_exec: Callable[[Task], None] = lambda t: limits.measure(t, ending=False)  # noqa: E731
        at_exit: Callable[[Task], None] = lambda t: limits.measure(t, ending=True)  # noqa: E731
        hooks = {"execve": at_exec, "execveat": at_exec, "exit_group": at_exit}
        return stats.instrument(self.table, hooks, every=limits.seen)


def _terminal_foreground() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _take_terminal_back() -> None:
    """Make our process group the terminal's foreground again (we are in the background)."""
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(0, os.getpgrp())
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def _writeback_interval() -> float:
    """Seconds between write-backs: $OCCLUM_WRITEBACK_SECONDS, default 5."""
    try:
        return max(0.1, float(os.environ.get("OCCLUM_WRITEBACK_SECONDS", "5")))
    except ValueError:
        return 5.0


def _raise_fd_limit() -> None:
    """The supervisor holds descriptors for many programs (caches, handles, pidfds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
