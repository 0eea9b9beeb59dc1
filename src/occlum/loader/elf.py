"""Parsing the parts of an ELF executable the loader needs (pyelftools), with a cache.

Programs are read from the LibOS file system through a host descriptor; the parsed header is
cached by the file's identity so a second ``execve`` of the same program costs a dict lookup.
"""

from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

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


def parse_elf(fd: int, name: str = "") -> ElfImage:
    """Parse the ELF program behind host descriptor ``fd``; ENOEXEC with a reason if unusable."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    head = os.pread(fd, 64, 0)
    if head[:4] != b"\x7fELF":
        raise SyscallError(errno.ENOEXEC, f"{name}: not an ELF file")
    if head[4] != 2 or head[5] != 1:
        raise SyscallError(errno.ENOEXEC, f"{name}: not a 64-bit little-endian ELF")
    try:
        data = os.pread(fd, min(st.st_size, 1 << 16), 0)
        phoff = int.from_bytes(head[32:40], "little")
        phnum = int.from_bytes(head[56:58], "little")
        if phoff + 56 * phnum > len(data):
            data = os.pread(fd, phoff + 56 * phnum, 0)
        elf = ELFFile(io.BytesIO(data + b"\0" * max(0, 64 - len(data))))
        if elf["e_machine"] != "EM_X86_64":
            raise SyscallError(errno.ENOEXEC, f"{name}: not an x86-64 program")
        etype = {"ET_EXEC": ET_EXEC, "ET_DYN": ET_DYN}.get(elf["e_type"])
        if etype is None:
            raise SyscallError(errno.ENOEXEC, f"{name}: not an executable ({elf['e_type']})")
        segments: list[Segment] = []
        interp: bytes | None = None
        phdr_vaddr = -1
        for i in range(elf.num_segments()):
            h = elf._get_segment_header(i)
            ptype = h["p_type"]
            if ptype == "PT_LOAD" and h["p_memsz"]:
                if h["p_offset"] + h["p_filesz"] > st.st_size:
                    raise SyscallError(errno.ENOEXEC, f"{name}: truncated ELF (segment past end)")
                segments.append(
                    Segment(
                        h["p_vaddr"],
                        h["p_memsz"],
                        h["p_offset"],
                        h["p_filesz"],
                        _prot(h["p_flags"]),
                    )
                )
            elif ptype == "PT_INTERP":
                raw = os.pread(fd, h["p_filesz"], h["p_offset"])
                if len(raw) != h["p_filesz"]:
                    raise SyscallError(errno.ENOEXEC, f"{name}: truncated ELF (interpreter)")
                interp = raw.split(b"\0", 1)[0]
            elif ptype == "PT_PHDR":
                phdr_vaddr = h["p_vaddr"]
    except ELFError as exc:
        raise SyscallError(errno.ENOEXEC, f"{name}: malformed ELF ({exc})")
    except (ValueError, KeyError, OSError) as exc:
        raise SyscallError(errno.ENOEXEC, f"{name}: truncated or malformed ELF ({exc})")
    if not segments:
        raise SyscallError(errno.ENOEXEC, f"{name}: ELF without loadable segments")
    if phdr_vaddr < 0:
        for s in segments:
            if s.offset <= phoff < s.offset + s.filesz:
                phdr_vaddr = s.vaddr + (phoff - s.offset)
                break
    image = ElfImage(
        etype=etype,
        entry=elf["e_entry"],
        phoff=phoff,
        phentsize=elf["e_phentsize"],
        phnum=phnum,
        phdr_vaddr=max(phdr_vaddr, 0),
        segments=tuple(segments),
        interp=interp,
        file_size=st.st_size,
    )
    _cache[key] = image
    return image
