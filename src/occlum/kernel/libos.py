"""One LibOS instance: its file systems, its processes and the loop that serves their calls.

Everything runs on one thread. A notification is received, its task found (or discovered: a
new process is known by its first served call), its handler run, and the answer sent; no
handler blocks. Exits of processes arrive as readable pidfds in the same loop; calls that
wait for a commit are answered by it when the commit is durable (``kernel/commits.py``).
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import struct
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable

from occlum.abi.errors import SyscallError
from occlum.abi.syscalls import NAME
from occlum.fs.procfs import ProcessInfo, ProcFs
from occlum.kernel import procinfo
from occlum.kernel.api import PROCEED, Donate, Entry, Result
from occlum.kernel.collector import Collector
from occlum.kernel.commits import Commits, writeback_interval
from occlum.kernel.limits import Limits
from occlum.kernel.log import Log
from occlum.kernel.objects import ObjectRegistry
from occlum.kernel.process import CachedProgram, Process, Task
from occlum.kernel.proctable import ProcTable
from occlum.kernel.rootfs import FileSystems
from occlum.kernel.shadow import Shadow
from occlum.kernel.spec import RunSpec
from occlum.kernel.strace import format_call, format_result
from occlum.kernel.terminal import open_controlling_terminal, terminal_foreground
from occlum.platform.seccomp import Listener
from occlum.platform.stub import build_stub
from occlum.vfs.mount import MountTable

# Fails, with one clear line (UserError), when a program cannot be started: (libos, path,
# which stage's file systems, the image they come from)
ProgramCheck = Callable[["LibOS", bytes, str, "str | None"], None]


class LibOS:
    """``table``: the syscall table (number -> entry), handed in by whoever assembles the LibOS
    (:mod:`occlum.boot`), so that the kernel never imports a handler module; ``check_program``
    says why a program cannot be started before its tree is launched; ``filter_program``: the
    seccomp filter (classic BPF) made from the same table, for every process tree."""

    def __init__(
        self,
        spec: RunSpec,
        table: dict[int, Entry],
        check_program: ProgramCheck,
        filter_program: bytes,
    ) -> None:
        self.spec = spec
        self.check_program = check_program
        self.log = Log(spec.log_level)
        self.hostname = spec.hostname.encode()
        self.writeback_interval = writeback_interval()
        self.next_writeback = time.monotonic() + self.writeback_interval
        self.limits = Limits(spec, self.log)
        # `occlum run` holds the terminal's foreground: each first program gets it, and it
        # comes back here when that program's tree ends
        self.foreground = terminal_foreground()
        self.current: Task | None = None
        self.filesystems = FileSystems(spec, self.log, self._procfs, self.controlling_terminal)
        # the loop's own waits: process exits (pidfds), last closes, crash records, init's report
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.filesystems.close_watch.fd, selectors.EVENT_READ, "closes")
        self.proctable = ProcTable(spec, self.limits, lambda: self.mounts.root(), self.sel)
        self.proctable.warn = self.warn_once
        # calls answered once their socket is ready (a blocking accept or recvfrom), also here
        # commits of the protected volumes, made in slices between served calls
        self.commits = Commits(self.answer, self.filesystems.written_back)
        # full collections in bounded steps between calls (kernel/collector.py; started by
        # kernel/stages.py once the file systems are mounted)
        self.collector = Collector()
        self.objects = ObjectRegistry()
        self.objects.namer = self.filesystems.name_pty
        self.objects.live_keys = self.proctable.live_keys
        self.exec_cache: OrderedDict[tuple[int, int], CachedProgram] = OrderedDict()
        self.table = table
        self.filter_program = filter_program
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
        self.exit_committed = True  # the exit-time commit stored everything
        self.tree_live = False  # a process tree was launched and not yet ended
        # the current tree's (set when it is launched): its calls, its init's report
        self.listener: Listener
        self.control: socket.socket
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
        return ProcFs(
            self,
            mounts=table.mounts,
            hostname=lambda: self.hostname,
            net_view=procinfo.net_view(self),
        )

    def _write_back(self) -> None:
        """Periodic write-back: commit the protected file systems every few seconds of activity,
        so that a crash loses at most that much of what was not fsync'd. It runs between served
        calls, in slices (``kernel/commits.py``); a volume with no change costs little."""
        for fs in self.filesystems.persistent():
            self.commits.background(fs)
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
        p = self.proctable.find(pid)
        if p is None:
            return None
        return procinfo.process_info(self, p)

    # -- serving (kernel/stages.py runs the stages: init, the program's tree, the exit) ------
    def loop(self) -> None:
        """Serve until every process of the instance is gone.

        The loop blocks in NOTIF_RECV itself, not in epoll: with the sync-wake-up flag the
        kernel then wakes the supervisor on the caller's CPU (12 µs against 17 µs a round trip
        on our machines). Process exits, crash records and init's report are picked up without
        blocking every few calls, and once more at the end. While a commit is under way, the
        loop makes a slice of it between calls (``_commit_turn``). The garbage collector's full
        collections are steps made here too (``kernel/collector.py``).
        """
        served = 0
        while True:
            if self.commits.active and not self._commit_turn():
                continue
            if not self._serve_one():
                if self._listener_hung_up():
                    break
                continue
            served += 1
            if not served & 7:
                self._poll_events(0)
                if self.collector.due():
                    self.collector.step()
                if time.monotonic() >= self.next_writeback:
                    self._write_back()
        # init reports how the first program ended just before the namespace goes away
        self._poll_events(0)
        while self.first_status is None and self._poll_events(5.0):
            pass
        self.proctable.report_faults()  # whatever the readiness said: the records are all written
        self.commits.finish()  # nobody is left to wait for them

    def _commit_turn(self) -> bool:
        """One slice of the commits under way, and what else is ready; True if a call is
        there to receive (or every process is gone). A commit thus never holds up a call for
        more than a slice (``kernel/commits.py``), and uses the time no call needs."""
        self.commits.step()
        if self.collector.due():  # a long commit makes garbage while no call is served
            self.collector.step()
        self._poll_events(0)
        poller = select.poll()
        poller.register(self.listener.fd, select.POLLIN)
        return bool(poller.poll(0))

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
                self.filesystems.last_closes(self.commits.written_after_close)
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
                call_args = args[: len(entry.kinds)]
                if entry.steps:  # decoded by kind: C ints, flag sets (EINVAL for a bit refused)
                    call_args = entry.decode(call_args)
                res = entry.handler(self, t, *call_args)
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
        res = self.answer(nid, res)
        if tracing:
            shown = "(continues in the host kernel)" if res is PROCEED else format_result(res, why)
            self.log.trace(f"[{t.process.pid}] {call} = {shown}")
        self.current = None
        return True

    def answer(self, nid: int, res: Result) -> Result:
        """Answer notification ``nid`` with a handler's result; what the program got (the
        descriptor's number for a Donate). The answer path of every served call, also of one
        answered once its commit is durable (``kernel/commits.py``)."""
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
        # else Deferred: answered when its commit is durable (kernel/commits.py)
        return res

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
