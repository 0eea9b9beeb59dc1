"""Last-close detection for SEFS files: inotify ``IN_CLOSE_WRITE`` on their memfds.

Programs close their descriptors natively, so the LibOS does not see a close. The kernel does:
an inotify watch on a memfd (added through ``/proc/self/fd/N``) reports ``IN_CLOSE_WRITE``
each time the last reference to one *writable* open file description of it goes away — after
every descriptor dup'd from it, in every process that inherited it, and every shared mapping
made from it, is gone. Each writable descriptor SEFS hands out is its own open file
description, so a file has no writer left when it has seen as many such events as it handed
out writable descriptors (:meth:`SefsFile.writer_closed`). Then its volume commits (Occlum
commits at the last close too), and later commits no longer re-read the file.

A lost event (queue overflow) only leaves a file counted as open for writing: it stays
re-read at each commit, as without this watch; never the other way round.
"""

from __future__ import annotations

import os
import struct
from typing import Protocol

from occlum.platform import native

__all__ = ["CloseWatch"]


class Volume(Protocol):
    """What the watcher's user does with a volume that had a last writer close: commit it."""

    closed: bool
    fstype: str

    def sync(self) -> None: ...


class Watched(Protocol):
    """A file of a volume (``SefsFile``): it counts its writable descriptors' closes."""

    @property
    def fs(self) -> Volume: ...

    def writer_closed(self) -> bool: ...

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, name length


class CloseWatch:
    """One inotify instance watching the memfds of SEFS files open for writing."""

    def __init__(self) -> None:
        self.fd = native.inotify_init()
        self._files: dict[int, Watched] = {}

    def watch(self, f: Watched, memfd: int) -> None:
        wd = native.inotify_add_watch(
            self.fd, f"/proc/self/fd/{memfd}".encode(), native.IN_CLOSE_WRITE
        )
        self._files[wd] = f

    def read(self) -> set[Volume]:
        """The volumes that had a file's last writer close since the last call."""
        closed: set[Volume] = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return closed
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                if mask & native.IN_IGNORED:  # the memfd is gone
                    self._files.pop(wd, None)
                elif mask & native.IN_CLOSE_WRITE:
                    f = self._files.get(wd)
                    if f is not None and f.writer_closed():
                        closed.add(f.fs)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._files.clear()
