"""Counts of the calls the LibOS served for a program's tree (``occlum run --summary``,
``occlum doctor``).

Counting costs the serving loop nothing when it is off: an instance made with counting on
wraps each handler of its table once, at start, and the loop runs the same code either way.
Only calls that reach the LibOS are seen; native calls (``read``, ``write``, ``mmap``,
``futex``, ... on what the program holds) run in the host kernel and are never counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from occlum.kernel.api import Entry, Handler, Result
    from occlum.kernel.process import Task


class Staged(Protocol):
    """What counting needs of the LibOS (``kernel/libos.py``, which makes the counts): whether
    the program's tree runs yet (calls of the init stage are not the program's)."""

    @property
    def stage(self) -> str: ...


UNSUPPORTED = "unsupported"  # the support level of a call the table does not have: ENOSYS
Hook = Callable[["Task"], None]


@dataclass(slots=True)
class CallCount:
    """One system call: how often the tree made it, how often it failed, and the time the
    LibOS spent in its handler (the kernel's round trip is not included)."""

    name: str
    level: str  # "full", "partial", "refused" (the table's), or "unsupported"
    note: str
    calls: int = 0
    errors: int = 0
    ns: int = 0

    @property
    def mean_ns(self) -> int:
        return self.ns // self.calls if self.calls else 0


class CallStats:
    """The counts of one LibOS instance, by system call number. Calls made during the init
    stage (the initfs's init mounting the root) are not the program's and are left out."""

    def __init__(self) -> None:
        self.rows: dict[int, CallCount] = {}

    def instrument(
        self,
        table: Mapping[int, Entry],
        hooks: Mapping[str, Hook] | None = None,
        every: Hook | None = None,
    ) -> dict[int, Entry]:
        """A copy of ``table`` whose handlers count into this object. ``hooks`` (by call
        name) or else ``every`` run before the handler, outside the time measured."""
        counted: dict[int, Entry] = {}
        for nr, entry in table.items():
            row = self.rows[nr] = CallCount(entry.name, entry.level, entry.note)
            hook = (hooks or {}).get(entry.name, every)
            counted[nr] = dataclasses.replace(entry, handler=_counting(entry.handler, row, hook))
        return counted

    def unserved(self, nr: int, name: str, ns: int) -> None:
        """A call the table does not have was answered ENOSYS."""
        row = self.rows.get(nr)
        if row is None:
            row = self.rows[nr] = CallCount(
                name, UNSUPPORTED, "not implemented by the LibOS: the call fails with ENOSYS"
            )
        row.calls += 1
        row.errors += 1
        row.ns += ns

    def made(self) -> list[CallCount]:
        """The calls the program made, the most time-consuming first."""
        return sorted(
            (r for r in self.rows.values() if r.calls), key=lambda r: (-r.ns, -r.calls, r.name)
        )


def _counting(handler: Handler, row: CallCount, hook: Hook | None) -> Handler:
    def counted(libos: Staged, t: Task, *args: int) -> Result:
        if libos.stage != "app":
            return handler(libos, t, *args)
        if hook is not None:
            hook(t)
        start = perf_counter_ns()
        try:
            res = handler(libos, t, *args)
        except BaseException:  # SyscallError, a host error or a LibOS bug: the call failed
            row.ns += perf_counter_ns() - start
            row.calls += 1
            row.errors += 1
            raise
        row.ns += perf_counter_ns() - start
        row.calls += 1
        if type(res) is int and res < 0:
            row.errors += 1
        return res

    return counted
