"""What a syscall handler returns and how the table describes it (an ``Entry``, which decodes
the call's arguments by kind): the vocabulary shared by the serving loop (``kernel/libos.py``)
and the handlers (``syscalls/``). It imports nothing of the LibOS (only ``abi/``'s flag sets),
so that both can import it without a circle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from occlum.abi.flagsets import FLAG_SETS, FlagSet


class Proceed:
    """Handler result: let the kernel run the call as made (its arguments are plain values)."""


PROCEED = Proceed()


@dataclass(slots=True)
class Donate:
    """Handler result: install ``host_fd`` into the caller and return its number."""

    host_fd: int
    cloexec: bool


class Deferred:
    """Handler result: no answer now. The handler has handed the call to what answers it later
    (``kernel/commits.py``: a durability call, once its commit is durable). ``shown`` is what
    ``--strace`` prints for it."""

    __slots__ = ("shown",)

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def __str__(self) -> str:
        return self.shown


Result = int | Proceed | Donate | Deferred
Handler = Callable[..., Result]


# How the serving loop decodes each argument kind before a handler sees it, as Linux reads the
# C type the kernel declares:
# - "fd", "dirfd", "s32" (a pid, a signal, an int size or option): a C int, the low 32 bits
#   signed (AT_FDCWD is -100 whatever the register's upper half holds);
# - "u32" (an unsigned int count), "mode" (umode_t), "uid" (uid_t or gid_t, (uid_t)-1 being
#   0xFFFFFFFF, "unchanged" for the calls that take it): the low 32 bits unsigned;
# - "int": a long (an off_t, a length Linux reads signed), the register signed;
# - "size" (size_t), "hex" (an unsigned long mask shown in hex), "ptr", "path", "str", "argv",
#   "envp" (addresses): the register as it is;
# - a name of ``abi.flagsets.FLAG_SETS``: that set's width, its unknown bits refused (EINVAL
#   before the handler runs), cleared or passed on as the set says.
S32, U32, S64 = 1, 2, 3
ID_UNCHANGED = 0xFFFFFFFF  # a "uid" of -1: the calls that take it leave that id as it is
RAW_KINDS = frozenset({"size", "hex", "ptr", "path", "str", "argv", "envp"})
CODED_KINDS = {"fd": S32, "dirfd": S32, "s32": S32, "u32": U32, "mode": U32, "uid": U32,
               "int": S64}  # fmt: skip

Step = tuple[int, int, FlagSet | None]  # position, S32/U32/S64 (0 for a set), set


def _steps(name: str, kinds: tuple[str, ...]) -> tuple[Step, ...]:
    steps: list[Step] = []
    for i, kind in enumerate(kinds):
        if kind in RAW_KINDS:
            continue
        if kind in CODED_KINDS:
            steps.append((i, CODED_KINDS[kind], None))
        elif kind in FLAG_SETS:
            steps.append((i, 0, FLAG_SETS[kind]))
        else:
            raise ValueError(f"system call {name}: unknown argument kind {kind!r}")
    return tuple(steps)


@dataclass(slots=True, frozen=True)
class Entry:
    name: str
    handler: Handler
    kinds: tuple[str, ...]  # each argument's kind, for the decoding and the trace; the arity
    level: str  # "full", "partial", "refused"
    note: str = ""
    # the arguments the decoding changes or checks, in order (none: the registers as they are)
    steps: tuple[Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", _steps(self.name, self.kinds))

    def decode(self, args: Sequence[int]) -> tuple[int, ...]:
        """The handler's arguments from the call's registers, by kind (``args`` is as long as
        ``kinds``); ``SyscallError(EINVAL)`` for a flag bit the call refuses."""
        out = list(args)
        for i, how, flags in self.steps:
            v = out[i]
            if flags is not None:
                out[i] = flags.check(v & 0xFFFFFFFF if flags.width == 32 else v)
            elif how == S64:
                out[i] = v - (1 << 64) if v & (1 << 63) else v
            else:
                v &= 0xFFFFFFFF
                out[i] = v - (1 << 32) if how == S32 and v & 0x80000000 else v
        return tuple(out)
