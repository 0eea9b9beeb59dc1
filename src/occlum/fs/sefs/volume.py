"""SEFS, the writable encrypted file system: a ramfs tree that commits itself to sealed objects.

Owns the mounted state of a SEFS volume and its metadata format.  While mounted, the whole tree
lives in RAM exactly as in ramfs (it reuses ramfs's directories, symlinks and special nodes):
names, modes, owners, times, hard links; a regular file's contents, while it is used, are a
memfd, the page cache, so programs read, write and mmap donated descriptors natively.
:meth:`SefsFs.sync` commits:

- each regular file is cut into :data:`CHUNK`-sized chunks; only chunks holding data are
  stored and listed (found with SEEK_DATA/SEEK_HOLE, an all-zero chunk is a hole too), so a
  sparse file costs what its data costs.  Only files that may have changed are read back —
  those given a writable descriptor since the mount, truncated or created — and of those only
  chunks whose SHA-256 differs from the committed one are written again, each run of up to
  :data:`EXTENT_CHUNKS` changed chunks as one sealed object (an *extent*): big sequential
  writes make few, large host files, a changed page makes one small one.  An extent lives on
  while any chunk still refers to it.  We cannot see native writes (nor stores through a
  shared mapping), so "may have changed" lasts until the file's last writable description
  is closed (:mod:`.closes`);
- the metadata: a checkpoint is one sealed JSON object (every inode, every directory's
  entries, each chunk's object id, tag and plaintext hash), named by the superblock, the root
  of the volume's tree of tags; a commit between checkpoints appends a journal record with
  the inodes and directory entries that changed (ramfs reports every change through
  :meth:`SefsFs.changed` and :meth:`SefsFs.entry_changed`), so its cost does not grow with
  the volume;
- see :mod:`occlum.fs.sefs.store` for what reaches the host and in which order.

Mounting verifies the superblock, the metadata and the journal (any failure: the mount fails
with EIO and a reason).  File contents are loaded, and verified, when a file is opened or
truncated; an object that does not verify makes *that* open fail with EIO, never return
other data, and the rest of the volume stays usable.  A file whose contents are committed and
that no program holds (:func:`occlum.platform.fdbudget.opened_elsewhere`) may have its memfd
closed again (:meth:`SefsFs.evict`, least recently used first, past :data:`CACHED_FILES`),
so the files a volume holds or a program touches are not bounded by host descriptors.

Not thread-safe: like every LibOS file system, callers serialise operations.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, Stat, StatFs
from occlum.fs.ramfs import RamDir, RamFile, RamFs, RamInode, RamSymlink
from occlum.fs.sefs.closes import CloseWatch
from occlum.fs.sefs.counters import Counters
from occlum.fs.sefs.journal import Journal
from occlum.fs.sefs.space import NoRoom, fits_reserve, unstored_lines
from occlum.fs.sefs.store import (
    FORMATTING,
    OBJECT_ID_SIZE,
    PAD,
    ObjectRef,
    ObjectStore,
    Superblock,
    is_space_error,
    padded,
    reserve_size,
)
from occlum.platform.fdbudget import lasting, opened_elsewhere
from occlum.vfs.inode import Inode
from occlum.vfs.mount import FileSystem
from occlum.vfs.xattr import XattrStore

__all__ = ["CHUNK", "SEFS_MAGIC", "SefsFs"]

# A chunk is the unit of change detection: small, so that a database page write costs little;
# an extent is the unit of host I/O: large, because creating a host file costs about as much as
# writing a megabyte to it (measured on ext4: 256 KiB objects ~250 MiB/s, 4 MiB ~1 GiB/s).
CHUNK = 256 * 1024
EXTENT_CHUNKS = 16
# A commit keeps up to INLINE_MAX bytes of changed chunks in its journal record; past that,
# extents.  The journal is folded into a checkpoint once it holds JOURNAL_MAX bytes.
INLINE_MAX = 1024 * 1024
JOURNAL_MAX = 16 * 1024 * 1024
# chunks moved out of the journal share objects of about this size (a file loaded reads its
# object whole, to verify it: small, so that loading one small file stays cheap)
MOVED_OBJECT = CHUNK
_IN_FLIGHT = 3  # extents being sealed/written while the next one is read: 12 MiB at most
SEFS_MAGIC = 0x53454653  # "SEFS": statfs f_type
_ZERO = bytes(CHUNK)
_ZERO_PAGE = bytes(4096)
# 1: chunk offsets counted in chunks, no journal; 2: every inode in every journal record, a
# directory's whole listing in its record, a file's every chunk (null for a hole) listed;
# 3: journal records hold changed inodes and entries only, chunks listed by index
_FORMAT = 3
_FORMATS = (1, 2, 3)
# Loaded file contents (memfds) kept before the least recently used unheld ones are let go
CACHED_FILES = 1024
_RECORD_HEAD = struct.Struct("<I")  # a journal record: metadata length, metadata, chunk data


_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call


def _dumps(value: Any) -> str:
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


def _data_chunks(fd: int, size: int) -> Iterator[int]:
    """The indices of the chunks of ``fd``'s first ``size`` bytes that hold data, found with
    SEEK_DATA/SEEK_HOLE: a hole (never written, truncated up, punched) costs nothing."""
    pos, last = 0, -1
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data past pos
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        first = max(start // CHUNK, last + 1)
        last = (end - 1) // CHUNK
        yield from range(first, last + 1)
        pos = end


def _write_data(fd: int, data: memoryview, off: int) -> None:
    """Write ``data`` at ``off`` but for its all-zero pages, which stay holes (as they were
    when the chunk was written: SEEK_HOLE answers as before the file was stored)."""
    page = len(_ZERO_PAGE)
    n = len(data)
    pos = 0
    while pos < n:
        while pos < n and data[pos : pos + page] == _ZERO_PAGE[: min(page, n - pos)]:
            pos += page
        end = pos
        while end < n and data[end : end + page] != _ZERO_PAGE[: min(page, n - end)]:
            end += page
        view = data[pos : min(end, n)]
        at = off + pos
        while view:
            k = os.pwrite(fd, view, at)
            view, at = view[k:], at + k
        pos = end


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
            enc = self._encoded = (self.chunks, self.size, _dumps([self.size, records]))
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
            self.fs.used(self)
            return fd
        if self.gone:
            raise SyscallError(errno.ESTALE, "file contents already freed")
        return self._load()

    def _load(self) -> int:
        fd = self.fs.new_memfd(f"sefs:{self.ino}")
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
                _write_data(fd, memoryview(extent[1])[start:end], off)
            os.utime(fd, ns=(self.atime_ns, self.mtime_ns))
            self._loaded_ctime = os.fstat(fd).st_ctime_ns
        except BaseException:
            os.close(fd)
            raise
        self._adopt(fd)
        self.fs.loaded(self)
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

    def flush(self, commit: _Commit) -> None:
        """Bring ``chunks`` up to date with the memfd, writing changed chunks only: into the
        commit's journal record while it has room, else as extent objects.  Only the memfd's
        data is read (SEEK_DATA/SEEK_HOLE): holes are skipped, and an all-zero chunk is a
        hole too.

        Extents are sealed and written on the commit's writer thread while this thread reads
        and hashes the next ones (both release the GIL), with a few extents in flight at most.
        """
        if self.memfd is None or not (self.writers or self.content_dirty):
            return
        fd = self.memfd
        chunks: dict[int, Chunk] = {}
        run: list[tuple[int, bytes, bytes]] = []  # changed chunks not yet written
        # (chunk index, offset in the extent, hash) of each chunk, the extent's length, and
        # the write under way
        in_flight: deque[tuple[list[tuple[int, int, bytes]], int, Future[ObjectRef]]] = deque()

        def settle(limit: int) -> None:
            while len(in_flight) > limit:
                placed, length, fut = in_flight.popleft()
                ref = fut.result()
                for i, at, h in placed:
                    chunks[i] = Chunk(ref, length, at, h)

        def write_extent() -> None:
            if not run:
                return
            placed: list[tuple[int, int, bytes]] = []
            at = 0
            for i, data, h in run:
                placed.append((i, at, h))
                at += len(data)
            body = b"".join(data for _, data, _ in run)
            start = commit.keep_inline(body)
            if start is None:
                fut = commit.writer().submit(commit.put, body)
                in_flight.append((placed, len(body), fut))
                settle(_IN_FLIGHT)
            else:
                ref = ObjectRef(commit.record, b"")
                for i, at, h in placed:
                    chunks[i] = Chunk(ref, 0, start + at, h)
            run.clear()

        size = os.fstat(fd).st_size
        try:
            for i in _data_chunks(fd, size):
                data = os.pread(fd, min(CHUNK, size - i * CHUNK), i * CHUNK)
                if not data:
                    break  # truncated meanwhile
                if data == (_ZERO if len(data) == CHUNK else bytes(len(data))):
                    continue
                h = hashlib.sha256(data).digest()
                old = self.chunks.get(i)
                if old is not None and old.phash == h:
                    chunks[i] = old
                    continue
                run.append((i, data, h))
                if len(run) == EXTENT_CHUNKS:
                    write_extent()
            write_extent()
        finally:
            settle(0)  # on an error, wait for the writes under way before reporting it
        commit.flushed.append((self, self.chunks, self.size))
        self.chunks, self.size = chunks, size
        self.content_dirty = False


class _Commit:
    """What one commit writes besides metadata: changed chunks kept in its journal record (up
    to ``budget`` bytes: a database page costs one append, not a host file) and, past that,
    extent objects written on a helper thread that lives for this commit only (no thread
    outlives a call into SEFS: the supervisor may fork)."""

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

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    def undo(self) -> None:
        """The commit failed: its files go back to their committed chunks, still to flush, and
        the objects it wrote, which nothing will name, are removed."""
        for f, chunks, size in reversed(self.flushed):
            f.chunks, f.size = chunks, size
            f.content_dirty = True
            f.fs.may_differ(f)
        self.close()  # extents still being written (a flush stops at its first error)
        self.store.forget(set(self.store.written))


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


class SefsFs(RamFs):
    """A SEFS volume stored in ``storage_dir`` under ``key`` (16 or 32 bytes).

    An empty or missing directory is formatted (root directory ``mode``/``uid``/``gid``);
    otherwise the volume there is mounted and verified, or SyscallError(EIO, "SEFS <dir>: why").
    ``mac_only`` (Occlum's "MAC" option) authenticates objects without encrypting them.
    ``counters``, the platform's monotonic counters, make a rolled-back copy of the whole
    volume fail to mount (without them only single objects and records are checked).
    Nothing reaches ``storage_dir`` except at :meth:`sync` (and the format); :meth:`close`
    syncs, checkpoints and releases the page cache.
    """

    fstype = "sefs"
    root: SefsDir

    def __init__(
        self,
        storage_dir: str | Path,
        key: bytes,
        *,
        mac_only: bool = False,
        mode: int = 0o755,
        uid: int = 0,
        gid: int = 0,
        counters: Counters | None = None,
    ) -> None:
        # RamFs.__init__ would make a plain ramfs root; ours comes from storage
        FileSystem.__init__(self, readonly=False)
        if len(key) not in (16, 32):
            raise SyscallError(errno.EINVAL, f"SEFS {storage_dir}: the key must be 16 or 32 bytes")
        self.storage_dir = Path(storage_dir)
        self.mac_only = mac_only
        self.inos = itertools.count(1)
        self.closed = False
        self.store = ObjectStore(self.storage_dir, key, mac_only=mac_only)
        self.counters = counters
        # tells when a file's last writable descriptor is closed (None: writers stay sticky)
        self.close_watch: CloseWatch | None = None
        self.volume_id = b""
        self._generation = 0
        self._records: dict[int, str] = {}  # each inode's metadata text as last committed
        self._journal: Journal | None = None  # None: the next commit is a checkpoint
        self._meta: ObjectRef | None = None  # the checkpoint's metadata object
        self._meta_len = 0
        self._upgrade = False  # mounted from an older format: the next commit checkpoints
        # what changed since the last commit: inodes whose record may differ, directory
        # entries (name -> inode number, None: removed) and files whose contents may differ
        self._dirty: dict[int, RamInode] = {}
        self._dirents: dict[int, dict[bytes, int | None]] = {}
        self._unflushed: set[SefsFile] = set()
        # files whose contents are loaded, least recently used first (see evict)
        self._cache: OrderedDict[SefsFile, None] = OrderedDict()
        self._evict_at = CACHED_FILES
        # files whose latest contents the last commit could not store (the host is full)
        self._unstored: dict[SefsFile, str] = {}
        self._swept = 0  # objects the last commit removed at once (a full host)
        # says, once per file, that its contents could not be stored (the LibOS's log)
        self.log_error: Callable[[str], None] | None = None
        try:
            self._mount(mode, uid, gid)
        except BaseException:
            self._close_storage()
            raise
        self.store.make_reserve(reserve_size(self._meta_len))

    # --- what changed ------------------------------------------------------------------------

    def changed(self, inode: RamInode) -> None:
        self._dirty[inode.ino] = inode

    def entry_changed(self, d: RamDir, name: bytes, inode: RamInode | None) -> None:
        self._dirents.setdefault(d.ino, {})[name] = None if inode is None else inode.ino

    def may_differ(self, f: SefsFile) -> None:
        """``f``'s memfd may hold what its chunks do not: the next commit reads it."""
        self._unflushed.add(f)

    # --- the page cache ----------------------------------------------------------------------

    def new_memfd(self, name: str) -> int:
        """A memfd for a file's contents; when the supervisor's descriptors run short, the
        files nobody holds are let go first."""
        try:
            return lasting(os.memfd_create(name, os.MFD_CLOEXEC))
        except SyscallError as e:
            if e.errno != errno.EMFILE:
                raise
        self.evict(0)
        return lasting(os.memfd_create(name, os.MFD_CLOEXEC))

    def loaded(self, f: SefsFile) -> None:
        if f.nlink == 0:
            # an unnamed O_TMPFILE file: its contents live in its memfd only, and the cache
            # must not keep it alive (it is freed with its inode); named later, it joins
            return
        self._cache[f] = None
        if len(self._cache) > self._evict_at:
            self.evict(CACHED_FILES * 3 // 4, keep=f)

    def used(self, f: SefsFile) -> None:
        if f in self._cache:
            self._cache.move_to_end(f)
        else:
            self.loaded(f)

    def unloaded(self, f: SefsFile) -> None:
        self._cache.pop(f, None)
        self._unflushed.discard(f)

    def evict(self, target: int, keep: SefsFile | None = None) -> None:
        """Close the memfds of the least recently used files, down to ``target`` loaded ones:
        only files whose contents are committed and that no program holds (a descriptor, a
        mapping: :func:`.fdbudget.opened_elsewhere`) go; the others stay, as recently used.
        The next pass waits until twice as many files as stayed are loaded, so that a
        program holding many files open does not make every load scan them."""
        cache = self._cache
        for f in list(cache):
            if len(cache) <= target:
                break
            if f is keep:
                continue
            if f.evictable():
                f.evict()
                del cache[f]
            else:
                cache.move_to_end(f)
        self._evict_at = max(CACHED_FILES, 2 * len(cache))

    # --- mount -------------------------------------------------------------------------------

    def _mount(self, mode: int, uid: int, gid: int) -> None:
        sb = self.store.read_superblock()
        names = self.store.listing()
        if sb is None:
            # objects without a superblock are a format that crashed (marker present) or a
            # deleted superblock, which must not silently become an empty volume
            if self.store.object_ids(names) and FORMATTING not in names:
                raise self.store.error("the superblock is missing, but objects remain")
            self.store.set_marker()
            self.root = SefsDir(self, mode, uid, gid)
            self.changed(self.root)
            self.volume_id = os.urandom(OBJECT_ID_SIZE)
            self.sync()
            self.store.clear_marker()
            return
        meta = self.store.get(sb.meta, sb.meta_len, "metadata")
        self._meta, self._meta_len = sb.meta, sb.meta_len
        doc = self._parse(meta, "metadata", None)
        fmt = doc["format"]
        inodes = {rec[0]: rec for rec in doc["inodes"]}
        entries: dict[int, dict[str, int]] = {}
        if fmt >= 3:
            self._apply_dirents(entries, doc)
        root, generation = doc["root"], sb.generation
        self.volume_id = sb.volume or os.urandom(OBJECT_ID_SIZE)
        if sb.journal:
            journal = Journal(self.store, sb.journal)
            self._journal = journal
            for payload in journal.scan():
                delta = self._parse_record(payload, generation + 1, fmt)
                for rec in delta["inodes"]:
                    inodes[rec[0]] = rec
                if fmt >= 3:
                    self._apply_dirents(entries, delta)
                for ino in delta["gone"]:
                    inodes.pop(ino, None)
                    entries.pop(ino, None)
                root, generation = delta["root"], delta["g"]
        try:
            self.root = self._build_tree(root, inodes.values(), fmt, entries)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise self.store.error(f"metadata is malformed ({e})")
        self._generation = generation
        self._records = {ino: _dumps(rec) for ino, rec in inodes.items()}
        if fmt < _FORMAT:  # rewritten in this format by the next commit, a checkpoint
            self._upgrade = True
            self._dirty = {n.ino: n for n in self._inodes()}
        self._check_rollback()
        if FORMATTING in names:
            self.store.clear_marker()

    def _apply_dirents(self, entries: dict[int, dict[str, int]], doc: dict[str, Any]) -> None:
        """Apply a format-3 document's directory entries (a checkpoint's all, a record's
        changes: a null inode number removes the name)."""
        try:
            for dino, changes in doc["dirents"]:
                names = entries.setdefault(dino, {})
                for name, child in changes:
                    if child is None:
                        names.pop(name, None)
                    else:
                        names[name] = child
        except (ValueError, KeyError, TypeError) as e:
            raise self.store.error(f"directory entries are malformed ({e})")

    def _check_rollback(self) -> None:
        if self.counters is None:
            return
        seen = self.counters.read(self.volume_id)
        if self._generation < seen:
            raise self.store.error(
                f"the volume was rolled back: it holds commit {self._generation}, but this "
                f"platform saw commit {seen} (an older copy of the storage directory?)"
            )
        self.counters.advance(self.volume_id, self._generation)

    def _parse(self, meta: bytes, what: str, fmt: int | None) -> dict[str, Any]:
        """A metadata document; ``fmt``, when given, is the format it must have (a journal's
        records have their checkpoint's)."""
        try:
            doc = json.loads(meta)
            if doc["format"] not in _FORMATS or (fmt is not None and doc["format"] != fmt):
                raise ValueError(f"unknown metadata format {doc['format']}")
            if not isinstance(doc["inodes"], list):
                raise ValueError("no inode list")
            if doc["format"] >= 3 and not isinstance(doc["dirents"], list):
                raise ValueError("no directory entries")
            return dict(doc)
        except (ValueError, KeyError, TypeError) as e:
            raise self.store.error(f"{what} is malformed ({e})")

    def _parse_record(self, payload: bytes, generation: int, fmt: int) -> dict[str, Any]:
        """A journal record's metadata delta (its chunk data stays in the journal)."""
        (n,) = _RECORD_HEAD.unpack_from(payload)
        raw = payload[_RECORD_HEAD.size : _RECORD_HEAD.size + n]
        delta = self._parse(raw, "journal record", fmt)
        if delta.get("g") != generation or not isinstance(delta.get("gone"), list):
            raise self.store.error(f"journal record for commit {generation} is malformed")
        return delta

    def _build_tree(
        self,
        root_ino: int,
        recs: Iterable[list[Any]],
        fmt: int,
        dirents: dict[int, dict[str, int]],
    ) -> SefsDir:
        inodes: dict[int, RamInode] = {}
        entries: dict[int, Iterable[tuple[str, int]]] = {}
        for ino, mode, uid, gid, rdev, nlink, at, mt, ct, extra, *more in recs:
            kind = mode & S_IFMT
            node: RamInode
            if kind == S_IFDIR:
                node = SefsDir(self, mode, uid, gid)
                entries[ino] = dirents.get(ino, {}).items() if fmt >= 3 else extra
            elif kind == S_IFREG:
                node = SefsFile(self, mode, uid, gid, self._stored_chunks(ino, extra, fmt))
            elif kind == S_IFLNK:
                node = RamSymlink(self, extra.encode("latin-1"), uid, gid)
            else:
                node = RamInode(self, mode, uid, gid, rdev)
            node.ino, node.mode, node.rdev, node.nlink = ino, mode, rdev, nlink
            node.atime_ns, node.mtime_ns, node.ctime_ns = at, mt, ct
            if more:  # extended attributes, in records that have any
                node.xattrs = XattrStore(
                    {n.encode("latin-1"): v.encode("latin-1") for n, v in more[0]}
                )
            inodes[ino] = node
        for ino, names in entries.items():
            d = inodes[ino]
            assert isinstance(d, SefsDir)
            d.children = {name.encode("latin-1"): inodes[child] for name, child in names}
        root = inodes[root_ino]
        if not isinstance(root, SefsDir):
            raise ValueError("the root is not a directory")
        self.inos = itertools.count(max(inodes) + 1)
        return root

    def _stored_chunks(self, ino: int, extra: Any, fmt: int) -> tuple[int, dict[int, Chunk]]:
        """A file record's size and chunk map: format 3 lists the chunks that hold data by
        index; formats 1 and 2 list every chunk, null for a hole."""
        size, raw = extra
        listed: Iterable[list[Any]]
        count = -(-size // CHUNK)
        if fmt >= 3:
            listed = raw
        elif len(raw) != count:
            raise ValueError(f"inode {ino}: {len(raw)} chunks for {size} bytes")
        else:
            listed = ([i, *c] for i, c in enumerate(raw) if c is not None)
        chunks: dict[int, Chunk] = {}
        for i, oid, tag, object_len, offset, phash in listed:
            if not 0 <= i < count:
                raise ValueError(f"inode {ino}: chunk {i} past its {size} bytes")
            ref = ObjectRef(bytes.fromhex(oid), bytes.fromhex(tag))
            if fmt == 1:
                offset *= CHUNK  # format 1 counted chunks within the extent
            elif not ref.tag and ref.oid not in self._journal_records():
                raise ValueError(f"inode {ino}: journal record {oid} is not in the journal")
            chunks[i] = Chunk(ref, object_len, offset, bytes.fromhex(phash))
        return size, chunks

    def _journal_records(self) -> dict[bytes, Any]:
        return self._journal.records if self._journal is not None else {}

    def object_data(self, c: Chunk, what: str) -> bytes:
        """The plaintext of the object (or journal record data) that holds chunk ``c``."""
        if not c.in_journal:
            return self.store.get(c.ref, c.object_len, what)
        if self._journal is None:
            raise self.store.error(f"{what}: journal record {c.ref.name} is unknown")
        payload = self._journal.read(c.ref.oid, what)
        (n,) = _RECORD_HEAD.unpack_from(payload)
        return payload[_RECORD_HEAD.size + n :]

    # --- commit ------------------------------------------------------------------------------

    @staticmethod
    def _record(node: RamInode) -> str:
        """``node``'s metadata text (format 3: a directory's entries are kept apart)."""
        extra: Any = None
        if isinstance(node, RamSymlink):
            extra = node.target.decode("latin-1")
        st = node.getattr()
        rec = [node.ino, st.mode, st.uid, st.gid, st.rdev, st.nlink]
        rec += [st.atime_ns, st.mtime_ns, st.ctime_ns]
        # extended attributes follow the type's own field, only when there are any (a record
        # without them reads as before)
        xattrs = node.xattrs.items if node.xattrs is not None else None
        tail = (
            "," + _dumps([[n.decode("latin-1"), v.decode("latin-1")] for n, v in
                          sorted(xattrs.items())])
            if xattrs
            else ""
        )  # fmt: skip
        if isinstance(node, SefsFile):
            # the text json.dumps gives, with each file's chunk list serialized once per
            # change instead of at every commit
            return _dumps(rec)[:-1] + "," + node.encoded_chunks() + tail + "]"
        return _dumps([*rec, extra])[:-1] + tail + "]"

    def _delta(self, commit: _Commit) -> tuple[dict[int, str], list[int], list[Any]]:
        """What changed since the last commit, flushing changed file contents into ``commit``
        first: the changed inodes' records, the inodes gone, the directory entries changed.
        Costs what changed: the dirty inodes are those :meth:`changed` was told of."""
        dirty = self._dirty
        for f in list(self._unflushed):
            if f.needs_flush():
                if commit.only is None or f is commit.only or not f.writers:
                    self._flush(f, commit)
                elif f in self._unstored:  # left for a later commit, still unstored
                    commit.unstored[f] = self._unstored[f]
            if not f.gone:
                dirty[f.ino] = f  # its size and times come from the memfd
        changed: dict[int, str] = {}
        gone: list[int] = []
        dead: set[int] = set()
        for ino, node in dirty.items():
            if node.nlink == 0 or (isinstance(node, SefsFile) and node.gone):
                dead.add(ino)
                if ino in self._records:
                    gone.append(ino)
                continue
            text = self._record(node)
            if self._records.get(ino) != text:
                changed[ino] = text
        dirents = [
            [dino, [[n.decode("latin-1"), c] for n, c in names.items()]]
            for dino, names in self._dirents.items()
            if dino not in dead
        ]
        return changed, gone, dirents

    def _flush(self, f: SefsFile, commit: _Commit) -> None:
        """Flush ``f`` into ``commit``; if its contents do not fit on the host, the file keeps
        its committed contents (and stays to flush), the rest of the commit goes on."""
        if not commit.extents and f.memfd is not None and f._size() >= f.size:
            # a record made on a full disk takes data only of files that shrink (a truncate)
            commit.unstored[f] = self._unstored.get(f) or (
                f"SEFS {self.storage_dir}: inode {f.ino} does not fit (no room on the host)"
            )
            return
        before = set(self.store.written)
        try:
            f.flush(commit)
        except SyscallError as e:
            if not is_space_error(e):
                raise
            commit.close()  # extents still being written (a flush stops at its first error)
            self.store.forget(self.store.written - before)
            # the store's reasons start with the volume, said once in the line
            why = e.why.removeprefix(f"SEFS {self.store.root}: ")
            commit.unstored[f] = f"SEFS {self.storage_dir}: inode {f.ino} does not fit ({why})"

    def _advance(self, changed: dict[int, str], gone: list[int]) -> None:
        """The changes a commit wrote are the committed state now."""
        self._records.update(changed)
        for ino in gone:
            del self._records[ino]
        self._dirty = {}
        self._dirents = {}
        self._unflushed = {f for f in self._unflushed if f.needs_flush()}
        self.store.written.clear()

    def sync_file(self, inode: Inode) -> None:
        """fsync of ``inode``: commit as :meth:`sync` does, but of the other files still open
        for writing leave the contents as last committed. Those are read back whole to find
        what changed (a database's WAL segment and the relation files its server keeps
        open), which made every fsync cost as much as reading all of them; Linux makes only
        the file itself durable. They are committed by their own fsync, their last close,
        sync, syncfs and the periodic write-back."""
        self._sync(inode if isinstance(inode, SefsFile) else None)

    def sync(self) -> None:
        self._sync(None)

    def _sync(self, only: SefsFile | None) -> None:
        """Commit what changed since the last commit atomically; nothing to do if nothing did.

        A commit appends one record to the journal, holding the changed inodes and directory
        entries and the changed chunks of small writes.  When there is no journal yet, or it
        has grown past :data:`JOURNAL_MAX` and four times the checkpoint's metadata (so that a
        checkpoint's cost, which grows with the volume, is spread over as many commits), the
        commit is a checkpoint instead.  On return the new state is durable.  A host error
        raises SyscallError (EIO, ENOSPC...) and leaves the last committed state on disk.

        A full host file system (see :mod:`.space`) fails no commit by itself: a file whose
        contents do not fit keeps its committed contents and is named by :meth:`unstored`;
        a record that does not fit is made again without file data but at most one chunk
        and written into the space of the reserve, so that deletes and truncates commit.
        """
        if self.closed:
            return
        journal = self._journal
        # on a full host, a checkpoint is tried only when it fits in the reserve's room
        if (
            journal is None
            or self._upgrade
            or (
                journal.size >= max(JOURNAL_MAX, 4 * self._meta_len)
                and (not self.store.short or fits_reserve(self))
            )
        ):
            try:
                self._checkpoint()
                return
            except SyscallError as e:
                if journal is None or self._upgrade or not is_space_error(e):
                    raise
                # no room for a checkpoint: the journal grows past its bound until one fits
        for _ in range(2):
            # while the reserve is not whole, file data may not take the room it lacks
            room = self.store.spare() if self.store.short else None
            commit = _Commit(self.store, INLINE_MAX, room=room)
            commit.only = only
            try:
                self._append(journal, commit)
            except SyscallError as e:
                if not is_space_error(e):
                    raise
                # a record of what takes no room, written in the reserve's room
                commit = _Commit(self.store, CHUNK, extents=False)
                commit.only = only
                self._append(journal, commit)
            if not (self._unstored and self._swept):
                break
            # the commit freed room (deletes) after its files did not fit: once more for them
        self._evict_after_commit()

    def _append(self, journal: Journal, commit: _Commit) -> None:
        """Commit by appending one record with ``commit``'s changes to ``journal``."""
        try:
            changed, gone, dirents = self._delta(commit)
            if not changed and not gone and not dirents and not commit.inline:
                self._advance(changed, gone)
                self._committed(commit)
                return
            if self.store.written:  # extent objects: durable, and so must their names be
                self._sync_dir()
            head = _dumps({"format": _FORMAT, "g": self._generation + 1, "root": self.root.ino})
            text = (
                head[:-1] + ',"gone":' + _dumps(gone) + ',"dirents":' + _dumps(dirents)
                + ',"inodes":[' + ",".join(changed.values()) + "]}"
            )  # fmt: skip
            raw = text.encode()
            payload = _RECORD_HEAD.pack(len(raw)) + raw + commit.inline
            try:
                journal.append(commit.record, payload)
            except SyscallError as e:
                # only a record of what takes no room may use the reserve: one that deletes,
                # or changes inodes without adding any (creating files needs room)
                adds = any(ino not in self._records for ino in changed)
                if commit.extents or not is_space_error(e) or (adds and not gone):
                    raise
                if not self.store.release_reserve(len(payload) + PAD):
                    raise
                journal.append(commit.record, payload)
        except BaseException:
            commit.undo()
            raise
        finally:
            commit.close()
        self._advance(changed, gone)
        self._generation += 1
        if self.counters is not None:
            self.counters.advance(self.volume_id, self._generation)
        self._committed(commit)

    def _committed(self, commit: _Commit) -> None:
        """After a commit: say which files it could not store (once each), and on a (nearly)
        full host remove at once the objects the committed state no longer names, then take
        the reserve back."""
        for f, why in commit.unstored.items():
            if f not in self._unstored and self.log_error is not None:
                self.log_error(
                    f"{why}: its latest {f._size()} bytes stay in memory and are stored when "
                    "there is room; fsync of it returns ENOSPC until then"
                )
        self._unstored = commit.unstored
        self._swept = 0
        if self.store.nearly_full():
            self._swept = self.store.sweep(self.committed_names())
            self.store.make_reserve(reserve_size(self._meta_len))

    def committed_names(self) -> set[str]:
        """The names of the files the committed state needs: its objects and journal."""
        keep = {o.hex() for o in self.referenced_objects()}
        if self._journal is not None:
            keep.add(self._journal.name)
        return keep

    def unstored(self, inode: Inode | None = None) -> list[str]:
        return unstored_lines(self._unstored, inode)

    def compact(self) -> None:
        """Commit, then checkpoint even if nothing changed: the journal is folded into the
        metadata and every object and journal the state does not name is removed."""
        self.sync()
        self._checkpoint()

    def verify(self) -> list[str]:
        """Read and verify every file's contents, one file at a time; what failed, by inode."""
        failed: list[str] = []
        for f in list(self._files()):
            if f.memfd is not None:
                continue  # in use: verified when it was loaded
            try:
                f._load()
            except SyscallError as e:
                failed.append(e.why)
            finally:
                f.close_memfd()
                self._cache.pop(f, None)
        return failed

    def _evict_after_commit(self) -> None:
        if len(self._cache) > self._evict_at:
            self.evict(CACHED_FILES * 3 // 4)

    def _sync_dir(self) -> None:
        try:
            self.store.sync_dir()
        except OSError as e:
            raise self.store.error(f"syncing the storage directory: {e.strerror}", e.errno)

    def _checkpoint(self) -> None:
        """Write the whole metadata as one object, with a new empty journal, and switch the
        superblock to them; then remove every object and journal the new state does not name.
        Chunks kept in journal records move into objects first (shared by many files).

        On a full host, a checkpoint that moves no file data out of the journal is made again
        in the space of the reserve (its metadata object is what the reserve is sized for).
        """
        try:
            self._checkpoint_once()
        except SyscallError as e:
            if not is_space_error(e) or not fits_reserve(self) or not self.store.release_reserve():
                raise
            self._checkpoint_once()

    def journal_data(self) -> int:
        """How many bytes of file contents the journal holds (a checkpoint moves them out)."""
        if self._journal is None or self._journal.empty:
            return 0
        return sum(
            min(CHUNK, f.size - i * CHUNK)
            for f in self._files()
            for i, c in f.chunks.items()
            if c.in_journal
        )

    def _checkpoint_once(self) -> None:
        commit = _Commit(self.store, 0)
        store = self.store
        journal = Journal(store, os.urandom(OBJECT_ID_SIZE))
        switching = False
        try:
            self._move_out_of_journal(commit)
            changed, gone, dirents = self._delta(commit)
            unchanged = not changed and not gone and not dirents
            if (
                unchanged
                and not self._upgrade
                and self._journal is not None
                and self._journal.empty
            ):
                # nothing to commit; what the committed state does not name is still garbage
                self._advance(changed, gone)
                store.sweep(self.committed_names())
                self._committed(commit)
                return
            records = dict(self._records)
            records.update(changed)
            for ino in gone:
                del records[ino]
            head = _dumps({"format": _FORMAT, "root": self.root.ino})
            meta = (
                head[:-1] + ',"dirents":' + _dumps(self._all_dirents())
                + ',"inodes":[' + ",".join(records.values()) + "]}"
            ).encode()  # fmt: skip
            ref = store.put(meta)
            journal.create()
            self._sync_dir()
            generation = self._generation + 1
            switching = True  # from here on the new superblock may be in place
            store.write_superblock(
                Superblock(generation, ref, len(meta), journal.jid, self.volume_id)
            )
        except BaseException:
            if switching and self._superblock_names(ref):
                # the rename happened, only its fsync failed: the new state is the volume's
                # now (sweeping with the old one would remove the metadata it names)
                commit.close()
                self._switch(journal, generation, records, ref, len(meta))
                raise
            commit.undo()
            journal.close()
            with contextlib.suppress(OSError):
                os.unlink(journal.name, dir_fd=store.dirfd)
            raise
        finally:
            commit.close()
        self._switch(journal, generation, records, ref, len(meta))
        store.sweep(self.committed_names())
        self._committed(commit)
        store.make_reserve(reserve_size(self._meta_len))  # the metadata may have grown
        self._evict_after_commit()

    def _superblock_names(self, ref: ObjectRef) -> bool:
        try:
            sb = self.store.read_superblock()
        except SyscallError:
            return False
        return sb is not None and sb.meta == ref

    def _switch(
        self, journal: Journal, generation: int, records: dict[int, str], ref: ObjectRef, n: int
    ) -> None:
        """The superblock names ``ref`` and ``journal``: the volume's state follows."""
        old = self._journal
        self._journal = journal
        if old is not None:
            old.close()
        self._generation = generation
        self._records = {}
        self._advance(records, [])
        self._upgrade = False
        self._meta, self._meta_len = ref, n
        if self.counters is not None:
            self.counters.advance(self.volume_id, generation)

    def _all_dirents(self) -> list[Any]:
        return [
            [d.ino, [[n.decode("latin-1"), c.ino] for n, c in d.children.items()]]
            for d in self._inodes()
            if isinstance(d, RamDir)
        ]

    def _move_out_of_journal(self, commit: _Commit) -> None:
        """Give every file chunk kept in a journal record a place in an extent object.  The
        chunks of many files share an object (up to :data:`MOVED_OBJECT` bytes): thousands of
        small files written one commit each cost a few host files here, not one each."""
        if self._journal is None or self._journal.empty:
            return
        moved: dict[SefsFile, dict[int, Chunk]] = {}
        batch: list[tuple[SefsFile, int, int, bytes]] = []  # file, index, offset, hash
        parts: list[bytes] = []
        at = 0
        record: tuple[bytes, bytes] = (b"", b"")  # (id, data) of the last record read

        def put() -> None:
            nonlocal at
            if not parts:
                return
            body = b"".join(parts)
            ref = self.store.put(body)
            for f, i, offset, phash in batch:
                moved.setdefault(f, dict(f.chunks))[i] = Chunk(ref, len(body), offset, phash)
            batch.clear()
            parts.clear()
            at = 0

        for f in self._files():
            for i in sorted(f.chunks):
                c = f.chunks[i]
                if not c.in_journal:
                    continue
                if record[0] != c.ref.oid:
                    record = (c.ref.oid, self.object_data(c, f"contents of inode {f.ino}"))
                length = min(CHUNK, f.size - i * CHUNK)
                parts.append(record[1][c.offset : c.offset + length])
                batch.append((f, i, at, c.phash))
                at += length
                if at >= MOVED_OBJECT:
                    put()
        put()
        # only once every object is written: a failure leaves the files as they were
        for f, chunks in moved.items():
            commit.flushed.append((f, f.chunks, f.size))  # undone if the commit fails
            f.chunks = chunks  # a new map: its metadata text is encoded afresh
            self.changed(f)

    def referenced_objects(self) -> set[bytes]:
        """The ids of the objects the committed state names: the checkpoint's metadata and
        every chunk's extent (what a checkpoint keeps on the host; the rest is garbage)."""
        referenced = {self._meta.oid} if self._meta is not None else set()
        for f in self._files():
            referenced |= {c.ref.oid for c in f.chunks.values() if not c.in_journal}
        return referenced

    def _inodes(self) -> Iterator[RamInode]:
        """Every inode in the tree, once (hard links are one inode)."""
        seen: set[int] = set()
        stack: list[RamInode] = [self.root]
        while stack:
            node = stack.pop()
            if node.ino in seen:
                continue
            seen.add(node.ino)
            if isinstance(node, RamDir):
                stack.extend(node.children.values())
            yield node

    def _files(self) -> Iterator[SefsFile]:
        """Every regular file in the tree, once."""
        return (n for n in self._inodes() if isinstance(n, SefsFile))

    @property
    def generation(self) -> int:
        """How many commits the volume has seen (checkpoints and journal records)."""
        return self._generation

    @property
    def loaded_files(self) -> int:
        """How many files' contents are in memfds now."""
        return len(self._cache)

    def close(self, *, commit: bool = True) -> None:
        """Unmount: commit and checkpoint, then free the page cache and the storage directory
        descriptor.  ``commit=False`` drops everything since the last sync, as a crash would.
        """
        if self.closed:
            return
        try:
            if commit:
                self.sync()
                if self._journal is not None and not self._journal.empty:
                    self._checkpoint()
        finally:
            self.closed = True
            for f in list(self._cache):
                f.unload()
            for f in self._unflushed:  # unnamed files are in no cache list
                f.unload()
            self._cache.clear()
            self._close_storage()

    def _close_storage(self) -> None:
        if self._journal is not None:
            self._journal.close()
        self.store.close()

    def statfs(self) -> StatFs:
        try:
            v = os.statvfs(self.storage_dir)
        except OSError:
            return StatFs(f_type=SEFS_MAGIC, namelen=255)
        return StatFs.of_host(SEFS_MAGIC, v)
