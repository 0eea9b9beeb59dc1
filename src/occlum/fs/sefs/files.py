"""SEFS files and directories: ramfs nodes whose contents come from, and go to, sealed objects.

A :class:`SefsFile`'s memfd is filled from its chunks when the file is used (verified on the
way), and let go again once its contents are committed and no program holds it
(:class:`.cache.FileCache`).  :meth:`SefsFile.flush` brings the chunk map up to date with the
memfd, writing only chunks whose contents changed.

Finding what changed means reading the whole memfd: programs write it natively (``write``,
stores through a shared mapping) and no kernel interface tells the LibOS where.  So the read
is made as cheap as memory allows: each chunk is compared by a fast non-cryptographic hash
(XXH3-128, :func:`fast_hash`, tens of GB/s) with the one kept in memory for its committed
contents (:attr:`SefsFile.known`), and only a chunk that differs gets its SHA-256 (the
``phash`` of the format) and is written.  Big files are scanned by a few threads
(:func:`scan`: ``preadv`` and both hashes release the GIL) while the serving loop serves calls.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent import futures
from concurrent.futures import Future
from itertools import islice
from typing import TYPE_CHECKING

import xxhash

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

__all__ = ["SefsDir", "SefsFile", "fast_hash", "scan"]

# The seed of the fast hashes, secret and new at each start of the LibOS: the hashes never leave
# memory, and a program cannot choose contents that collide with what it wrote before to make
# a change go unnoticed (XXH3 is no MAC, but it is keyed; 128 bits leave chance collisions out)
_SEED = int.from_bytes(os.urandom(8), "little")
# A flush reads chunks in batches of this many: one batch is scanned inline (a small file
# costs no thread), more go to the commit's scanners, a few batches ahead of the loop
SCAN_BATCH = 32  # 8 MiB
SCANS_IN_FLIGHT = 3


def fast_hash(data: bytes | bytearray | memoryview) -> bytes:
    """XXH3-128 of ``data``, keyed with this run's secret seed: the change detector."""
    return xxhash.xxh3_128_digest(data, _SEED)


_ZERO_HASH = fast_hash(ZERO)

# what :func:`scan` tells of one chunk: (index, SHA-256, fast hash, its contents if they changed
# since the committed chunk, else b"")
Scanned = tuple[int, bytes, bytes, bytes]


