"""Preparing an exec in the loader (occlum.loader.program, occlum.loader.plan), on a RamFs and
without a process: the program opened once, `#!` lines, ELF interpreters, the load plan."""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from occlum.abi.errors import SyscallError
from occlum.abi.syscalls import NR
from occlum.fs.ramfs import RamFs
from occlum.loader.debug import MM_MAP, PR_SET_MM, PR_SET_MM_MAP, DebugExec, mm_fields_from_stat
from occlum.loader.plan import AT_UID, plan_exec
from occlum.loader.program import (
    CachedProgram,
    Executable,
    MissingInterpreter,
    ProgramOpener,
)
from occlum.platform.stub import BUFFER_ADDR, COMMAND_SIZE, COMMANDS_OFFSET
from occlum.vfs.inode import Cred, Inode
from occlum.vfs.mount import MountTable
from occlum.vfs.path import Location, PathOp, resolve

TRUE = Path("/bin/true")
ELF_INTERP = b"/lib64/ld-linux-x86-64.so.2"


def errno_of(fn: Callable[[], object]) -> int:
    with pytest.raises(SyscallError) as e:
        fn()
    return e.value.errno


def _file(d: Inode, name: bytes, data: bytes, mode: int = 0o755) -> None:
    f = d.create(name, mode, 0, 0)
    fd = f.open_host_fd(os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.fixture
def root() -> Iterator[Location]:
    fs = RamFs(mode=0o755)
    r = fs.root
    b = r.mkdir(b"bin", 0o755, 0, 0)
    _file(b, b"prog", TRUE.read_bytes())
    _file(b, b"script", b"#!/bin/prog -x\necho\n")
    _file(b, b"chain", b"#!/bin/script\n")
    _file(b, b"loop", b"#!/bin/loop\n")
    _file(b, b"lost", b"#!/bin/nowhere\n")
    _file(b, b"empty", b"#!  \n")
    _file(b, b"data", b"hello", 0o644)
    yield MountTable(fs).root()


def opener(writing: bool = False) -> ProgramOpener:
    return ProgramOpener(OrderedDict(), lambda fd: writing)


def prepare(r: Location, path: bytes, o: ProgramOpener | None = None, cred: Cred | None = None):  # type: ignore[no-untyped-def]
    o = o or opener()
    first = o.open(PathOp(r, r, path, cred=cred))
    return o.prepare(r, r, first, path, path, [path, b"arg"], [b"A=1"], cred or Cred())


def _with_interp(r: Location) -> None:
    d = r.inode.mkdir(b"lib64", 0o755, 0, 0)
    _file(d, os.path.basename(ELF_INTERP), Path(os.fsdecode(ELF_INTERP)).read_bytes())


def test_missing_elf_interpreter_is_named(root: Location) -> None:
    with pytest.raises(MissingInterpreter) as e:
        prepare(root, b"/bin/prog")
    assert e.value.errno == errno.ENOENT and ELF_INTERP.decode() in e.value.why


def test_script_argv_and_interpreters(root: Location) -> None:
    _with_interp(root)
    req = prepare(root, b"/bin/chain")
    try:
        # chain -> script -> prog, each `#!` line putting its interpreter in front
        assert req.argv == [b"/bin/prog", b"-x", b"/bin/script", b"/bin/chain", b"arg"]
        assert req.exe_path == b"/bin/prog" and req.execfn == b"/bin/chain"
        assert req.interp is not None and req.interp_fd is not None
        assert (
            req.exe_id is not None
            and req.exe_id[1] == resolve(PathOp(root, root, b"/bin/prog")).inode.ino
        )
    finally:
        req.close()


def test_script_errors(root: Location) -> None:
    with pytest.raises(MissingInterpreter) as e:
        prepare(root, b"/bin/lost")
    assert "/bin/nowhere" in e.value.why
    assert errno_of(lambda: prepare(root, b"/bin/loop")) == errno.ELOOP
    assert errno_of(lambda: prepare(root, b"/bin/empty")) == errno.ENOEXEC
    assert errno_of(lambda: prepare(root, b"/bin/data")) == errno.EACCES  # no exec bit
    assert errno_of(lambda: prepare(root, b"/bin")) == errno.EACCES  # not a regular file
    assert errno_of(lambda: prepare(root, b"/bin/none")) == errno.ENOENT
    nofollow = PathOp(root, root, b"/bin/ln", follow=False)
    root.inode.lookup(b"bin").symlink(b"ln", b"prog", 0, 0)
    assert errno_of(lambda: opener().open(nofollow)) == errno.ELOOP


def test_open_for_writing_and_cache(root: Location) -> None:
    assert errno_of(lambda: prepare(root, b"/bin/prog", opener(writing=True))) == errno.ETXTBSY
    # a file that can change is opened anew each time, never cached
    cache: OrderedDict[tuple[int, int], CachedProgram] = OrderedDict()
    o = ProgramOpener(cache, lambda fd: False)
    first = o.open(PathOp(root, root, b"/bin/prog"))
    assert isinstance(first, Executable) and first.owned and not cache
    os.close(first.fd)


def test_plan_exec(root: Location) -> None:
    _with_interp(root)
    req = prepare(root, b"/bin/prog")
    try:
        req.comm = b"prog"
        rsp0 = 0x7FFF_0000_1000
        start = plan_exec(req, 3, 4, {AT_UID: 5, 16: 7}, {AT_UID: 1000}, rsp0)
        words = struct.unpack(f"<{len(start.buffer) // 8}Q", start.buffer)
        assert words[2] == start.rsp and start.rsp < start.comm_at < rsp0
        assert len(start.buffer) == COMMANDS_OFFSET + start.commands * 8 * 8
        # argc, then the argv pointers; the stack's strings hold them
        assert struct.unpack_from("<Q", start.stack)[0] == 2
        assert b"/bin/prog\0arg\0A=1\0" in start.stack
        aux = struct.unpack_from(f"<{len(start.stack) // 8}Q", start.stack)
        end = 6
        while aux[end] != 0:  # up to AT_NULL
            end += 2
        pairs = dict(zip(aux[6:end:2], aux[7:end:2], strict=True))
        assert pairs[AT_UID] == 1000 and pairs[16] == 7  # LibOS ids over the kernel's
        nr = [words[i] for i in range(8, len(words), 8)]
        assert nr[-1] == NR["prctl"]  # PR_SET_NAME last, for the comm name
        req.argv = [b"x" * 200_000]
        assert errno_of(lambda: plan_exec(req, 3, 4, {}, {}, rsp0)) == errno.E2BIG
    finally:
        req.close()


def test_plan_exec_for_a_debugger(root: Location) -> None:
    """occlum gdb: the batch ends with PR_SET_MM_MAP (a struct after the commands, naming the
    auxv on the new stack) and, for the program that waits, a read of the gate and its close."""
    _with_interp(root)
    req = prepare(root, b"/bin/prog")
    stat = b"42 (a) b) (c) R " + b" ".join(b"%d" % n for n in range(4, 53)) + b"\n"
    mm = mm_fields_from_stat(stat)
    assert (mm.start_code, mm.end_code, mm.start_stack) == (26, 27, 28)
    assert (mm.start_data, mm.start_brk, mm.brk, mm.env_end) == (45, 47, 47, 51)
    try:
        rsp0 = 0x7FFF_0000_1000
        start = plan_exec(req, 3, 4, {}, {}, rsp0, DebugExec(mm, gate=9))
        words = struct.unpack(f"<{len(start.buffer) // 8}Q", start.buffer)
        cmds = [words[i : i + 8] for i in range(8, 8 + start.commands * 8, 8)]
        prctl, read, close = cmds[-3:]
        after = BUFFER_ADDR + COMMANDS_OFFSET + start.commands * COMMAND_SIZE
        assert prctl[:5] == (NR["prctl"], PR_SET_MM, PR_SET_MM_MAP, after, MM_MAP.size)
        assert read[:4] == (NR["read"], 9, after + MM_MAP.size, 1)
        assert close[:2] == (NR["close"], 9)
        fields = MM_MAP.unpack_from(start.buffer, after - BUFFER_ADDR)
        assert fields[:11] == dataclasses.astuple(mm)
        # the auxv it names: the pairs the stack holds after argc, argv, envp, up to AT_NULL
        auxv_at, size = fields[11] - start.rsp, fields[12]
        pairs = struct.unpack_from(f"<{size // 8}Q", start.stack, auxv_at)
        assert pairs[-2:] == (0, 0) and pairs[0::2].count(9) == 1  # AT_ENTRY once
        without_gate = plan_exec(req, 3, 4, {}, {}, rsp0, DebugExec(mm))
        assert without_gate.commands == start.commands - 2
    finally:
        req.close()


def test_parse_kernel_auxv() -> None:
    """The auxv the kernel put on the stub's stack: after argc, argv and envp; None when the
    block read ends before its AT_NULL."""
    from occlum.loader.plan import parse_kernel_auxv

    words = [2, 0x1000, 0x1008, 0, 0x2000, 0, 33, 0x7FFF0000, 6, 4096, 0, 0, 0xDEAD]
    block = struct.pack(f"<{len(words)}Q", *words) + b"\1\2\3"  # not a whole word at the end
    assert parse_kernel_auxv(block) == {33: 0x7FFF0000, 6: 4096}
    assert parse_kernel_auxv(block[: 9 * 8]) is None  # ends inside the auxv
    assert parse_kernel_auxv(b"") is None
