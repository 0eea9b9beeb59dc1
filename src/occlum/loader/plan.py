"""The load plan: the system calls that map a program (and its interpreter) into the stub,
and the initial stack the program starts with (argv, envp, auxv), as the kernel would build it.
:func:`plan_exec` puts them together for one accepted exec (:mod:`occlum.loader.program`)."""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from occlum.abi.errors import SyscallError
from occlum.abi.syscalls import NR
from occlum.loader.debug import PR_SET_MM, PR_SET_MM_MAP, DebugExec, mm_map
from occlum.loader.elf import PROT_WRITE, ElfImage
from occlum.platform.stub import BUFFER_ADDR, COMMAND_SIZE, COMMANDS_OFFSET, MAX_COMMANDS

if TYPE_CHECKING:
    from occlum.loader.program import ExecRequest

PAGE = 4096
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_FIXED_NOREPLACE = 0x100000
PROT_NONE = 0
MEMSET = -1
MASK64 = (1 << 64) - 1
PR_SET_NAME = 15
# what the arguments, environment and auxv may take of the stack the stub runs on
STACK_LIMIT = 120 * 1024

# where load biases are drawn from (page-aligned, 2^28 pages of randomness each); far from the
# stub (0x6f00_0000_0000), the stack and the vDSO at the top of the address space.
PIE_BASE = 0x5500_0000_0000
INTERP_BASE = 0x7E00_0000_0000
RANDOM_PAGES = 1 << 28

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = (
    0,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
)
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_SYSINFO_EHDR = 23, 25, 26, 31, 33
AT_MINSIGSTKSZ = 51
# auxv entries the kernel gave the stub that stay true for the loaded program
INHERITED_AUXV = (AT_HWCAP, AT_HWCAP2, AT_CLKTCK, AT_SYSINFO_EHDR, AT_MINSIGSTKSZ, 27, 28,
                  AT_UID, AT_EUID, AT_GID, AT_EGID)  # fmt: skip


@dataclass(slots=True)
class LoadPlan:
    commands: list[tuple[int, ...]] = field(default_factory=list)
    entry: int = 0
    auxv: list[tuple[int, int]] = field(default_factory=list)

    def syscall(self, name: str, *args: int) -> None:
        self.commands.append((NR[name], *args, *([0] * (6 - len(args)))))

    def memset(self, addr: int, length: int) -> None:
        self.commands.append((MEMSET, addr, 0, length, 0, 0, 0))


def random_bias(base: int) -> int:
    return base + (int.from_bytes(os.urandom(4), "little") % RANDOM_PAGES) * PAGE


_FD_SLOT = -2  # stands for the program's descriptor in a cached template
_templates: dict[ElfImage, list[tuple[int, ...]]] = {}


def map_image(plan: LoadPlan, image: ElfImage, fd: int, bias: int) -> None:
    """Add the commands that map ``image`` at ``bias`` from descriptor ``fd``.

    The commands are worked out once per image (at bias 0) and then only shifted: every
    command's first argument is an address (mmap's, or memset's destination).
    """
    template = _templates.get(image)
    if template is None:
        scratch = LoadPlan()
        _map_image(scratch, image, _FD_SLOT, 0)
        template = _templates[image] = scratch.commands
    plan.commands.extend(
        (nr, a1 + bias, a2, a3, a4, fd if a5 == _FD_SLOT else a5, a6)
        for nr, a1, a2, a3, a4, a5, a6 in template
    )


