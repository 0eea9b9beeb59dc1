"""What a syscall handler returns and how the table describes it: the vocabulary shared by the
serving loop (``kernel/libos.py``) and the handlers (``syscalls/``). It imports nothing of the
LibOS, so that both can import it without a circle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class Proceed:
    """Handler result: let the kernel run the call as made (its arguments are plain values)."""


PROCEED = Proceed()


@dataclass(slots=True)
class Donate:
    """Handler result: install ``host_fd`` into the caller and return its number."""

    host_fd: int
    cloexec: bool


class Deferred:
    """Handler result: no answer now. The serving loop sends nothing; whoever deferred the call
    answers its notification later (``syscalls/net.py``'s waiters, when a socket is ready).
    ``shown`` is what ``--strace`` prints for it."""

    __slots__ = ("shown",)

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def __str__(self) -> str:
        return self.shown


Result = int | Proceed | Donate | Deferred
Handler = Callable[..., Result]


# Argument kinds the serving loop decodes before a handler sees them: a descriptor is a C int,
# of which Linux reads the low 32 bits, sign included (AT_FDCWD is -100, whatever the upper
# half of the register holds). Every other kind reaches the handler as the register's value.
SIGNED32_KINDS = frozenset({"fd", "dirfd"})


@dataclass(slots=True, frozen=True)
class Entry:
    name: str
    handler: Handler
    kinds: tuple[str, ...]  # each argument's kind, for the decoding and the trace; the arity
    level: str  # "full", "partial", "refused"
    note: str = ""
    # the positions of the arguments decoded as signed 32-bit values (SIGNED32_KINDS)
    signed: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        signed = tuple(i for i, kind in enumerate(self.kinds) if kind in SIGNED32_KINDS)
        object.__setattr__(self, "signed", signed)

    def decode(self, args: Sequence[int]) -> tuple[int, ...]:
        """The handler's arguments from the call's registers, by kind (``args`` is as long as
        ``kinds``)."""
        out = list(args)
        for i in self.signed:
            v = out[i] & 0xFFFFFFFF
            out[i] = v - (1 << 32) if v & 0x80000000 else v
        return tuple(out)