def scan(
    fd: int,
    indices: list[int],
    size: int,
    committed: Mapping[int, Chunk],
    known: Mapping[int, tuple[bytes, bytes]],
) -> list[Scanned]:
    """Read the chunks ``indices`` of ``fd`` (a file of ``size`` bytes) and tell which differ
    from ``committed``; all-zero chunks are holes and left out.

    ``known[i]`` is (SHA-256, fast hash) of one contents of chunk ``i``: when the SHA-256 is
    the committed chunk's and the fast hash the one read now, the chunk is unchanged, and
    only the fast hash was computed.  A chunk read is copied only when it changed (its bytes go
    to the commit).  Bytes past the end of a file truncated meanwhile read as zeros.  Runs on
    a scanner thread: it touches only its arguments, which the flush does not change.
    """
    buf = bytearray(CHUNK)
    whole = memoryview(buf)
    out: list[Scanned] = []
    for i in indices:
        length = min(CHUNK, size - i * CHUNK)
        view = whole[:length]
        n = os.preadv(fd, [view], i * CHUNK)
        if n < length:  # truncated meanwhile
            view[n:] = ZERO[: length - n]
        f = fast_hash(view)
        old = committed.get(i)
        k = known.get(i)
        if old is not None and k is not None and k[0] == old.phash and k[1] == f:
            out.append((i, old.phash, f, b""))
            continue
        data = bytes(view)
        zero_hash = _ZERO_HASH if length == CHUNK else fast_hash(ZERO[:length])
        if f == zero_hash and data == ZERO[:length]:
            continue  # all zeros: a hole
        h = hashlib.sha256(data).digest()
        if old is not None and old.phash == h:
            out.append((i, h, f, b""))  # the same contents, whose fast hash was not known
        else:
            out.append((i, h, f, data))
    return out


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
        # index -> (SHA-256, fast hash) of one contents of the chunk, from the last load or
        # flush: it tells an unchanged chunk from its fast hash alone (see :func:`scan`)
        self.known: dict[int, tuple[bytes, bytes]] = {}
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
        # extent are consecutive, so one at a time suffices
        known: dict[int, tuple[bytes, bytes]] = {}
        try:
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
                data = memoryview(extent[1])[start:end]
                write_data(fd, data, off)
                # the first flush after a load finds the unchanged chunks by their fast hash
                known[i] = (c.phash, fast_hash(data))
            os.utime(fd, ns=(self.atime_ns, self.mtime_ns))
            self._loaded_ctime = os.fstat(fd).st_ctime_ns
        except BaseException:
            os.close(fd)
            raise
        self._adopt(fd)
        self.known = known
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
        self.known = {}
        self.fs.unloaded(self)

    def unload(self) -> None:
        """Close the memfd at unmount (donated descriptors keep their own reference)."""
        self.close_memfd()
        self.known = {}
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
        self.known = {}  # the next load computes them again
        self._release = None
        self.watched = False  # the watch went with the memfd's inode

    def flush(self, commit: Commit) -> Iterator[None]:
        """Bring ``chunks`` up to date with the memfd, writing changed chunks only: into the
        commit's journal record while it has room, else as extent objects.  Only the memfd's
        data is read (SEEK_DATA/SEEK_HOLE): holes are skipped, and an all-zero chunk is a
        hole too.

        Chunks are read in batches (:func:`scan`): a chunk whose fast hash is the one known
        for its committed contents costs no SHA-256 and no copy.  A file of more than one
        batch is scanned by the commit's scanner threads, a few batches ahead; extents are
        sealed and written on its writer thread meanwhile (reading, hashing and sealing
        release the GIL), with a few extents in flight at most.

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
        known_before = self.known
        known: dict[int, tuple[bytes, bytes]] = {}
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

        def take(scanned: list[Scanned]) -> Iterator[None]:
            for i, h, f, data in scanned:
                known[i] = (h, f)
                if not data:
                    chunks[i] = committed[i]
                    continue
                run.append((i, data, h))
                if len(run) == EXTENT_CHUNKS:
                    yield from write_extent()

        scans: deque[Future[list[Scanned]]] = deque()  # batches being scanned, in order
        try:
            size = os.fstat(fd).st_size
            indices = data_chunks(fd, size)
            batch = list(islice(indices, SCAN_BATCH))
            if len(batch) < SCAN_BATCH:  # one batch: no thread
                yield from take(scan(fd, batch, size, committed, known_before))
                batch = []
            while batch or scans:
                if batch and len(scans) < SCANS_IN_FLIGHT:
                    scanner = commit.scanner()
                    scans.append(scanner.submit(scan, fd, batch, size, committed, known_before))
                    batch = list(islice(indices, SCAN_BATCH))
                    continue
                if not scans[0].done():
                    futures.wait([scans[0]], IO_WAIT)
                    if not scans[0].done():
                        yield  # calls are served while the scanners read
                        due = time.monotonic() + STEP
                        continue
                yield from take(scans.popleft().result())
                if time.monotonic() >= due:
                    yield
                    due = time.monotonic() + STEP
            yield from write_extent()
            yield from settle(0)
        except BaseException:
            self.content_dirty = True  # still to flush
            # on an error, wait for the reads and writes under way before reporting it
            futures.wait(scans)
            futures.wait([fut for _, _, fut in in_flight])
            raise
        finally:
            os.close(fd)
        if self.gone:
            return  # freed meanwhile: nothing names what was written (a checkpoint sweeps it)
        commit.flushed.append((self, committed, self.size))
        self.chunks, self.size = chunks, size
        self.known = known


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
