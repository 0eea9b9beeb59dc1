"""What an exec does for a debugger on the host (``occlum gdb``): the kernel's view of the
program, and a wait before its first instruction.

The kernel executed the loader stub, so what it keeps of the exec describes the stub: its
saved auxiliary vector (``/proc/PID/auxv``: ``AT_ENTRY`` the stub's, ``AT_BASE`` 0, no
``AT_PHDR`` of the program) is what GDB relocates a PIE with and finds the dynamic loader by.
The stub's batch therefore ends with ``prctl(PR_SET_MM, PR_SET_MM_MAP)``, which replaces
``mm->saved_auxv`` with the auxv the program was given (an unprivileged call when no
``exe_fd`` is given; every other field is set to the value it has, read from
``/proc/PID/stat``), and, for the program ``occlum gdb`` starts, ``read(gate, ..., 1)`` on a
pipe the debugger writes to once it has attached: the program waits in the stub, right
before the jump to its entry. A wait in a system call, not a stop: GDB attaching to a
job-control-stopped process leaves its own SIGSTOP pending, which the first ``continue``
then reports twice; attached in ``read``, GDB sees one stop, and the read, restarted when
GDB resumes the program, returns the byte (or 0 if the debugger went away).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from occlum.abi.errors import SyscallError

PR_SET_MM = 35
PR_SET_MM_MAP = 14
# struct prctl_mm_map: eleven u64 fields, the auxv pointer, u32 auxv_size, u32 exe_fd
MM_MAP = struct.Struct("<11QQII")
NO_EXE_FD = 0xFFFFFFFF
# the kernel keeps at most AT_VECTOR_SIZE words of auxv (x86-64: 2 * (2 + 22 + 1 + 1) = 52)
SAVED_AUXV_BYTES = 52 * 8


@dataclass(slots=True, frozen=True)
class MmFields:
    """The fields of the process's ``mm`` that ``PR_SET_MM_MAP`` sets, as they are."""

    start_code: int
    end_code: int
    start_data: int
    end_data: int
    start_brk: int
    brk: int
    start_stack: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int


def mm_fields_from_stat(stat: bytes) -> MmFields:
    """The fields from ``/proc/PID/stat`` of a process that has not moved its break since its
    exec (the stub never calls brk, so ``brk`` is ``start_brk``)."""
    # fields after the command name (which may hold spaces and parentheses) start at field 3
    rest = stat[stat.rindex(b")") + 2 :].split()

    def field(n: int) -> int:
        return int(rest[n - 3])

    return MmFields(
        start_code=field(26),
        end_code=field(27),
        start_data=field(45),
        end_data=field(46),
        start_brk=field(47),
        brk=field(47),
        start_stack=field(28),
        arg_start=field(48),
        arg_end=field(49),
        env_start=field(50),
        env_end=field(51),
    )


def read_mm_fields(host_pid: int) -> MmFields:
    """The fields of the stub's process ``host_pid``, as it trapped."""
    try:
        with open(f"/proc/{host_pid}/stat", "rb") as f:
            return mm_fields_from_stat(f.read())
    except (OSError, ValueError, IndexError):
        raise SyscallError(errno.ESRCH, "the process is gone")


@dataclass(slots=True, frozen=True)
class DebugExec:
    """What one exec does for the debugger: ``mm`` as it is (its auxv is replaced), and
    ``gate`` the descriptor (a number in the process) it waits on before its entry, if any."""

    mm: MmFields
    gate: int | None = None


def mm_map(mm: MmFields, auxv_addr: int, auxv_bytes: int) -> bytes:
    """The ``struct prctl_mm_map`` that keeps ``mm`` and saves the auxv at ``auxv_addr``."""
    return MM_MAP.pack(
        mm.start_code, mm.end_code, mm.start_data, mm.end_data, mm.start_brk, mm.brk,
        mm.start_stack, mm.arg_start, mm.arg_end, mm.env_start, mm.env_end,
        auxv_addr, min(auxv_bytes, SAVED_AUXV_BYTES), NO_EXE_FD,
    )  # fmt: skip
