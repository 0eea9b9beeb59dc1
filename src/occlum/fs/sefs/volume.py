"""SEFS, the writable encrypted file system: a ramfs tree that commits itself to sealed objects.

Owns the mounted state of a SEFS volume and its metadata format.  While mounted, the whole tree
lives in RAM exactly as in ramfs (it reuses ramfs's directories, symlinks and special nodes):
names, modes, owners, times, hard links; a regular file's contents are a memfd, the page cache,
so programs read, write and mmap donated descriptors natively.  :meth:`SefsFs.sync` commits:

- each regular file is cut into :data:`CHUNK`-sized chunks (an all-zero chunk is a hole and
  is not stored).  Only files that may have changed are read back — those given a writable
  descriptor since the mount, truncated or created — and of those only chunks whose SHA-256
  differs from the committed one are written again, each run of up to :data:`EXTENT_CHUNKS`
  consecutive changed chunks as one sealed object (an *extent*): big sequential writes make
  few, large host files, a changed page makes one small one.  An extent lives on while any
  chunk still refers to it.  We cannot see native writes (nor stores through a shared
  mapping), so "may have changed" is sticky per mount;
- the metadata (every inode, directory entries, each chunk's object id, tag and plaintext hash)
  is one sealed JSON object, named by the superblock: the root of the volume's tree of tags;
- see :mod:`occlum.fs.sefs.store` for what reaches the host and in which order.

Mounting verifies the superblock and the metadata (any failure: the mount fails with EIO and a
reason).  File contents are loaded, and verified, when a file is first opened or truncated; an
object that does not verify makes *that* open fail with EIO, never return other data, and the
rest of the volume stays usable.

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
from collections import deque
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
from occlum.platform.fdbudget import lasting
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
_IN_FLIGHT = 3  # extents being sealed/written while the next one is read: 12 MiB at most
SEFS_MAGIC = 0x53454653  # "SEFS": statfs f_type
_ZERO = bytes(CHUNK)
_FORMAT = 2  # 1: chunk offsets counted in chunks, no journal
_FORMATS = (1, 2)
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


def _chunk_record(c: Chunk | None, referenced: set[bytes]) -> list[Any] | None:
    if c is None:
        return None
    referenced.add(c.ref.oid)
    return [c.ref.oid.hex(), c.ref.tag.hex(), c.object_len, c.offset, c.phash.hex()]


class _RawJson:
    """Already-serialized JSON text to splice into the metadata document."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class SefsFile(RamFile):
    """A regular file whose memfd is filled from its objects on first use."""

    # (chunks list, size, its JSON, the objects it names): recomputed only when a flush or
    # truncate replaces the chunk list, so a commit costs what changed, not the volume's size
    _encoded: tuple[list[Chunk | None], int, str, frozenset[bytes]] | None = None

    def encoded_chunks(self, referenced: set[bytes]) -> str:
        enc = self._encoded
        if enc is None or enc[0] is not self.chunks or enc[1] != self.size:
            oids: set[bytes] = set()
            records = [_chunk_record(c, oids) for c in self.chunks]
            text = _dumps([self.size, records])
            enc = self._encoded = (self.chunks, self.size, text, frozenset(oids))
        referenced |= enc[3]
        return enc[2]

    fs: SefsFs

    def __init__(
        self,
        fs: SefsFs,
        mode: int,
        uid: int,
        gid: int,
        stored: tuple[int, list[Chunk | None]] | None = None,
    ) -> None:
        # RamFile.__init__ would create the memfd now; a restored file waits until it is used
        RamInode.__init__(self, fs, mode, uid, gid)
        self.writers = False  # a writable descriptor went out: contents may change any time
        self.open_writers = 0  # writable descriptions handed out and not yet closed
        self.watched = False  # the close watch knows this file's memfd
        self.gone = False
        self._loaded_ctime = -1
        self.chunks: list[Chunk | None]
        if stored is None:
            self._adopt(lasting(os.memfd_create(f"sefs:{self.ino}", os.MFD_CLOEXEC)))
            self.size, self.chunks = 0, []
            self.content_dirty = True
        else:
            self.memfd = None
            self.size, self.chunks = stored
            self.content_dirty = False

    def _fd(self) -> int:
        if self.memfd is not None:
            return self.memfd
        if self.gone:
            raise SyscallError(errno.ESTALE, "file contents already freed")
        return self._load()

    def _load(self) -> int:
        fd = lasting(os.memfd_create(f"sefs:{self.ino}", os.MFD_CLOEXEC))
        what = f"contents of inode {self.ino}"
        extent: tuple[bytes, bytes] = (b"", b"")  # (id, plaintext): a file's chunks of one
        try:  # extent are consecutive, so one at a time suffices
            os.ftruncate(fd, self.size)
            for i, c in enumerate(self.chunks):
                if c is None:
                    continue
                if extent[0] != c.ref.oid:
                    extent = (c.ref.oid, self.fs.object_data(c, what))
                off = i * CHUNK
                start = c.offset
                end = start + min(CHUNK, self.size - off)
                if end > len(extent[1]):
                    raise self.fs.store.error(f"{what}: object {c.ref.name} is too short")
                view = memoryview(extent[1])[start:end]
                while view:
                    n = os.pwrite(fd, view, off)
                    view, off = view[n:], off + n
            os.utime(fd, ns=(self.atime_ns, self.mtime_ns))
            self._loaded_ctime = os.fstat(fd).st_ctime_ns
        except BaseException:
            os.close(fd)
            raise
        self._adopt(fd)
        return fd

    def _size(self) -> int:
        if self.memfd is not None:
            return os.fstat(self.memfd).st_size
        return 0 if self.gone else self.size

    def _with_contents(self, st: Stat, host: os.stat_result) -> Stat:
        st.size = host.st_size
        st.blocks = (host.st_size + 511) // 512
        st.mtime_ns = host.st_mtime_ns
        # loading set the memfd's ctime to the load time; only later changes count
        if host.st_ctime_ns != self._loaded_ctime:
            st.ctime_ns = max(self.ctime_ns, host.st_ctime_ns)
        return st

    def _truncate(self, size: int) -> None:
        super()._truncate(size)
        self.content_dirty = True

    def open_host_fd(self, flags: int) -> int:
        fd = super().open_host_fd(flags)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            self.writers = True
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
        return True

    def closed(self, wrote: bool) -> bool:
        last_writer = wrote and self.writer_closed()
        super().closed(wrote)
        return last_writer

    def dropped(self) -> None:
        super().dropped()
        self.gone = True
        self.size, self.chunks = 0, []

    def unload(self) -> None:
        """Close the memfd at unmount (donated descriptors keep their own reference)."""
        self.close_memfd()
        self.gone = True

    def needs_flush(self) -> bool:
        return self.memfd is not None and (self.writers or self.content_dirty)

    def flush(self, commit: _Commit) -> None:
        """Bring ``chunks`` up to date with the memfd, writing changed chunks only: into the
        commit's journal record while it has room, else as extent objects.

        Extents are sealed and written on the commit's writer thread while this thread reads
        and hashes the next ones (both release the GIL), with a few extents in flight at most.
        """
        if self.memfd is None or not (self.writers or self.content_dirty):
            return
        chunks: list[Chunk | None] = []
        run: list[tuple[bytes, bytes]] = []  # changed chunks not yet written: (data, hash)
        in_flight: deque[tuple[int, list[bytes], int, Future[ObjectRef]]] = deque()

        def settle(limit: int) -> None:
            while len(in_flight) > limit:
                first, hashes, length, fut = in_flight.popleft()
                ref = fut.result()
                for slot, h in enumerate(hashes):
                    chunks[first + slot] = Chunk(ref, length, slot * CHUNK, h)

        def write_extent() -> None:
            if not run:
                return
            first = len(chunks) - len(run)
            body = b"".join(data for data, _ in run)
            at = commit.keep_inline(body)
            if at is None:
                fut = commit.writer().submit(commit.put, body)
                in_flight.append((first, [h for _, h in run], len(body), fut))
                settle(_IN_FLIGHT)
            else:
                ref = ObjectRef(commit.record, b"")
                for k, (data, h) in enumerate(run):
                    chunks[first + k] = Chunk(ref, 0, at, h)
                    at += len(data)
            run.clear()

        size = 0
        while data := os.pread(self.memfd, CHUNK, size):
            i = len(chunks)
            old = self.chunks[i] if i < len(self.chunks) else None
            if data == (_ZERO if len(data) == CHUNK else bytes(len(data))):
                write_extent()
                chunks.append(None)
            elif old is not None and old.phash == (h := hashlib.sha256(data).digest()):
                write_extent()
                chunks.append(old)
            else:
                run.append((data, hashlib.sha256(data).digest() if old is None else h))
                chunks.append(None)  # filled in by write_extent
                if len(run) == EXTENT_CHUNKS:
                    write_extent()
            size += len(data)
            if len(data) < CHUNK:
                break
        try:
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
        self.flushed: list[tuple[SefsFile, list[Chunk | None], int]] = []
        # files whose contents did not fit on the host (they keep their committed contents)
        self.unstored: dict[SefsFile, str] = {}

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
            self.volume_id = os.urandom(OBJECT_ID_SIZE)
            self.sync()
            self.store.clear_marker()
            return
        meta = self.store.get(sb.meta, sb.meta_len, "metadata")
        self._meta, self._meta_len = sb.meta, sb.meta_len
        doc = self._parse(meta, "metadata")
        inodes = {rec[0]: rec for rec in doc["inodes"]}
        root, generation, fmt = doc["root"], sb.generation, doc["format"]
        self.volume_id = sb.volume or os.urandom(OBJECT_ID_SIZE)
        if sb.journal:
            journal = Journal(self.store, sb.journal)
            self._journal = journal
            for payload in journal.scan():
                delta = self._parse_record(payload, generation + 1)
                for rec in delta["inodes"]:
                    inodes[rec[0]] = rec
                for ino in delta["gone"]:
                    inodes.pop(ino, None)
                root, generation = delta["root"], delta["g"]
        try:
            self.root = self._build_tree(root, inodes.values(), fmt)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise self.store.error(f"metadata is malformed ({e})")
        self._generation = generation
        self._records = {ino: _dumps(rec) for ino, rec in inodes.items()}
        self._check_rollback()
        if FORMATTING in names:
            self.store.clear_marker()

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

    def _parse(self, meta: bytes, what: str) -> dict[str, Any]:
        try:
            doc = json.loads(meta)
            if doc["format"] not in _FORMATS:
                raise ValueError(f"unknown metadata format {doc['format']}")
            if not isinstance(doc["inodes"], list):
                raise ValueError("no inode list")
            return dict(doc)
        except (ValueError, KeyError, TypeError) as e:
            raise self.store.error(f"{what} is malformed ({e})")

    def _parse_record(self, payload: bytes, generation: int) -> dict[str, Any]:
        """A journal record's metadata delta (its chunk data stays in the journal)."""
        (n,) = _RECORD_HEAD.unpack_from(payload)
        delta = self._parse(payload[_RECORD_HEAD.size : _RECORD_HEAD.size + n], "journal record")
        if delta.get("g") != generation or not isinstance(delta.get("gone"), list):
            raise self.store.error(f"journal record for commit {generation} is malformed")
        return delta

    def _build_tree(self, root_ino: int, recs: Iterable[list[Any]], fmt: int) -> SefsDir:
        inodes: dict[int, RamInode] = {}
        entries: dict[int, list[list[Any]]] = {}
        for ino, mode, uid, gid, rdev, nlink, at, mt, ct, extra, *more in recs:
            kind = mode & S_IFMT
            node: RamInode
            if kind == S_IFDIR:
                node = SefsDir(self, mode, uid, gid)
                entries[ino] = extra
            elif kind == S_IFREG:
                size, raw = extra
                chunks: list[Chunk | None] = []
                for c in raw:
                    if c is None:
                        chunks.append(None)
                        continue
                    oid, tag, object_len, offset, phash = c
                    ref = ObjectRef(bytes.fromhex(oid), bytes.fromhex(tag))
                    if fmt == 1:
                        offset *= CHUNK  # format 1 counted chunks within the extent
                    elif not ref.tag and ref.oid not in self._journal_records():
                        raise ValueError(f"inode {ino}: journal record {oid} is not in the journal")
                    chunks.append(Chunk(ref, object_len, offset, bytes.fromhex(phash)))
                if len(chunks) != -(-size // CHUNK):
                    raise ValueError(f"inode {ino}: {len(chunks)} chunks for {size} bytes")
                node = SefsFile(self, mode, uid, gid, (size, chunks))
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

    def _encode(self, commit: _Commit) -> tuple[dict[int, str], set[bytes]]:
        """Each inode's metadata text as the tree is now (flushing changed file contents into
        ``commit`` first), and the objects those name."""
        records: dict[int, str] = {}
        referenced: set[bytes] = set()
        stack: list[RamInode] = [self.root]
        while stack:
            node = stack.pop()
            if node.ino in records:
                continue  # another hard link to it
            extra: Any = None
            if isinstance(node, SefsFile):
                if node.needs_flush():
                    self._flush(node, commit)
                extra = _RawJson(node.encoded_chunks(referenced))
            elif isinstance(node, RamDir):
                extra = [[n.decode("latin-1"), c.ino] for n, c in node.children.items()]
                stack.extend(reversed(node.children.values()))
            elif isinstance(node, RamSymlink):
                extra = node.target.decode("latin-1")
            st = node.getattr()
            rec = [node.ino, st.mode, st.uid, st.gid, st.rdev, st.nlink]
            rec += [st.atime_ns, st.mtime_ns, st.ctime_ns]
            # extended attributes follow the type's own field, only when there are any (a
            # record without them reads as before)
            xattrs = node.xattrs.items if node.xattrs is not None else None
            tail = (
                "," + _dumps([[n.decode("latin-1"), v.decode("latin-1")] for n, v in
                              sorted(xattrs.items())])
                if xattrs
                else ""
            )  # fmt: skip
            if isinstance(extra, _RawJson):
                # the text json.dumps gives, with each file's chunk list serialized once per
                # change instead of at every commit
                records[node.ino] = _dumps(rec)[:-1] + "," + extra.text + tail + "]"
            else:
                records[node.ino] = _dumps([*rec, extra])[:-1] + tail + "]"
        return records, referenced

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

    def sync(self) -> None:
        """Commit the tree and every changed file atomically; nothing to do if nothing changed.

        A commit appends one record to the journal; when there is no journal yet, or it has
        grown past :data:`JOURNAL_MAX`, the commit is a checkpoint instead.  On return the new
        state is durable.  A host error raises SyscallError (EIO, ENOSPC...) and leaves the
        last committed state on disk.

        A full host file system (see :mod:`.space`) fails no commit by itself: a file whose
        contents do not fit keeps its committed contents and is named by :meth:`unstored`;
        a record that does not fit is made again without file data but at most one chunk
        and written into the space of the reserve, so that deletes and truncates commit.
        """
        if self.closed:
            return
        journal = self._journal
        # on a full host, a checkpoint is tried only when it fits in the reserve's room
        if journal is None or (
            journal.size >= JOURNAL_MAX and (not self.store.short or fits_reserve(self))
        ):
            try:
                self._checkpoint()
                return
            except SyscallError as e:
                if journal is None or not is_space_error(e):
                    raise
                # no room for a checkpoint: the journal grows past its bound until one fits
        for _ in range(2):
            # while the reserve is not whole, file data may not take the room it lacks
            room = self.store.spare() if self.store.short else None
            try:
                self._append(journal, _Commit(self.store, INLINE_MAX, room=room))
            except SyscallError as e:
                if not is_space_error(e):
                    raise
                # a record of what takes no room, written in the reserve's room
                self._append(journal, _Commit(self.store, CHUNK, extents=False))
            if not (self._unstored and self._swept):
                break
            # the commit freed room (deletes) after its files did not fit: once more for them

    def _append(self, journal: Journal, commit: _Commit) -> None:
        """Commit by appending one record with ``commit``'s changes to ``journal``."""
        try:
            records, _ = self._encode(commit)
            changed = [text for ino, text in records.items() if self._records.get(ino) != text]
            gone = [ino for ino in self._records if ino not in records]
            if not changed and not gone and not commit.inline:
                self._committed(commit)
                return
            if self.store.written:  # extent objects: durable, and so must their names be
                self._sync_dir()
            head = _dumps({"format": _FORMAT, "g": self._generation + 1, "root": self.root.ino})
            text = head[:-1] + ',"gone":' + _dumps(gone) + ',"inodes":[' + ",".join(changed)
            raw = (text + "]}").encode()
            payload = _RECORD_HEAD.pack(len(raw)) + raw + commit.inline
            try:
                journal.append(commit.record, payload)
            except SyscallError as e:
                # only a record of what takes no room may use the reserve: one that deletes,
                # or changes inodes without adding any (creating files needs room)
                adds = any(ino not in self._records for ino in records)
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
        self.store.written.clear()
        self._generation += 1
        self._records = records
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
        return failed

    def _sync_dir(self) -> None:
        try:
            self.store.sync_dir()
        except OSError as e:
            raise self.store.error(f"syncing the storage directory: {e.strerror}", e.errno)

    def _checkpoint(self) -> None:
        """Write the whole metadata as one object, with a new empty journal, and switch the
        superblock to them; then remove every object and journal the new state does not name.
        Chunks kept in journal records move into objects first (one per file).

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
            for i, c in enumerate(f.chunks)
            if c is not None and c.in_journal
        )

    def _checkpoint_once(self) -> None:
        commit = _Commit(self.store, 0)
        store = self.store
        journal = Journal(store, os.urandom(OBJECT_ID_SIZE))
        switching = False
        try:
            self._move_out_of_journal(commit)
            records, referenced = self._encode(commit)
            if records == self._records and self._journal is not None and self._journal.empty:
                # nothing to commit; what the committed state does not name is still garbage
                store.sweep(self.committed_names())
                self._committed(commit)
                return
            head = _dumps({"format": _FORMAT, "root": self.root.ino})
            meta = (head[:-1] + ',"inodes":[' + ",".join(records.values()) + "]}").encode()
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
        store.sweep({o.hex() for o in referenced} | {ref.name, journal.name})
        self._committed(commit)
        store.make_reserve(reserve_size(self._meta_len))  # the metadata may have grown

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
        store = self.store
        old = self._journal
        self._journal = journal
        if old is not None:
            old.close()
        self._generation = generation
        self._records = records
        self._meta, self._meta_len = ref, n
        store.written.clear()
        if self.counters is not None:
            self.counters.advance(self.volume_id, generation)

    def _move_out_of_journal(self, commit: _Commit) -> None:
        """Give every file chunk kept in a journal record a place in an object of its own."""
        if self._journal is None or self._journal.empty:
            return
        for f in self._files():
            if any(c and c.in_journal for c in f.chunks):
                commit.flushed.append((f, f.chunks, f.size))  # undone if the commit fails
                self._move_chunks(f)

    def _move_chunks(self, f: SefsFile) -> None:
        what = f"contents of inode {f.ino}"
        parts: list[bytes] = []
        moved: list[tuple[int, Chunk]] = []
        at = 0
        data: tuple[bytes, bytes] = (b"", b"")
        for i, c in enumerate(f.chunks):
            if c is None or not c.in_journal:
                continue
            if data[0] != c.ref.oid:
                data = (c.ref.oid, self.object_data(c, what))
            length = min(CHUNK, f.size - i * CHUNK)
            parts.append(data[1][c.offset : c.offset + length])
            moved.append((i, Chunk(c.ref, 0, at, c.phash)))
            at += length
        body = b"".join(parts)
        ref = self.store.put(body)
        chunks = list(f.chunks)
        for i, c in moved:
            chunks[i] = Chunk(ref, len(body), c.offset, c.phash)
        f.chunks = chunks  # a new list: its metadata text is encoded afresh

    def referenced_objects(self) -> set[bytes]:
        """The ids of the objects the committed state names: the checkpoint's metadata and
        every chunk's extent (what a checkpoint keeps on the host; the rest is garbage)."""
        referenced = {self._meta.oid} if self._meta is not None else set()
        for f in self._files():
            referenced |= {c.ref.oid for c in f.chunks if c is not None and not c.in_journal}
        return referenced

    def _files(self) -> Iterator[SefsFile]:
        """Every regular file in the tree, once (hard links are one file)."""
        seen: set[int] = set()
        stack: list[RamInode] = [self.root]
        while stack:
            node = stack.pop()
            if node.ino in seen:
                continue
            seen.add(node.ino)
            if isinstance(node, RamDir):
                stack.extend(node.children.values())
            elif isinstance(node, SefsFile):
                yield node

    @property
    def generation(self) -> int:
        """How many commits the volume has seen (checkpoints and journal records)."""
        return self._generation

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
            for f in self._files():
                f.unload()
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