def _map_image(plan: LoadPlan, image: ElfImage, fd: int, bias: int) -> None:
    """Reserve the image's span, then map each PT_LOAD over it, zeroing .bss as the kernel does."""
    lo, hi = image.span
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
    plan.syscall("mmap", bias + lo, hi - lo, PROT_NONE, flags, -1 & 0xFFFFFFFFFFFFFFFF, 0)
    for seg in image.segments:
        start = (seg.vaddr & ~(PAGE - 1)) + bias
        file_end = seg.vaddr + seg.filesz + bias
        mem_end = seg.vaddr + seg.memsz + bias
        delta = seg.vaddr & (PAGE - 1)
        if seg.filesz:
            length = seg.filesz + delta
            plan.syscall(
                "mmap", start, length, seg.prot, MAP_PRIVATE | MAP_FIXED, fd, seg.offset - delta
            )
        if seg.memsz > seg.filesz:
            zero_page_end = (file_end + PAGE - 1) & ~(PAGE - 1)
            if seg.filesz and file_end < zero_page_end and seg.prot & PROT_WRITE:
                plan.memset(file_end, zero_page_end - file_end)  # as the kernel: to the page end
            anon_start = zero_page_end if seg.filesz else start
            anon_end = (mem_end + PAGE - 1) & ~(PAGE - 1)
            if anon_end > anon_start:
                plan.syscall("mmap", anon_start, anon_end - anon_start, seg.prot,
                             MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1 & 0xFFFFFFFFFFFFFFFF, 0)  # fmt: skip


class ArgArea(NamedTuple):
    """Where the argument and environment strings lie on a program's first stack, as the
    kernel keeps them (``mm->arg_start`` ...): ``/proc/PID/cmdline`` and ``environ`` read the
    process's memory there, so a program that rewrites its argv strings (a process title) is
    seen under its new name."""

    arg_start: int
    arg_end: int
    env_start: int
    env_end: int


def build_stack(
    top: int, argv: list[bytes], envp: list[bytes], auxv: list[tuple[int, int]], execfn: bytes
) -> tuple[int, bytes, ArgArea]:
    """The initial process stack laid out below ``top``: returns (rsp, bytes to write at rsp,
    where its argument and environment strings are)."""
    strings = bytearray()
    offsets: list[int] = []  # offset of each string from the start of the string area

    def put(s: bytes) -> int:
        offsets.append(len(strings))
        strings.extend(s + b"\0")
        return len(offsets) - 1

    arg_idx = [put(a) for a in argv]
    env_idx = [put(e) for e in envp]
    execfn_idx = put(execfn)
    platform_idx = put(b"x86_64")
    rand_off = len(strings)
    strings.extend(os.urandom(16))
    strings_start = (top - len(strings)) & ~0xF
    full_aux = [*auxv, (AT_RANDOM, strings_start + rand_off),
                (AT_EXECFN, strings_start + offsets[execfn_idx]),
                (AT_PLATFORM, strings_start + offsets[platform_idx]), (AT_NULL, 0)]  # fmt: skip
    words = [len(argv)]
    words += [strings_start + offsets[i] for i in arg_idx] + [0]
    words += [strings_start + offsets[i] for i in env_idx] + [0]
    for k, v in full_aux:
        words += [k, v]
    table = struct.pack(f"<{len(words)}Q", *words)
    rsp = (strings_start - len(table)) & ~0xF
    blob = table + b"\0" * (strings_start - rsp - len(table)) + bytes(strings)
    # the strings as the kernel lays them: the arguments, then the environment right after
    env_start = strings_start + offsets[env_idx[0] if env_idx else execfn_idx]
    area = ArgArea(strings_start, env_start, env_start, strings_start + offsets[execfn_idx])
    return rsp, blob, area


