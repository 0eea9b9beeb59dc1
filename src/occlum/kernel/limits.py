"""The kernel's side of resource limits: set them up per process tree, and name the
``Occlum.json`` key to raise, with a value, when a program ran into one (see
:mod:`occlum.platform.limits` for how the host kernel enforces them)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from occlum.platform.limits import PidsCgroup, ProgramLimits

if TYPE_CHECKING:
    from occlum.kernel.log import Log
    from occlum.kernel.process import Task
    from occlum.kernel.spec import RunSpec

MiB = 1 << 20
NEAR = 0.9  # a peak above this share of the limit is reported


def _mb(n: int) -> str:
    return f"{-(-n // MiB)}MB"


class Limits:
    """The limits of one LibOS instance, applied anew to each process tree it starts."""

    def __init__(self, spec: RunSpec, log: Log) -> None:
        self.log = log
        self.threads = spec.max_threads
        max_size = int(spec.extra.get("user_space_max_size", "0") or 0)
        self.address_space = max(spec.user_space_size, max_size)
        self.program = ProgramLimits(self.address_space, spec.default_stack_size)
        self.cgroup: PidsCgroup | None = None
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
        return self.cgroup.procs if self.cgroup is not None else None

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

    def end_tree(self) -> None:
        self.check_threads()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def check_address_space(self, t: Task) -> None:
        """At exit_group: name user_space_size once per program that came close to it."""
        limit = self.address_space
        exe = t.process.exe_path.decode(errors="replace")
        if not limit or exe in self._reported:
            return
        try:
            with open(f"/proc/{t.tid}/status", "rb") as f:
                status = f.read()
        except OSError:
            return
        at = status.find(b"VmPeak:")
        if at < 0:
            return
        peak = int(status[at + 7 : status.index(b"\n", at)].split()[0]) * 1024
        if peak < NEAR * limit:
            return
        self._reported.add(exe)
        self.log.error(
            f"{exe} (pid {t.process.pid}) used {_mb(peak)} of address space, near "
            f"resource_limits.user_space_size = {_mb(limit)}: if it ran out of memory "
            f'(ENOMEM), raise user_space_size in Occlum.json (e.g. to "{_mb(2 * limit)}")'
        )
