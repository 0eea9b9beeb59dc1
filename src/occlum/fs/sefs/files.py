"""SEFS files and directories: ramfs nodes whose contents come from, and go to, sealed objects.

A :class:`SefsFile`'s memfd is filled from its chunks when the file is used (verified on the
way), and let go again once its contents are committed and no program holds it
(:class:`.cache.FileCache`).  :meth:`SefsFile.flush` brings the chunk map up to date with the
memfd, writing only chunks whose contents changed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import Future
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFREG, Stat
from occlum.fs.ramfs import RamDir, RamFile, RamInode
from occlum.fs.sefs.commit import IO_WAIT, STEP
from occlum.fs.sefs.layout import (
    CHUNK,
    EXTENT_CHUNKS,
    IN_FLIGHT,
    ZERO,
    Chunk,
    data_chunks,
    dumps,
    write_data,
)
from occlum.fs.sefs.store import ObjectRef
from occlum.platform.fdbudget import opened_elsewhere
from occlum.vfs.inode import Inode

if TYPE_CHECKING:
    from occlum.fs.sefs.commit import Commit
    from occlum.fs.sefs.volume import SefsFs

__all__ = ["SefsDir", "SefsFile"]


class SefsFile(RamFile):
    """A regular file whose memfd is filled from its objects when it is used, and let go again
    (:meth:`SefsFs.evict`) once committed and held by no program."""

    # (chunks, size, their JSON): recomputed only when a flush or truncate replaces the chunk
    # map, so a commit costs what changed, not the volume's size
    _encoded: tuple[dict[int, Chunk], int, str] | None = None

    def encoded_chunks(self) -> str:
        enc = self._encoded
        if enc is None or enc[0] is not self.chunks or enc[1] != self.size:
            records = [
                [i, c.ref.oid.hex(), c.ref.tag.hex(), c.object_len, c.offset, c.phash.hex()]
                for i, c in sorted(self.chunks.items())
            ]
            enc = self._encoded = (self.chunks, self.size, dumps([self.size, records]))
        return enc[2]

    fs: SefsFs

    def __init__(
        self,
        fs: SefsFs,
        mode: int,
        uid: int,
        gid: int,
        stored: tuple[int, dict[int, Chunk]] | None = None,
    ) -> None:
        # RamFile.__init__ would create the memfd now; ours waits until the file is used
        RamInode.__init__(self, fs, mode, uid, gid)
        self.writers = False  # a writable descriptor went out: contents may change any time
        self.open_writers = 0  # writable descriptions handed out and not yet closed
        self.watched = False  # the close watch knows this file's memfd
        self.gone = False
        self._loaded_ctime = -1
        self._blocks = -1  # st_blocks of the memfd when it was let go (-1: never loaded)
        self.memfd = None
        self.content_dirty = False  # the memfd holds changes not yet in ``chunks``
        # index -> chunk, for the chunks that hold data: a missing index is a hole
        self.chunks: dict[int, Chunk]
        self.size, self.chunks = stored if stored is not None else (0, {})

    def _fd(self) -> int:
        fd = self.memfd
        if fd is not None:
            self.fs.page_cache.used(self)
            return fd
        if self.gone:
            raise SyscallError(errno.ESTALE, "file contents already freed")
        return self._load()

    def _load(self) -> int:
        fd = self.fs.page_cache.new_memfd(f"sefs:{self.ino}")
        what = f"contents of inode {self.ino}"
        extent: tuple[bytes, bytes] = (b"", b"")  # (id, plaintext): a file's chunks of one
        try:  # extent are consecutive, so one at a time suffices
            os.ftruncate(fd, self.size)
            for i in sorted(self.chunks):
                c = self.chunks[i]
                if extent[0] != c.ref.oid:
                    extent = (c.ref.oid, self.fs.object_data(c, what))
                off = i * CHUNK
                start = c.offset
                end = start + min(CHUNK, self.size - off)
                if end > len(extent[1]):
                    raise self.fs.store.error(f"{what}: object {c.ref.name} is too short")
                write_data(fd, memoryview(extent[1])[start:end], off)
            os.utime(fd, ns=(self.atime_ns, self.mtime_ns))
            self._loaded_ctime = os.fstat(fd).st_ctime_ns
        except BaseException:
            os.close(fd)
            raise
        self._adopt(fd)
        self.fs.page_cache.loaded(self)
        return fd

    def _size(self) -> int:
        if self.memfd is not None:
            return os.fstat(self.memfd).st_size
        return 0 if self.gone else self.size

    def getattr(self) -> Stat:
        st = super().getattr()
        if self.memfd is None:  # what the memfd took when let go, else about its chunks
            blocks = self._blocks
            if blocks < 0:
                blocks = min(len(self.chunks) * CHUNK, st.size + 511) // 512
            st.blocks = blocks
        return st

    def _with_contents(self, st: Stat, host: os.stat_result) -> Stat:
        st.size = host.st_size
        st.blocks = host.st_blocks  # a sparse file takes what its written pages take
        st.mtime_ns = host.st_mtime_ns
        # loading set the memfd's ctime to the load time; only later changes count
        if host.st_ctime_ns != self._loaded_ctime:
            st.ctime_ns = max(self.ctime_ns, host.st_ctime_ns)
        return st

    def _truncate(self, size: int) -> None:
        super()._truncate(size)
        self.content_dirty = True
        self.fs.may_differ(self)

    def open_host_fd(self, flags: int) -> int:
        fd = super().open_host_fd(flags)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            self.writers = True
            self.fs.may_differ(self)
            watch = self.fs.close_watch
            if watch is not None:
                if not self.watched:
                    assert self.memfd is not None  # super() loaded it
                    watch.watch(self, self.memfd)
                    self.watched = True
                self.open_writers += 1
        return fd

    def writer_closed(self) -> bool:
        """One writable description handed out is gone (see :mod:`.closes`); True when it was
        the last: the contents are flushed once more, then no longer re-read at each commit."""
        if self.open_writers == 0 or self.gone:
            return False  # not one we counted
        self.open_writers -= 1
        if self.open_writers:
            return False
        self.writers = False
        self.content_dirty = True
        self.fs.may_differ(self)
        return True

    def closed(self, wrote: bool) -> bool:
        last_writer = wrote and self.writer_closed()
        super().closed(wrote)
        return last_writer

    def dropped(self) -> None:
        super().dropped()
        self.gone = True
        self.size, self.chunks = 0, {}
        self.fs.unloaded(self)

    def unload(self) -> None:
        """Close the memfd at unmount (donated descriptors keep their own reference)."""
        self.close_memfd()
        self.gone = True

    def needs_flush(self) -> bool:
        return self.memfd is not None and (self.writers or self.content_dirty)

    def evictable(self) -> bool:
        """Whether the memfd may be closed now: its contents are all committed, the file has a
        name (an O_TMPFILE file's contents live only there), and no program holds it."""
        return (
            self.memfd is not None
            and self.nlink > 0
            and not self.writers
            and not self.content_dirty
            and not self.fs.committing  # a commit that fails puts its files back to flush
            and not opened_elsewhere(self.memfd)
        )

    def evict(self) -> None:
        """Close the memfd of an :meth:`evictable` file; the next use loads it again.  What the
        memfd said about the file (times, size) is kept in the inode first."""
        assert self.memfd is not None
        host = os.fstat(self.memfd)
        self.mtime_ns = host.st_mtime_ns
        if host.st_ctime_ns != self._loaded_ctime:
            self.ctime_ns = max(self.ctime_ns, host.st_ctime_ns)
        self.size = host.st_size
        self._blocks = host.st_blocks
        self.close_memfd()
        self._release = None
        self.watched = False  # the watch went with the memfd's inode

    def flush(self, commit: Commit) -> Iterator[None]:
        """Bring ``chunks`` up to date with the memfd, writing changed chunks only: into the
        commit's journal record while it has room, else as extent objects.  Only the memfd's
        data is read (SEEK_DATA/SEEK_HOLE): holes are skipped, and an all-zero chunk is a
        hole too.

        Extents are sealed and written on the commit's writer thread while this thread reads
        and hashes the next ones (both release the GIL), with a few extents in flight at most.

        Yields once a slice of the work has taken :data:`.commit.STEP` seconds, and while it
        waits for the writer thread more than :data:`.commit.IO_WAIT` (a 4 MiB extent's fsync
        takes tens of milliseconds here): the serving loop serves calls meanwhile, the writer
        goes on (it lives as long as the commit; the loop ends no commit unfinished).  Between
        slices the file may be written, truncated or freed: the flush reads its own duplicate
        of the memfd, and a change made meanwhile marks the file to flush again.
        """
        if self.memfd is None or not (self.writers or self.content_dirty):
            return
        fd = os.dup(self.memfd)
        # from here on a truncate marks the file again, for the next commit
        self.content_dirty = False
        committed = self.chunks
        chunks: dict[int, Chunk] = {}
        run: list[tuple[int, bytes, bytes]] = []  # changed chunks not yet written
        # (chunk index, offset in the extent, hash) of each chunk, the extent's length, and
        # the write under way
        in_flight: deque[tuple[list[tuple[int, int, bytes]], int, Future[ObjectRef]]] = deque()
        due = time.monotonic() + STEP

        def settle(limit: int) -> Iterator[None]:
            """Take the written extents until at most ``limit`` are under way."""
            nonlocal due
            while len(in_flight) > limit:
                placed, length, fut = in_flight[0]
                if not fut.done():
                    futures.wait([fut], IO_WAIT)
                    if not fut.done():
                        yield  # calls are served while the write goes on
                        due = time.monotonic() + STEP
                        continue
                in_flight.popleft()
                ref = fut.result()
                for i, at, h in placed:
                    chunks[i] = Chunk(ref, length, at, h)

        def write_extent() -> Iterator[None]:
            if not run:
                return
            placed: list[tuple[int, int, bytes]] = []
            at = 0
            for i, data, h in run:
                placed.append((i, at, h))
                at += len(data)
            body = b"".join(data for _, data, _ in run)
            run.clear()
            start = commit.keep_inline(body)
            if start is None:
                fut = commit.writer().submit(commit.put, body)
                in_flight.append((placed, len(body), fut))
                yield from settle(IN_FLIGHT)
            else:
                ref = ObjectRef(commit.record, b"")
                for i, at, h in placed:
                    chunks[i] = Chunk(ref, 0, start + at, h)

        try:
            size = os.fstat(fd).st_size
            for i in data_chunks(fd, size):
                data = os.pread(fd, min(CHUNK, size - i * CHUNK), i * CHUNK)
                if not data:
                    break  # truncated meanwhile
                if data == (ZERO if len(data) == CHUNK else bytes(len(data))):
                    continue
                h = hashlib.sha256(data).digest()
                old = committed.get(i)
                if old is not None and old.phash == h:
                    chunks[i] = old
                else:
                    run.append((i, data, h))
                    if len(run) == EXTENT_CHUNKS:
                        yield from write_extent()
                if time.monotonic() >= due:
                    yield
                    due = time.monotonic() + STEP
            yield from write_extent()
            yield from settle(0)
        except BaseException:
            self.content_dirty = True  # still to flush
            # on an error, wait for the writes under way before reporting it
            futures.wait([fut for _, _, fut in in_flight])
            raise
        finally:
            os.close(fd)
        if self.gone:
            return  # freed meanwhile: nothing names what was written (a checkpoint sweeps it)
        commit.flushed.append((self, committed, self.size))
        self.chunks, self.size = chunks, size


class SefsDir(RamDir):
    """A ramfs directory whose new files and subdirectories are SEFS ones."""

    fs: SefsFs

    def _new_file(self, mode: int, uid: int, gid: int) -> RamFile:
        return SefsFile(self.fs, S_IFREG | (mode & 0o7777), uid, gid)

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._writable(name)
        d = SefsDir(self.fs, mode, uid, gid)
        self.nlink += 1
        return self._add(name, d)
