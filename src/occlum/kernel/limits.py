"""The kernel's side of resource limits: set them up per process tree, and name the
``Occlum.json`` key to raise, with a value, when a program ran into one (see
:mod:`occlum.platform.limits` for how the host kernel enforces them)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from occlum.platform.limits import (
    MemoryCgroup,
    PidsCgroup,
    ProgramLimits,
    limit_process,
    set_oom_score_adj,
)

if TYPE_CHECKING:
    from occlum.kernel.log import Log
    from occlum.kernel.process import Task
    from occlum.kernel.spec import RunSpec

MiB = 1 << 20
NEAR = 0.9  # a peak above this share of the limit is reported


# When a tree starts, its pids cgroup briefly holds the setup process (reaped by the
# supervisor before the first call is served), init and the first program.
STARTUP_TASKS = 3


def _mb(n: int) -> str:
    return f"{-(-n // MiB)}MB"


def _round_up(n: int) -> int:
    """``n`` rounded up to a whole 64 MiB: a size worth writing in Occlum.json."""
    step = 64 * MiB
    return -(-n // step) * step


@dataclass(slots=True)
class Peaks:
    """What ``occlum doctor`` measured over the program's tree: the largest values seen."""

    address_space: int = 0  # VmPeak of the largest process, in bytes
    address_space_by: str = ""  # that process's program
    memory: int = 0  # the programs' memory together, files they wrote included (cgroup peak)
    stack: int = 0  # VmStk (the main thread's stack) of the process with the largest one
    stack_by: str = ""
    # processes and threads alive at once: from the tree's pids cgroup peak when it went past
    # the start-up count, else the largest count seen at the measuring points; 0: no cgroup
    tree_peak: int = 0
    tasks_seen: int = 0
    seen: set[int] = field(default_factory=set)  # host pids that made a served call
    ended: set[int] = field(default_factory=set)  # ... and were measured at their exit_group

    @property
    def tasks(self) -> int:
        if self.tree_peak > STARTUP_TASKS:
            return self.tree_peak - 1  # init is the LibOS's, not the program's
        return max(self.tasks_seen, 1) if self.tree_peak else 0


def _read_status(tid: int) -> bytes | None:
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            return f.read()
    except OSError:
        return None


def _status_field(status: bytes, name: bytes) -> int:
    """A "kB" field of /proc/PID/status, in bytes (0 if absent)."""
    at = status.find(name)
    if at < 0:
        return 0
    return int(status[at + len(name) : status.index(b"\n", at)].split()[0]) * 1024


