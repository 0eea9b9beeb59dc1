"""Open directories: the LibOS side of a directory descriptor and ``getdents64``.

Owns the directory position and the ``linux_dirent64`` stream (with ``.`` and ``..``).  The
listing is snapshotted when reading starts at position 0 (as after open or ``lseek(fd, 0,
SEEK_SET)``), and ``d_off`` is the index of the next entry in that snapshot, so a program may
``lseek`` to any ``d_off`` it was given and resume there.
"""

from __future__ import annotations

import errno
import os

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import DT_DIR, dirent64_reclen, pack_dirent64
from occlum.vfs.inode import DirEntry
from occlum.vfs.path import Location

__all__ = ["OpenDirectory"]


class OpenDirectory:
    """A directory opened by a program: a location and a resumable position."""

    __slots__ = ("_entries", "location", "pos")

    def __init__(self, location: Location) -> None:
        if not location.inode.is_dir:
            raise SyscallError(errno.ENOTDIR, "not a directory")
        self.location = location
        self.pos = 0
        self._entries: list[DirEntry] | None = None

    def _snapshot(self) -> list[DirEntry]:
        loc = self.location
        entries = [
            DirEntry(b".", loc.inode.ino, DT_DIR),
            DirEntry(b"..", loc.up().inode.ino, DT_DIR),
        ]
        entries.extend(loc.inode.readdir())
        return entries

    def getdents64(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes of ``linux_dirent64`` records; b"" at the end."""
        if self._entries is None or self.pos == 0:
            self._entries = self._snapshot()
        entries = self._entries
        out: list[bytes] = []
        used = 0
        pos = self.pos
        while pos < len(entries):
            e = entries[pos]
            reclen = dirent64_reclen(len(e.name))
            if used + reclen > bufsize:
                if not out:
                    raise SyscallError(errno.EINVAL, "buffer too small for one entry")
                break
            pos += 1
            out.append(pack_dirent64(e.ino, pos, e.dtype, e.name))
            used += reclen
        self.pos = pos
        if not out:
            self._entries = None  # at the end: let the listing go (rewinding re-reads anyway)
        return b"".join(out)

    def seek(self, offset: int, whence: int) -> int:
        """``lseek`` on the directory: SEEK_SET to a cookie or 0, SEEK_CUR relative."""
        if whence == os.SEEK_SET:
            new = offset
        elif whence == os.SEEK_CUR:
            new = self.pos + offset
        else:
            raise SyscallError(errno.EINVAL, "unsupported whence for a directory")
        if new < 0:
            raise SyscallError(errno.EINVAL, "negative directory offset")
        self.pos = new
        return new
