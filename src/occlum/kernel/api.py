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


# Argument kinds the serving loop decodes before a handler sees them: Linux reads these as C
# ints, the low 32 bits of the register, whatever its upper half holds. A descriptor is signed
# (AT_FDCWD is -100), as are open(2)'s flags, any other "flags" the kernel declares an int or
# unsigned int, and any "s32" (a pid, a signal, an int size or option); a set of AT_* flags,
# a mode (umode_t, or access(2)'s int) and a "uid" (uid_t or gid_t: (uid_t)-1 is 0xFFFFFFFF)
# are taken unsigned, so that an unknown bit is one of the 32. Every other kind ("int" is a long, a uid or a size the handler reads itself, "ptr",
# "path", "hex") reaches the handler as the register's value.
SIGNED32_KINDS = frozenset({"fd", "dirfd", "oflags", "flags", "s32"})
UNSIGNED32_KINDS = frozenset({"atflags", "mode", "uid"})


@dataclass(slots=True, frozen=True)
class Entry:
    name: str
    handler: Handler
    kinds: tuple[str, ...]  # each argument's kind, for the decoding and the trace; the arity
    level: str  # "full", "partial", "refused"
    note: str = ""
    # the positions of the arguments decoded as 32-bit values, each with whether it is signed
    int32: tuple[tuple[int, bool], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        int32 = tuple(
            (i, kind in SIGNED32_KINDS)
            for i, kind in enumerate(self.kinds)
            if kind in SIGNED32_KINDS or kind in UNSIGNED32_KINDS
        )
        object.__setattr__(self, "int32", int32)

    def decode(self, args: Sequence[int]) -> tuple[int, ...]:
        """The handler's arguments from the call's registers, by kind (``args`` is as long as
        ``kinds``)."""
        out = list(args)
        for i, signed in self.int32:
            v = out[i] & 0xFFFFFFFF
            out[i] = v - (1 << 32) if signed and v & 0x80000000 else v
        return tuple(out)
