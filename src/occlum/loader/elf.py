"""Parsing the parts of an ELF executable the loader needs, with a cache.

Programs are read from the LibOS file system through a host descriptor; the parsed header is
cached by the file's identity so a second ``execve`` of the same program costs a dict lookup.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

from occlum.abi.errors import SyscallError

PF_X, PF_W, PF_R = 1, 2, 4
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62


@dataclass(slots=True, frozen=True)
class Segment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    prot: int


@dataclass(slots=True, frozen=True)
class ElfImage:
    etype: int
    entry: int
    phoff: int
    phentsize: int
    phnum: int
    phdr_vaddr: int  # where the program headers lie in memory (before the load bias)
    segments: tuple[Segment, ...]
    interp: bytes | None
    file_size: int

    @property
    def is_pie(self) -> bool:
        return self.etype == ET_DYN

    @property
    def span(self) -> tuple[int, int]:
        lo = min(s.vaddr for s in self.segments) & ~0xFFF
        hi = max(s.vaddr + s.memsz for s in self.segments)
        return lo, (hi + 0xFFF) & ~0xFFF


_cache: dict[tuple[int, int, int, int], ElfImage] = {}


def _prot(flags: int) -> int:
    return (
        (PROT_READ if flags & PF_R else 0)
        | (PROT_WRITE if flags & PF_W else 0)
        | (PROT_EXEC if flags & PF_X else 0)
    )


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP, PT_PHDR = 1, 3, 6


def parse_elf(fd: int, name: str = "") -> ElfImage:
    """Parse the ELF program behind host descriptor ``fd``; ENOEXEC with a reason if unusable.

    The loader reads only the ELF header and the program headers. They are decoded here with
    ``struct`` rather than pyelftools (which copy_bom uses for its deeper analysis): this runs
    on every ``execve``, where importing and walking pyelftools' object model costs more than
    the whole exec should.
    """
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    head = os.pread(fd, 4096, 0)
    if head[:4] != b"\x7fELF":
        raise SyscallError(errno.ENOEXEC, f"{name}: not an ELF file")
    if len(head) < _EHDR.size:
        raise SyscallError(errno.ENOEXEC, f"{name}: truncated ELF header")
    if head[4] != 2 or head[5] != 1:
        raise SyscallError(errno.ENOEXEC, f"{name}: not a 64-bit little-endian ELF")
    (_ident, etype, machine, _ver, entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(head)  # fmt: skip
    if machine != EM_X86_64:
        raise SyscallError(errno.ENOEXEC, f"{name}: not an x86-64 program")
    if etype not in (ET_EXEC, ET_DYN):
        raise SyscallError(errno.ENOEXEC, f"{name}: not an executable (e_type {etype})")
    if phentsize != _PHDR.size or not 0 < phnum <= 256:
        raise SyscallError(errno.ENOEXEC, f"{name}: malformed program headers")
    table_size = phnum * phentsize
    # checked before any read: e_phoff is the file's to choose (up to 2**64 - 1), and a read
    # sized or placed by it would fail in Python (MemoryError, OverflowError), not as ENOEXEC
    if phoff > st.st_size - table_size:
        raise SyscallError(errno.ENOEXEC, f"{name}: truncated ELF (program headers)")
    if phoff + table_size <= len(head):
        table = head[phoff : phoff + table_size]
    else:
        table = os.pread(fd, table_size, phoff)
    if len(table) < table_size:
        raise SyscallError(errno.ENOEXEC, f"{name}: truncated ELF (program headers)")
    segments: list[Segment] = []
    interp: bytes | None = None
    phdr_vaddr = -1
    for i in range(phnum):
        ptype, pflags, offset, vaddr, _paddr, filesz, memsz, _align = _PHDR.unpack_from(
            table, i * phentsize
        )
        if ptype == PT_LOAD and memsz:
            if offset + filesz > st.st_size or filesz > memsz:
                raise SyscallError(errno.ENOEXEC, f"{name}: truncated ELF (segment past end)")
            if (offset - vaddr) % 4096:
                raise SyscallError(errno.ENOEXEC, f"{name}: misaligned segment")
            segments.append(Segment(vaddr, memsz, offset, filesz, _prot(pflags)))
        elif ptype == PT_INTERP:
            # Linux's checks, in its order: the path's length, the read (a negative offset
            # is EINVAL, a short read EIO), the terminating NUL
            if not 2 <= filesz <= 4096:
                raise SyscallError(errno.ENOEXEC, f"{name}: bad interpreter path length")
            if offset >= 1 << 63:
                raise SyscallError(errno.EINVAL, f"{name}: interpreter path offset is negative")
            raw = os.pread(fd, filesz, offset)
            if len(raw) != filesz:
                raise SyscallError(errno.EIO, f"{name}: truncated ELF (interpreter path)")
            if raw[-1] != 0:
                raise SyscallError(errno.ENOEXEC, f"{name}: interpreter path without its NUL")
            interp = raw.split(b"\0", 1)[0]
        elif ptype == PT_PHDR:
            phdr_vaddr = vaddr
    if not segments:
        raise SyscallError(errno.ENOEXEC, f"{name}: ELF without loadable segments")
    if phdr_vaddr < 0:
        for s in segments:
            if s.offset <= phoff < s.offset + s.filesz:
                phdr_vaddr = s.vaddr + (phoff - s.offset)
                break
    image = ElfImage(
        etype=etype,
        entry=entry,
        phoff=phoff,
        phentsize=phentsize,
        phnum=phnum,
        phdr_vaddr=max(phdr_vaddr, 0),
        segments=tuple(segments),
        interp=interp,
        file_size=st.st_size,
    )
    _cache[key] = image
    return image
