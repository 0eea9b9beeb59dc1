"""Last-close detection: inotify ``IN_CLOSE_WRITE``/``IN_CLOSE_NOWRITE`` on page-cache memfds.

Programs close their descriptors natively, so the LibOS does not see a close. The kernel does:
an inotify watch on a memfd (added through ``/proc/self/fd/N``) reports ``IN_CLOSE_WRITE``
each time the last reference to one *writable* open file description of it goes away — after
every descriptor dup'd from it, in every process that inherited it, and every shared mapping
made from it, is gone. Each writable descriptor SEFS hands out is its own open file
description, so a file has no writer left when it has seen as many such events as it handed
out writable descriptors (:meth:`SefsFile.writer_closed`). Then its volume commits (Occlum
commits at the last close too), and later commits no longer re-read the file.

The same watch frees a nameless file (``O_TMPFILE``, of any ramfs, tmpfs or SEFS) when the
last open file description the LibOS handed out for it is gone, as Linux frees it at its last
close: the LibOS's own memfd would otherwise keep it, and a descriptor of the server, for as
long as the instance runs (:meth:`RamFile.closed`).

A lost event (queue overflow) only leaves a file counted as open: it stays re-read at each
commit, or a nameless file stays allocated, as without this watch; never the other way round.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, cast

from occlum.platform import native
from occlum.platform.fdbudget import close_slow

if TYPE_CHECKING:
    from occlum.fs.ramfs import RamFile
    from occlum.fs.sefs.volume import SefsFs

__all__ = ["CloseWatch"]

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, name length


class CloseWatch:
    """One inotify instance watching the memfds of SEFS files open for writing and of
    nameless files."""

    def __init__(self) -> None:
        self.fd = native.inotify_init()
        self._files: dict[int, RamFile] = {}

    def watch(self, f: RamFile, memfd: int, *, every_close: bool = False) -> None:
        """Report the closes of writable descriptions of ``memfd`` (``every_close``: of every
        description) to ``f``; a second call for the same file adds to what the first asked."""
        mask = native.IN_CLOSE_WRITE | (native.IN_CLOSE_NOWRITE if every_close else 0)
        wd = native.inotify_add_watch(
            self.fd, f"/proc/self/fd/{memfd}".encode(), mask | native.IN_MASK_ADD
        )
        self._files[wd] = f

    def read(self) -> set[SefsFs]:
        """The volumes that had a file's last writer close since the last call."""
        closed: set[SefsFs] = set()
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
                elif mask & (native.IN_CLOSE_WRITE | native.IN_CLOSE_NOWRITE):
                    f = self._files.get(wd)
                    if f is not None and f.closed(wrote=bool(mask & native.IN_CLOSE_WRITE)):
                        closed.add(cast("SefsFs", f.fs))  # only a SEFS file asks to commit

    def close(self) -> None:
        if self.fd >= 0:
            close_slow(self.fd)
            self.fd = -1
        self._files.clear()
