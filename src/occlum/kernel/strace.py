"""strace-style rendering of served calls for ``OCCLUM_LOG_LEVEL=trace`` / ``occlum run --strace``.

Only runs when tracing is on: the hot path never formats anything.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.flagsets import FLAG_SETS

if TYPE_CHECKING:
    from occlum.kernel.process import Task


def _signed(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _string(t: Task, addr: int) -> str:
    try:
        raw = t.mem.read_cstring(addr, 4096)
    except SyscallError:
        return hex(addr)
    text = raw[:96].decode(errors="backslashreplace")
    return f'"{text}"' + ("..." if len(raw) > 96 else "")


def format_arg(t: Task, kind: str, v: int) -> str:
    if kind in ("path", "str"):
        return _string(t, v)
    if kind == "dirfd":
        return "AT_FDCWD" if _signed(v) == -100 else str(_signed(v))
    if kind in ("fd", "s32"):
        return str(_signed(v))
    flags = FLAG_SETS.get(kind)
    if flags is not None:  # by name, as the serving loop checks them
        return flags.format(v)
    if kind == "mode":
        return oct(v)
    if kind == "u32":
        return str(v & 0xFFFFFFFF)
    if kind == "size":
        return str(v)
    if kind in ("int", "uid"):
        return str(v if v < 1 << 63 else v - (1 << 64))
    return hex(v)  # ptr, hex, argv, envp


def _creates(flags: int) -> bool:
    return bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE


def format_call(t: Task, name: str, kinds: tuple[str, ...], args: tuple[int, ...]) -> str:
    shown: list[str] = []
    flags: int | None = None
    for kind, v in zip(kinds, args, strict=False):
        if kind == "oflags":
            flags = v
        elif kind == "mode" and flags is not None and not _creates(flags):
            continue  # as strace: an open's mode means nothing (and is garbage) unless it creates
        shown.append(format_arg(t, kind, v))
    return f"{name}({', '.join(shown)})"


def format_result(res: object, why: str = "") -> str:
    if isinstance(res, int) and res < 0:
        name = errno.errorcode.get(-res, str(-res))
        return f"-1 {name} ({why or os.strerror(-res)})"
    return str(res)
