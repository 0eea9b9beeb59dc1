"""Process-creation calls the filter does not let through natively, and refused calls."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.syscalls import NAME
from occlum.kernel.api import PROCEED
from occlum.syscalls.native import MALLOC_ARENA_SIZES, MAP_FIXED, MAP_NORESERVE

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task


def sys_clone(libos: LibOS, t: Task, flags: int, *_: int) -> int:
    # The filter only sends clone here when it asks for new namespaces.
    raise SyscallError(errno.EPERM, "new namespaces are not available inside the LibOS")


def sys_exit_group(libos: LibOS, t: Task, status: int) -> Result:
    """The process ends as it asked; first the LibOS looks at how much address space it used,
    to name ``user_space_size`` when the program came close to it (its mmap or malloc may have
    failed with ENOMEM for that reason). The filter sends only a non-zero status here (every
    exit under ``occlum doctor``)."""

    libos.limits.check_address_space(t)
    return PROCEED


def sys_mmap(
    libos: LibOS, t: Task, addr: int, length: int, prot: int, flags: int, fd: int, offset: int
) -> Result:
    """A large mapping (the filter sends only those, see ``native.LARGE_MMAP``; it keeps
    MAP_FIXED and malloc's arenas native, which this lets through too): before the kernel
    makes it, the LibOS names ``user_space_size`` if it will not fit in what is left of the
    process's address space, where the failure happens, for programs (Java, Go, Node) that
    report it in words of their own. The kernel then does the call as made."""

    if not flags & MAP_FIXED and not _malloc_arena(length, prot, flags):
        libos.limits.check_mapping(t, length)
    return PROCEED


PROT_NONE = 0


def _malloc_arena(length: int, prot: int, flags: int) -> bool:
    """glibc's malloc reserving a thread's arena: ``new_heap`` asks for twice HEAP_MAX_SIZE
    (128 MiB on x86-64), then for HEAP_MAX_SIZE, inaccessible and unreserved, and when both
    fail the thread shares an existing arena. Programs cope with that refusal, so it is not
    named: under the default size every program with a few threads would print the line."""
    return prot == PROT_NONE and bool(flags & MAP_NORESERVE) and length in MALLOC_ARENA_SIZES


def refuse(err: int, note: str = ""):  # type: ignore[no-untyped-def]
    """A handler for calls no program inside may make: logged once (with ``note``, the errno
    and the reason), then ``err``."""
    why = note or errno.errorcode[err]

    def handler(libos: LibOS, t: Task, *_: int) -> int:
        if t.nr not in libos.warned:
            libos.warned.add(t.nr)
            libos.log.warn(
                f"{NAME.get(t.nr, t.nr)} is refused inside the LibOS ({why}), "
                f"called by {t.process.exe_path.decode(errors='replace')} (pid {t.process.pid})"
            )
        return -err

    return handler
