"""Strings read from a process's memory (``TaskMemory.read_cstring``, every path a call names):
a short first read, then on to the end of each page, with Linux's errors."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Iterator

import pytest

from occlum.abi.errors import SyscallError
from occlum.platform.memory import FIRST_READ, PAGE, TaskMemory


@pytest.fixture
def pages() -> Iterator[tuple[mmap.mmap, int]]:
    """Three pages of this process, the third unmapped again: (the mapping, its address)."""
    m = mmap.mmap(-1, 3 * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    assert libc.munmap(base + 2 * PAGE, PAGE) == 0
    try:
        yield m, base
    finally:
        m.close()


def _errno(call: object) -> int:
    assert callable(call)
    try:
        call()
    except SyscallError as e:
        return e.errno
    return 0


def test_strings_short_long_and_across_pages(pages: tuple[mmap.mmap, int]) -> None:
    m, base = pages
    mem = TaskMemory(os.getpid())
    try:
        for at, length in [
            (0, 0),
            (0, 20),
            (0, FIRST_READ - 1),  # its NUL is the last byte of the first read
            (0, FIRST_READ),  # its NUL is the first byte after it
            (100, 1000),
            (PAGE - 10, 300),  # the first read stops at the page's end
            (PAGE - FIRST_READ - 5, FIRST_READ + 5),
        ]:
            text = bytes(65 + i % 26 for i in range(length))
            m[at : at + length + 1] = text + b"\0"
            assert mem.read_cstring(base + at) == text, (at, length)
        m[0:5000] = b"x" * 5000
        m[5000] = 0
        assert _errno(lambda: mem.read_cstring(base)) == errno.ENAMETOOLONG
        m[4096] = 0  # 4096 bytes: as long as the limit allows
        assert mem.read_cstring(base) == b"x" * 4096
        m[300] = 0
        assert mem.read_cstring(base, limit=300) == b"x" * 300
        assert _errno(lambda: mem.read_cstring(base, limit=299)) == errno.ENAMETOOLONG
        assert _errno(lambda: mem.read_cstring(base, limit=100)) == errno.ENAMETOOLONG
        # a string running into the unmapped page, or starting there
        m[PAGE : 2 * PAGE] = b"y" * PAGE
        assert _errno(lambda: mem.read_cstring(base + 2 * PAGE - 50)) == errno.EFAULT
        assert _errno(lambda: mem.read_cstring(base + 2 * PAGE)) == errno.EFAULT
        assert _errno(lambda: mem.read_cstring(0)) == errno.EFAULT
    finally:
        mem.close()
