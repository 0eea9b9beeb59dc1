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


Result = int | Proceed | Donate
Handler = Callable[..., Result]


@dataclass(slots=True, frozen=True)
class Entry:
    name: str
    handler: Handler
    kinds: tuple[str, ...]  # how the trace shows each argument; its length is the arity
    level: str  # "full", "partial", "refused"
    note: str = ""
