"""Python's cyclic garbage collector in the supervisor: no collection walks the whole heap while
a call waits.

CPython collects in three generations.  A young collection walks only the objects made since
the last ones (bounded by its thresholds: a few thousand objects, a few milliseconds); a *full*
collection walks every object the collector tracks, wherever an allocation happens to trigger
it, in the middle of any served call.  The supervisor's heap grows with what it serves (a SEFS
volume keeps about six objects a file: 600 000 at 100 000 files), so a full collection stopped
the serving loop for 264-400 ms at 100 000 files (92-127 ms at 20 000), every process of the
instance waiting.

So, in the supervisor (:class:`Collector`, started by ``kernel/stages.py``):

- What the boot made (modules, the syscall table, the mounted file systems: alive until the
  instance ends) is collected once and then *frozen* (``gc.freeze``): no later collection walks
  it.  Again once the init stage has mounted the root.
- The oldest generation is never collected automatically; young collections stay automatic.
- Every :data:`STEP_EVERY` young collections of the middle generation, the loop makes a *step*
  between two calls (:meth:`Collector.step`): a full collection, which walks only what is not
  frozen, i.e. what survived since the last step (bounded by the allocations in between, not by
  the heap), and then freezes what survived it.

What a step freezes is never walked again, so a reference cycle that was alive at a step and
dies later is not reclaimed (its objects stay allocated; an object that is not part of a cycle
is freed by its reference count, frozen or not).  The LibOS's long-lived objects that die
(inodes of deleted files, descriptors, processes) are freed that way; docs/internals.md ("The
serving loop") gives the memory measured over long runs that make garbage.
"""

from __future__ import annotations

import gc
import time

__all__ = ["STEP_EVERY", "THRESHOLDS", "Collector"]

# The young generations' thresholds are CPython's own (700 allocations, 10 young collections);
# the oldest generation's is out of reach, so that only a step collects it.
THRESHOLDS = (700, 10, 1 << 30)
# Young collections of the middle generation between two steps: each promotes about 7 000
# objects (700 x 10, net of those freed), so a step walks some 30 000 (measured on a loaded
# machine: 8-16 ms at 20 000 files, 32-79 ms at 100 000, where a commit's slices keep more
# alive; with 10 young collections a step took 30-45 ms at 20 000 files).
STEP_EVERY = 4


class Collector:
    """The collector's settings while the supervisor serves, and its steps."""

    __slots__ = ("_began", "base", "longest", "longest_young", "planned", "saved", "steps")

    def __init__(self) -> None:
        self.saved: tuple[int, int, int] | None = None  # the thresholds before start()
        self.steps = 0
        self.longest = 0.0  # seconds, the longest step
        self.base = 0  # full collections made before start()
        self.planned = 0  # full collections made here since (settle() and steps)
        self.longest_young = 0.0  # seconds, the longest automatic young collection
        self._began = 0.0

    def start(self) -> None:
        """Serving begins: what exists now lives as long as the instance (frozen), and the
        oldest generation is collected only by steps."""
        if self.saved is None:
            self.saved = gc.get_threshold()
            gc.set_threshold(*THRESHOLDS)
            self.base = _full_collections()
            gc.callbacks.append(self._timed)
        self.settle()

    def _timed(self, phase: str, info: dict[str, int]) -> None:
        """Times the young collections (the steps are timed in step())."""
        if phase == "start":
            self._began = time.perf_counter()
        elif info["generation"] < 2:
            took = time.perf_counter() - self._began
            if took > self.longest_young:
                self.longest_young = took

    def settle(self) -> None:
        """Collect everything not frozen and freeze what survives: after the boot, after the
        init stage mounted the root (a full walk, once, before any program of the stage)."""
        gc.collect()
        gc.freeze()
        self.planned += 1

    def due(self) -> bool:
        """Whether a step is owed (cheap: the loop asks every few calls)."""
        return gc.get_count()[2] >= STEP_EVERY

    def step(self) -> None:
        """A full collection of what is not frozen, then freeze what survived it."""
        start = time.perf_counter()
        gc.collect(2)
        gc.freeze()
        took = time.perf_counter() - start
        self.steps += 1
        self.planned += 1
        if took > self.longest:
            self.longest = took

    def stop(self) -> None:
        """Serving ended: the collector's thresholds as they were (frozen objects stay frozen:
        the supervisor exits; unfreezing would only make the next collection walk them)."""
        if self.saved is not None:
            gc.set_threshold(*self.saved)
            gc.callbacks.remove(self._timed)
            self.saved = None

    def summary(self) -> str:
        """For the debug log: the steps made, full collections made elsewhere (by an
        allocation, or a ``gc.collect`` of someone else: none is expected), the longest step
        and young collection, what is frozen, the supervisor's memory."""
        unplanned = _full_collections() - self.base - self.planned
        memory = ""
        try:
            with open("/proc/self/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith("Vm"))
            memory = f"; supervisor RSS {fields['VmRSS'].strip()}, peak {fields['VmHWM'].strip()}"
        except (OSError, KeyError):
            pass
        return (
            f"collector: {self.steps} steps, {unplanned} unplanned full collections, "
            f"longest {self.longest * 1e3:.1f} ms (young collections: "
            f"{self.longest_young * 1e3:.1f} ms), "
            f"{gc.get_freeze_count()} objects frozen{memory}"
        )


def _full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])