def parse_kernel_auxv(stack: bytes) -> dict[int, int] | None:
    """The auxv the kernel placed on the stub's stack (``stack`` read from its initial rsp);
    None if ``stack`` ends before the auxv does."""
    # a view, not a tuple of every word of the block read (a page or two): only the
    # pointers up to the auxv's end are looked at
    words = memoryview(stack)[: len(stack) // 8 * 8].cast("Q")
    if not words:
        return None
    i = 1 + words[0] + 1
    while i < len(words) and words[i] != 0:
        i += 1
    i += 1
    aux: dict[int, int] = {}
    while i + 1 < len(words):
        if words[i] == AT_NULL:
            return aux
        aux[words[i]] = words[i + 1]
        i += 2
    return None


@dataclass(slots=True, frozen=True)
class StubStart:
    """What the stub is given for one exec: ``stack`` to write at ``rsp``, the program's
    ``comm`` name (if it has its own) to write at ``comm_at``, and ``buffer`` for the stub's
    command buffer (the start address, the stack pointer, then the commands)."""

    rsp: int
    stack: bytes
    comm_at: int
    buffer: bytes
    commands: int
    args: ArgArea  # where the argument and environment strings are


def plan_exec(
    req: ExecRequest,
    prog_fd: int,
    interp_fd: int | None,
    kernel_aux: dict[int, int],
    ids: dict[int, int],
    rsp0: int,
    debug: DebugExec | None = None,
) -> StubStart:
    """The mappings, stack and start of ``req``'s program, with its descriptor ``prog_fd``
    (and its interpreter's, ``interp_fd``) as numbers in the process. ``kernel_aux`` is the
    auxv the kernel gave the stub (its stack at ``rsp0``); ``ids`` the AT_UID..AT_EGID the
    program is told; ``debug`` what the exec does for a debugger (:mod:`occlum.loader.debug`)."""
    plan = LoadPlan()
    prog = req.prog
    bias = random_bias(PIE_BASE) if prog.is_pie else 0
    map_image(plan, prog, prog_fd, bias)
    entry = prog.entry + bias
    interp_bias = 0
    if req.interp is not None and interp_fd is not None:
        interp_bias = random_bias(INTERP_BASE)
        map_image(plan, req.interp, interp_fd, interp_bias)
        plan.syscall("close", interp_fd)
        start = req.interp.entry + interp_bias
    else:
        start = entry
    plan.syscall("close", prog_fd)
    aux = [(k, ids.get(k, kernel_aux.get(k, 0))) for k in INHERITED_AUXV if k in kernel_aux]
    aux += [
        (AT_PHDR, prog.phdr_vaddr + bias),
        (AT_PHENT, prog.phentsize),
        (AT_PHNUM, prog.phnum),
        (AT_PAGESZ, PAGE),
        (AT_BASE, interp_bias),
        (AT_FLAGS, 0),
        (AT_ENTRY, entry),
        (AT_SECURE, 0),
    ]
    top = (rsp0 - 256) & ~0xF
    rsp, stack, args = build_stack(top, req.argv, req.envp, aux, req.execfn)
    if top - rsp > STACK_LIMIT:
        raise SyscallError(errno.E2BIG, "arguments and environment too large for the stack")
    if req.comm is not None:  # in the gap between the new stack's top and the stub's
        plan.syscall("prctl", PR_SET_NAME, top)
    tail = b""
    if debug is not None:
        # the struct goes in the command buffer, after the commands (then the gate's byte);
        # the auxv it names is the one on the new stack, after argc, argv, envp and NULLs
        ncmds = len(plan.commands) + 1 + 2 * (debug.gate is not None)
        after = BUFFER_ADDR + COMMANDS_OFFSET + ncmds * COMMAND_SIZE
        auxv_addr = rsp + 8 * (3 + len(req.argv) + len(req.envp))
        tail = mm_map(debug.mm, auxv_addr, 16 * (len(aux) + 4))
        plan.syscall("prctl", PR_SET_MM, PR_SET_MM_MAP, after, len(tail))
        if debug.gate is not None:
            plan.syscall("read", debug.gate, after + len(tail), 1)
            plan.syscall("close", debug.gate)
    if len(plan.commands) > MAX_COMMANDS:
        raise SyscallError(errno.ENOEXEC, "too many segments")
    words: list[int] = [0, start, rsp, 0, 0, 0, 0, 0]
    assert len(words) * 8 == COMMANDS_OFFSET
    for cmd in plan.commands:
        words.extend(a & MASK64 for a in cmd)
        words.append(0)
    buffer = struct.pack(f"<{len(words)}Q", *words) + tail
    return StubStart(rsp, stack, top, buffer, len(plan.commands), args)
