"""Open directories: the LibOS side of a directory descriptor and ``getdents64``.

Owns the directory position and the ``linux_dirent64`` stream (with ``.`` and ``..``).  The
listing is taken when reading starts at position 0 (as after open or ``lseek(fd, 0,
SEEK_SET)``): the directory's :class:`~occlum.vfs.dirstream.DirStream`, which a file system
that keeps one only ever appends to, so an entry made during the listing may show at its end
and no entry is seen twice or missed.  ``d_off`` is the position of the next entry in that
listing, so a program may ``lseek`` to any ``d_off`` it was given and resume there.
"""

from __future__ import annotations

import errno
import os

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import DT_DIR
from occlum.vfs.dirstream import FIRST_CHILD, DirStream, pack_record
from occlum.vfs.path import Location

__all__ = ["OpenDirectory"]


class OpenDirectory:
    """A directory opened by a program: a location and a resumable position."""

    __slots__ = ("_dots", "_stream", "location", "pos")

    def __init__(self, location: Location) -> None:
        if not location.inode.is_dir:
            raise SyscallError(errno.ENOTDIR, "not a directory")
        self.location = location
        self.pos = 0
        self._stream: DirStream | None = None
        self._dots: tuple[bytes, ...] = ()  # the records of "." and "..", as the listing started

    def _start(self) -> DirStream:
        loc = self.location
        stream = self._stream = loc.inode.dirents()
        self._dots = (
            pack_record(b".", loc.inode.ino, DT_DIR, 1),
            pack_record(b"..", loc.up().inode.ino, DT_DIR, FIRST_CHILD),
        )
        return stream

    def getdents64(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes of ``linux_dirent64`` records; b"" at the end."""
        stream = self._stream
        if stream is None or self.pos == 0:
            stream = self._start()
        pos = self.pos
        out: list[bytes] = []
        room = bufsize
        for rec in self._dots[pos:FIRST_CHILD]:
            if len(rec) > room:
                break
            out.append(rec)
            room -= len(rec)
            pos += 1
        if pos >= FIRST_CHILD:
            body, k = stream.read(pos - FIRST_CHILD, room)
            if body:
                out.append(body)
                pos = FIRST_CHILD + k
            elif not out and k < len(stream):
                raise SyscallError(errno.EINVAL, "buffer too small for one entry")
        elif not out:
            raise SyscallError(errno.EINVAL, "buffer too small for one entry")
        # kept at the end too: a seekdir back to a telldir value still finds its entry
        self.pos = pos
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
