"""What a SEFS volume's files and metadata look like: chunks, extents and their references.

A regular file is cut into :data:`CHUNK`-sized chunks; only chunks holding data are stored
(an all-zero chunk is a hole), each run of changed chunks as one sealed *extent* object, or
inline in a journal record (:class:`Chunk` says where).  The metadata documents (a
checkpoint, a journal record) are compact JSON (:func:`dumps`), in format :data:`FORMAT`.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from occlum.fs.sefs.store import ObjectRef
from occlum.platform.holes import data_ranges

__all__ = [
    "CHUNK",
    "EXTENT_CHUNKS",
    "FORMAT",
    "FORMATS",
    "INLINE_MAX",
    "IN_FLIGHT",
    "MOVED_OBJECT",
    "RECORD_HEAD",
    "SEFS_MAGIC",
    "ZERO",
    "Chunk",
    "data_chunks",
    "dumps",
    "write_data",
]

# A chunk is the unit of change detection: small, so that a database page write costs little;
# an extent is the unit of host I/O: large, because creating a host file costs about as much as
# writing a megabyte to it (measured on ext4: 256 KiB objects ~250 MiB/s, 4 MiB ~1 GiB/s).
CHUNK = 256 * 1024
EXTENT_CHUNKS = 16
# A commit keeps up to INLINE_MAX bytes of changed chunks in its journal record; past that,
# extents.
INLINE_MAX = 1024 * 1024
# chunks moved out of the journal share objects of about this size (a file loaded reads its
# object whole, to verify it: small, so that loading one small file stays cheap)
MOVED_OBJECT = CHUNK
IN_FLIGHT = 3  # extents being sealed/written while the next one is read: 12 MiB at most
SEFS_MAGIC = 0x53454653  # "SEFS": statfs f_type
ZERO = bytes(CHUNK)
ZERO_PAGE = bytes(4096)
# 1: chunk offsets counted in chunks, no journal; 2: every inode in every journal record, a
# directory's whole listing in its record, a file's every chunk (null for a hole) listed;
# 3: journal records hold changed inodes and entries only, chunks listed by index
FORMAT = 3
FORMATS = (1, 2, 3)
RECORD_HEAD = struct.Struct("<I")  # a journal record: metadata length, metadata, chunk data


_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call


def dumps(value: Any) -> str:
    return _JSON.encode(value)


@dataclass(slots=True, frozen=True)
class Chunk:
    """One committed chunk: the bytes at ``offset`` of the extent object ``ref``
    (``object_len`` bytes of plaintext), and the SHA-256 of the chunk's plaintext to spot
    changes.  A chunk kept in a journal record has an empty tag (the record was verified when
    the journal was read), ``ref.oid`` is the record's id and ``object_len`` is 0."""

    ref: ObjectRef
    object_len: int
    offset: int
    phash: bytes

    @property
    def in_journal(self) -> bool:
        return not self.ref.tag


def data_chunks(fd: int, size: int) -> Iterator[int]:
    """The indices of the chunks of ``fd``'s first ``size`` bytes that hold data, found with
    SEEK_DATA/SEEK_HOLE: a hole (never written, truncated up, punched) costs nothing."""
    last = -1
    for start, end in data_ranges(fd, size):
        first = max(start // CHUNK, last + 1)
        last = (end - 1) // CHUNK
        yield from range(first, last + 1)


def write_data(fd: int, data: memoryview, off: int) -> None:
    """Write ``data`` at ``off`` but for its all-zero pages, which stay holes (as they were
    when the chunk was written: SEEK_HOLE answers as before the file was stored)."""
    page = len(ZERO_PAGE)
    n = len(data)
    pos = 0
    while pos < n:
        while pos < n and data[pos : pos + page] == ZERO_PAGE[: min(page, n - pos)]:
            pos += page
        end = pos
        while end < n and data[end : end + page] != ZERO_PAGE[: min(page, n - end)]:
            end += page
        view = data[pos : min(end, n)]
        at = off + pos
        while view:
            k = os.pwrite(fd, view, at)
            view, at = view[k:], at + k
        pos = end
