"""A directory's children as the ``linux_dirent64`` records ``getdents64`` hands out.

Owns :class:`DirStream`: the packed records of a directory's entries, in listing order, with
``d_off`` the position of the next entry (``.`` and ``..`` take positions 0 and 1, packed by
:mod:`occlum.vfs.dirfile`).  A file system that keeps one per directory appends to it as
names are made and drops it when a name goes (it is made again from ``readdir`` at the next
listing), so that a listing of N names costs one slice of bytes per ``getdents64`` call
instead of N Python objects and N packs: listing 100 000 names took 36 times as long as on
ext4 when every listing packed each record.

A stream is only ever appended to: a listing under way that holds it keeps the positions it
handed out (an entry made meanwhile may appear at its end, as on Linux), and one dropped is
never changed again, so a listing still reading it sees the directory as it was.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable

from occlum.abi.fsabi import dirent64_reclen

__all__ = ["FIRST_CHILD", "DirStream", "pack_record"]

# the position of a directory's first child: 0 is ".", 1 is ".."
FIRST_CHILD = 2

# name length -> (pack(ino, off, reclen, dtype, name), reclen) of a linux_dirent64: u64 d_ino,
# s64 d_off, u16 d_reclen, u8 d_type, the name, its NUL and the padding to 8 bytes
_PACKERS: dict[int, tuple[Callable[..., bytes], int]] = {}


def _layout(name_len: int) -> tuple[Callable[..., bytes], int]:
    layout = _PACKERS.get(name_len)
    if layout is None:
        reclen = dirent64_reclen(name_len)
        pack = struct.Struct(f"<QqHB{name_len}s{reclen - 19 - name_len}x").pack
        layout = _PACKERS[name_len] = (pack, reclen)
    return layout


def pack_record(name: bytes, ino: int, dtype: int, next_pos: int) -> bytes:
    """One ``linux_dirent64`` whose ``d_off`` is ``next_pos``."""
    pack, reclen = _layout(len(name))
    return pack(ino, next_pos, reclen, dtype, name)


class DirStream:
    """The packed records of a directory's children; child ``k`` is at position
    ``FIRST_CHILD + k`` and its ``d_off`` is the position after it."""

    __slots__ = ("_data", "_ends")

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("q")  # where each record ends in _data

    @classmethod
    def of(cls, entries: Iterable[tuple[bytes, int, int]]) -> DirStream:
        """A stream of ``(name, ino, dtype)`` entries (a file system's ``readdir``)."""
        s = cls()
        parts: list[bytes] = []
        ends = s._ends
        end = 0
        pos = FIRST_CHILD
        for name, ino, dtype in entries:
            pack, reclen = _layout(len(name))
            pos += 1
            parts.append(pack(ino, pos, reclen, dtype, name))
            end += reclen
            ends.append(end)
        s._data += b"".join(parts)
        return s

    def __len__(self) -> int:
        return len(self._ends)

    def add(self, name: bytes, ino: int, dtype: int) -> None:
        """A name made in the directory: listed last."""
        ends = self._ends
        pack, reclen = _layout(len(name))
        self._data += pack(ino, FIRST_CHILD + len(ends) + 1, reclen, dtype, name)
        ends.append(len(self._data))

    def read(self, k: int, room: int) -> tuple[bytes, int]:
        """The records of children ``k``, ``k + 1``... that fit in ``room`` bytes, and the index
        of the first child left out (``k`` when none fits, ``len(self)`` past the end)."""
        ends = self._ends
        if k >= len(ends):
            return b"", len(ends)
        start = ends[k - 1] if k else 0
        # the last record ending within room: one bisect, whatever the directory's size
        stop = bisect_right(ends, start + room, k)
        if stop == k:
            return b"", k
        return bytes(self._data[start : ends[stop - 1]]), stop