def _read_int(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


class Limits:
    """The limits of one LibOS instance, applied anew to each process tree it starts."""

    def __init__(self, spec: RunSpec, log: Log) -> None:
        self.log = log
        max_size = int(spec.extra.get("user_space_max_size", "0") or 0)
        self.configured_threads = spec.max_threads
        self.configured_address_space = max(spec.user_space_size, max_size)
        # what is enforced: the configured limits, or `occlum doctor`'s raised ones
        self.threads = max(spec.raised_threads, spec.max_threads)
        self.address_space = max(spec.raised_address_space, self.configured_address_space)
        self.program = ProgramLimits(self.address_space, spec.default_stack_size)
        self.peaks: Peaks | None = Peaks() if spec.diagnose else None
        self.cgroup: PidsCgroup | None = None
        self.memory: MemoryCgroup | None = None
        self.oom_victim = "a program"  # the last the out-of-memory killer chose, when known
        self._trees = 0
        self._reported: set[str] = set()

    def start_tree(self) -> str | None:
        """A pids cgroup for the next process tree: the file its setup process joins."""
        self._trees += 1
        # the tree's init and, for a moment, its setup process count too
        self.cgroup = PidsCgroup.create(f"occlum-{os.getpid()}-{self._trees}", self.threads + 2)
        if self.cgroup is None and "cgroup" not in self._reported:
            self._reported.add("cgroup")
            self.log.info(
                "resource_limits.max_num_of_threads is not enforced: no pids cgroup can be "
                "made here (needs root and the pids controller)"
            )
        self._start_memory()
        return self.cgroup.procs if self.cgroup is not None else None

    def _start_memory(self) -> None:
        """The memory cgroup the next tree's programs join (see ``self.program``)."""
        mem = None
        if self.address_space:
            mem = MemoryCgroup.create(f"occlum-{os.getpid()}-{self._trees}", self.address_space)
            if mem is None and "memory" not in self._reported:
                self._reported.add("memory")
                self.log.info(
                    "resource_limits.user_space_size holds per process only: no memory cgroup "
                    "can be made here (needs root and the memory controller)"
                )
        self.memory = mem
        self.program = dataclasses.replace(
            self.program, memory_procs=mem.procs if mem is not None else ""
        )

    def find_spawner(self, init_pid: int, *, always: bool = False) -> int:
        """The host pid of a started instance's spawner when it is in the programs' memory
        cgroup (so that each program it forks is, from its fork), or ``always``; else 0."""
        if self.memory is None and not always:
            return 0
        children = f"/proc/{init_pid}/task/{init_pid}/children"
        for _ in range(2000):  # init forks it at once
            try:
                with open(children) as f:
                    kids = f.read().split()
            except OSError:
                return 0
            if kids:
                return int(kids[0])
            time.sleep(0.001)
        return 0

    @staticmethod
    def before_spawner(pid: int) -> None:
        """A program the spawner forked: the out-of-memory killer ends it before the spawner,
        whatever their sizes (a program filling a memfd holds little of it mapped). The
        spawner cannot be made exempt instead (oom_score_adj below 0 needs
        CAP_SYS_RESOURCE, which the supervisor may lack); Kubernetes gives its best-effort
        containers the same 1000."""
        set_oom_score_adj(pid, 1000)

    def limit_spawned(self, pid: int) -> None:
        """A program the spawner started, met at its first call (its ``execve``, held until
        this returns): the programs' RLIMIT_AS and RLIMIT_STACK, which a child of
        ``posix_spawn`` cannot set itself (see :mod:`occlum.platform.spawner`). If they cannot
        be set, the program does not run unbounded: it is killed, and the log says why."""
        try:
            limit_process(pid, self.program)
        except ProcessLookupError:
            return
        except OSError as exc:
            self.log.error(
                f"host pid {pid}: cannot set the programs' resource limits on it "
                f"({exc.strerror}): it is killed"
            )
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def memory_used(self) -> int | None:
        """What the programs of the current tree use of user_space_size, or None (no cgroup)."""
        return self.memory.usage() if self.memory is not None else None

    def check_memory(self, killed: bool = False) -> None:
        """Name user_space_size once, if the out-of-memory killer ended a program for it (its
        count says so, or ``killed``: the kernel log's record, which may come before the count
        is raised), and the program, when the kernel's log named it (``oom_victim``)."""
        mem = self.memory
        if mem is None:
            return
        kills = mem.oom_kills()
        if (killed or kills > mem.kills_seen) and "oom" not in self._reported:
            self._reported.add("oom")
            limit = mem.limit
            self.log.error(
                f"{self.oom_victim} was killed (SIGKILL) by the out-of-memory killer: the instance's "
                f"programs used all of resource_limits.user_space_size = {_mb(limit)} of "
                "memory together (the files they wrote, in /tmp or elsewhere, and their memfds "
                f'count too); raise it in Occlum.json (e.g. to "{_mb(2 * limit)}")'
            )
        mem.kills_seen = kills

    def check_threads(self) -> None:
        """Name max_num_of_threads once, if the limit refused a fork or clone."""
        cg = self.cgroup
        if cg is None:
            return
        refused = cg.refused()
        if refused > cg.refused_seen and "threads" not in self._reported:
            self._reported.add("threads")
            self.log.error(
                f"fork/clone failed with EAGAIN ({refused} times): the instance reached "
                f"resource_limits.max_num_of_threads = {self.threads} processes and threads; "
                f"raise it in Occlum.json (to at least {self.threads + refused})"
            )
        cg.refused_seen = refused

    def end_tree(self, *, launched: bool = True) -> None:
        """The tree ended (or, not ``launched``, never started: a refused fork there is the
        host's limit, which the group's pids.events counts too, not the instance's)."""
        if launched:
            self.check_threads()
            self.check_memory()
        if self.memory is not None:
            if self.peaks is not None:  # the last tree's is kept, as for tree_peak
                self.peaks.memory = self.memory.peak()
            self.memory.remove()
            self.memory = None
        if self.peaks is not None and self.cgroup is not None:
            # the last tree's is kept: the program's (an init stage's tree ends before)
            self.peaks.tree_peak = _read_int(f"{self.cgroup.path}/pids.peak")
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def check_address_space(self, t: Task) -> None:
        """At exit_group: name user_space_size once per program that came close to it."""
        limit = self.address_space
        exe = t.process.exe_path.decode(errors="replace")
        if not limit or exe in self._reported or self.peaks is not None:
            return
        status = _read_status(t.tid)
        if status is None:
            return
        peak = _status_field(status, b"VmPeak:")
        if peak < NEAR * limit:
            return
        self._reported.add(exe)
        self.log.error(
            f"{exe} (pid {t.process.pid}) used {_mb(peak)} of address space, near "
            f"resource_limits.user_space_size = {_mb(limit)}: if it ran out of memory "
            f'(ENOMEM), raise user_space_size in Occlum.json (e.g. to "{_mb(2 * limit)}")'
        )

    def check_mapping(self, t: Task, length: int) -> None:
        """Before a large mmap: name user_space_size once per program, if the mapping will not
        fit in the process's address space (RLIMIT_AS) and the kernel is about to refuse it."""
        limit = self.address_space
        exe = t.process.exe_path.decode(errors="replace")
        # under `occlum doctor` the limits are raised, and it names the sizes itself
        if not limit or exe in self._reported or length <= 0 or self.peaks is not None:
            return
        status = _read_status(t.tid)
        if status is None:
            return
        need = _status_field(status, b"VmSize:") + length
        if need <= limit:
            return
        # an error, though a few programs cope (glibc's malloc falls back from a thread arena
        # to its main one): most report it as a failure to start, in words of their own.
        # Once: this also spares the program the note at a failing exit.
        self._reported.add(exe)
        self.log.error(
            f"{exe} (pid {t.process.pid}): an mmap of {_mb(length)} fails (ENOMEM): it "
            f"exceeds resource_limits.user_space_size ({_mb(limit)}) with "
            f"{_mb(need - length)} already mapped; set it to at least "
            f"{_mb(_round_up(need))} in Occlum.json"
        )

    # -- occlum doctor ---------------------------------------------------------------------
    def seen(self, t: Task) -> None:
        """Any served call of the program's tree: its process is one of the tree's."""
        assert self.peaks is not None
        self.peaks.seen.add(t.process.host_pid)

    def measure(self, t: Task, ending: bool) -> None:
        """At execve (the old image's peaks are lost with it) and exit_group: the process's
        peak address space and stack so far, and how many tasks the tree holds now."""
        peaks = self.peaks
        assert peaks is not None
        p = t.process
        peaks.seen.add(p.host_pid)
        if not p.exe_path:  # the first process before its first exec: a fork of the supervisor
            return
        status = _read_status(t.tid)
        if status is None:
            return
        exe = p.exe_path.decode(errors="replace")
        vm_peak = _status_field(status, b"VmPeak:")
        if vm_peak > peaks.address_space:
            peaks.address_space, peaks.address_space_by = vm_peak, exe
        stack = _status_field(status, b"VmStk:")
        if stack > peaks.stack:
            peaks.stack, peaks.stack_by = stack, exe
        if self.cgroup is not None:
            peaks.tasks_seen = max(
                peaks.tasks_seen, _read_int(f"{self.cgroup.path}/pids.current") - 1
            )
        if ending:
            peaks.ended.add(p.host_pid)
