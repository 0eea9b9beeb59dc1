"""What a syscall handler returns and how the table describes it: the vocabulary shared by the
serving loop (``kernel/libos.py``) and the handlers (``syscalls/``). It imports nothing of the
LibOS, so that both can import it without a circle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class Proceed:
    """Handler result: let the kernel run the call as made (its arguments are plain values)."""


PROCEED = Proceed()


@dataclass(slots=True)
class Donate:
    """Handler result: install ``host_fd`` into the caller and return its number."""

    host_fd: int
    cloexec: bool


class Deferred:
    """Handler result: no answer now. The handler has registered what the call waits for with
    the serving loop (``kernel/waits.py``: a socket, for ``syscalls/net.py``'s blocking
    ``accept`` and ``recvfrom``), which answers it once the wait is over. ``shown`` is what
    ``--strace`` prints for it."""

    __slots__ = ("shown",)

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def __str__(self) -> str:
        return self.shown


Result = int | Proceed | Donate | Deferred
Handler = Callable[..., Result]


@dataclass(slots=True, frozen=True)
class Entry:
    name: str
    handler: Handler
    kinds: tuple[str, ...]  # how the trace shows each argument; its length is the arity
    level: str  # "full", "partial", "refused"
    note: str = ""
