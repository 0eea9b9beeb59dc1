"""A SEFS flush finds every change a program can make natively to a file's memfd (a write, a
store through a shared mapping, a truncate, a punched hole), and pays a SHA-256 only for the
chunks that changed: the others are told apart by their fast hash, kept from the last flush or
from the load."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from inode_io import read, write
from occlum.fs.sefs import CHUNK, SefsFs
from occlum.fs.sefs import files as sefs_files
from occlum.fs.sefs.files import SefsFile

KEY = bytes(range(32))
SIZE = 6 * CHUNK - 1000  # six chunks, the last one short
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


def punch(fd: int, off: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    assert libc.fallocate(fd, mode, off, length) == 0, os.strerror(ctypes.get_errno())


def inside_a_chunk(fd: int, data: bytearray) -> int:
    new = os.urandom(4096)
    os.pwrite(fd, new, 2 * CHUNK + 8192)
    data[2 * CHUNK + 8192 : 2 * CHUNK + 8192 + 4096] = new
    return 1


def one_byte(fd: int, data: bytearray) -> int:
    at = 3 * CHUNK + 12345
    data[at] ^= 0x01
    os.pwrite(fd, bytes([data[at]]), at)
    return 1


def through_a_mapping(fd: int, data: bytearray) -> int:
    m = mmap.mmap(fd, SIZE)  # no write(2): only the pages change, not even the mtime
    m[CHUNK + 100 : CHUNK + 105] = b"store"
    m.close()
    data[CHUNK + 100 : CHUNK + 105] = b"store"
    return 1


def truncate_and_extend(fd: int, data: bytearray) -> int:
    os.ftruncate(fd, SIZE - 3000)  # the same size again, the tail now zeros
    os.ftruncate(fd, SIZE)
    data[SIZE - 3000 :] = bytes(3000)
    return 1


def extend(fd: int, data: bytearray) -> int:
    os.ftruncate(fd, SIZE + 500)  # the short last chunk grows by zeros
    data += bytes(500)
    return 1


def punch_in_a_chunk(fd: int, data: bytearray) -> int:
    punch(fd, 4 * CHUNK + 8192, 8192)
    data[4 * CHUNK + 8192 : 4 * CHUNK + 16384] = bytes(8192)
    return 1


def punch_a_whole_chunk(fd: int, data: bytearray) -> int:
    punch(fd, 0, CHUNK)
    data[:CHUNK] = bytes(CHUNK)
    return 0  # an all-zero chunk is a hole: nothing to hash or store


CHANGES: list[Callable[[int, bytearray], int]] = [
    inside_a_chunk,
    one_byte,
    through_a_mapping,
    truncate_and_extend,
    extend,
    punch_in_a_chunk,
    punch_a_whole_chunk,
]


class CountedSha256:
    """hashlib for the flush, counting the SHA-256s it computes."""

    def __init__(self) -> None:
        self.calls = 0

    def sha256(self, data: Any) -> Any:
        self.calls += 1
        return hashlib.sha256(data)


@pytest.mark.parametrize("loaded", [False, True], ids=["written", "loaded"])
@pytest.mark.parametrize("change", CHANGES, ids=[c.__name__ for c in CHANGES])
def test_each_change_is_committed_and_only_it_is_hashed(
    vol: Path,
    mounts: list[SefsFs],
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[int, bytearray], int],
    loaded: bool,
) -> None:
    fs = SefsFs(vol, KEY)
    mounts.append(fs)
    data = bytearray(os.urandom(SIZE))
    write(fs.root.create(b"f", 0o644, 0, 0), data)
    fs.sync()
    if loaded:  # the fast hashes come from the load, not from a flush
        fs.close()
        fs = SefsFs(vol, KEY)
        mounts.append(fs)
    f = fs.root.lookup(b"f")
    assert isinstance(f, SefsFile)
    fd = f.open_host_fd(os.O_RDWR)  # a program's descriptor, open across its fsync
    try:
        changed = change(fd, data)
        sha = CountedSha256()
        monkeypatch.setattr(sefs_files, "hashlib", sha)
        fs.sync_file(f)
        assert sha.calls == changed
        monkeypatch.undo()
        sha_again = CountedSha256()
        monkeypatch.setattr(sefs_files, "hashlib", sha_again)
        fs.sync_file(f)  # nothing changed since: no SHA-256 at all
        assert sha_again.calls == 0
        monkeypatch.undo()
    finally:
        os.close(fd)
    fs.close(commit=False)  # what the fsync committed, nothing more
    again = SefsFs(vol, KEY)
    mounts.append(again)
    assert read(again.root.lookup(b"f")) == data


def test_a_big_file_is_scanned_by_threads_and_a_small_change_found(
    vol: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past one batch of chunks, a flush scans on the commit's threads, batches in order."""
    monkeypatch.setattr(sefs_files, "SCAN_BATCH", 2)
    fs = SefsFs(vol, KEY)
    mounts.append(fs)
    data = bytearray(os.urandom(9 * CHUNK + 77))
    f = fs.root.create(b"f", 0o644, 0, 0)
    write(f, data)
    fs.sync()
    fd = f.open_host_fd(os.O_RDWR)
    try:
        for at in (5, 4 * CHUNK + 3, 9 * CHUNK + 70):
            data[at] ^= 0xFF
            os.pwrite(fd, bytes([data[at]]), at)
        sha = CountedSha256()
        monkeypatch.setattr(sefs_files, "hashlib", sha)
        fs.sync_file(f)
        assert sha.calls == 3
    finally:
        os.close(fd)
    fs.close(commit=False)
    again = SefsFs(vol, KEY)
    mounts.append(again)
    assert read(again.root.lookup(b"f")) == data


def test_a_file_truncated_while_its_flush_reads_it_still_loads(
    vol: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program may shrink the file (a native ftruncate) after the flush took its size: what
    the flush reads past the new end is zeros, so every chunk it records is as long as the
    size it records, and a kill right after the commit leaves a file that loads."""
    fs = SefsFs(vol, KEY)
    mounts.append(fs)
    data = os.urandom(3 * CHUNK)
    f = fs.root.create(b"f", 0o644, 0, 0)
    assert isinstance(f, SefsFile)
    fd = f.open_host_fd(os.O_RDWR)
    os.pwrite(fd, data, 0)
    real_data_chunks = sefs_files.data_chunks

    def data_chunks_after_a_truncate(fd_: int, size: int) -> Iterator[int]:
        os.ftruncate(fd, CHUNK + 1000)  # between the flush's fstat and its reads
        return real_data_chunks(fd_, size)

    monkeypatch.setattr(sefs_files, "data_chunks", data_chunks_after_a_truncate)
    try:
        fs.sync_file(f)
    finally:
        os.close(fd)
    monkeypatch.undo()
    fs.close(commit=False)  # killed before another commit
    again = SefsFs(vol, KEY)
    mounts.append(again)
    assert read(again.root.lookup(b"f")) == data[: CHUNK + 1000] + bytes(2 * CHUNK - 1000)
