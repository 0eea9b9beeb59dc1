"""One commit's change set: the file data it writes besides metadata.

Changed chunks of small writes go inline into the commit's journal record (up to a budget);
longer runs become extent objects, sealed and written on a helper thread while the next ones
are read.  On a full host the commit may only take the room the reserve does not need.  A
failed commit is undone here: its files go back to their committed chunks and the objects it
wrote are removed.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING

from occlum.fs.sefs.layout import CHUNK, Chunk
from occlum.fs.sefs.space import NoRoom
from occlum.fs.sefs.store import OBJECT_ID_SIZE, PAD, ObjectRef, ObjectStore, padded

if TYPE_CHECKING:
    from occlum.fs.ramfs import RamInode
    from occlum.fs.sefs.files import SefsFile

__all__ = ["IO_WAIT", "STEP", "Commit", "Delta"]

# A commit made in steps (SefsFs.start_commit) yields once a slice of its work has taken this
# long: about 2.5 MiB read, hashed, sealed and written here; the serving loop serves calls
# between slices.
STEP = 0.01
# ... and once it has waited this long for the writer thread (extents are fsync'd one by one)
IO_WAIT = 0.005
# Threads that read and hash a big file's chunks for a flush (files.scan): reading a memfd is
# bound by memory copies, about 6 GB/s per thread here, and two share the memory bandwidth
SCANNERS = min(2, os.cpu_count() or 1)


class Commit:
    """What one commit writes besides metadata: changed chunks kept in its journal record (up
    to ``budget`` bytes: a database page costs one append, not a host file) and, past that,
    extent objects written on a helper thread that lives for this commit only (as do the
    threads that scan big files).  A commit made in slices keeps them between slices: the
    serving loop finishes every commit before it ends, and the supervisor forks only outside
    the loop (to launch a process tree)."""

    def __init__(
        self, store: ObjectStore, budget: int, *, extents: bool = True, room: int | None = None
    ) -> None:
        self.store = store
        self.record = os.urandom(OBJECT_ID_SIZE)
        self.inline = bytearray()
        self.budget = budget
        self.extents = extents  # False: a commit made on a full disk writes no extent
        # bytes of file data the commit may write (None: no limit): on a full host, what the
        # reserve does not need
        self.room = room
        self._room_lock = threading.Lock()  # extents are taken on the writer thread
        self._writer: ThreadPoolExecutor | None = None
        self._scanner: ThreadPoolExecutor | None = None
        # (file, chunks, size) before this commit flushed it: restored if the commit fails
        self.flushed: list[tuple[SefsFile, dict[int, Chunk], int]] = []
        # files whose contents did not fit on the host (they keep their committed contents)
        self.unstored: dict[SefsFile, str] = {}
        # fsync of one file: the only file still open for writing whose contents this commit
        # reads back (None: every one, as sync and syncfs want)
        self.only: SefsFile | None = None

    def _take(self, n: int) -> bool:
        with self._room_lock:
            if self.room is None:
                return True
            if n > self.room:
                return False
            self.room -= n
            return True

    def put(self, body: bytes) -> ObjectRef:
        if not self.extents or not self._take(padded(len(body)) + PAD):
            raise NoRoom(self.store.root)
        return self.store.put(body)

    def keep_inline(self, body: bytes) -> int | None:
        """Where ``body`` (one run of changed chunks) starts in the record's data, or None when
        it goes to an extent: runs longer than a chunk do (they are bulk writes, cheaper as
        host files), and so does whatever does not fit in the budget."""
        if len(body) > CHUNK or len(self.inline) + len(body) > self.budget:
            return None
        if not self._take(len(body)):
            return None  # then it is an extent, which does not fit either
        at = len(self.inline)
        self.inline += body
        return at

    def writer(self) -> Executor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="sefs")
        return self._writer

    def scanner(self) -> Executor:
        """Threads for reading and hashing big files (started at the first big flush, as the
        writer: a commit of small files starts none)."""
        if self._scanner is None:
            self._scanner = ThreadPoolExecutor(SCANNERS, thread_name_prefix="sefs-scan")
        return self._scanner

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        if self._scanner is not None:
            self._scanner.shutdown()
            self._scanner = None

    def undo(self) -> None:
        """The commit failed: its files go back to their committed chunks, still to flush, and
        the objects it wrote, which nothing will name, are removed."""
        for f, chunks, size in reversed(self.flushed):
            f.chunks, f.size = chunks, size
            f.content_dirty = True
            f.fs.may_differ(f)
        self.close()  # extents still being written (a flush stops at its first error)
        self.store.forget(set(self.store.written))


class Delta:
    """What a commit writes of the metadata: the records of the inodes that changed (their
    text), the inodes gone, and the directories among them (their entry changes are moot).
    Built in slices (``SefsFs.encode_ahead``) and finished in the commit's last one;
    ``taken`` keeps the change sets encoded ahead, given back if the commit fails."""

    __slots__ = ("changed", "dead", "gone", "taken")

    def __init__(self) -> None:
        self.changed: dict[int, str] = {}
        self.gone: set[int] = set()
        self.dead: set[int] = set()
        self.taken: list[dict[int, RamInode]] = []
