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

import errno
import hashlib
import itertools
import json
import os
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, Stat, StatFs
from occlum.fs.ramfs import RamDir, RamFile, RamFs, RamInode, RamSymlink
from occlum.fs.sefs.store import FORMATTING, ObjectRef, ObjectStore, Superblock
from occlum.vfs.inode import Inode
from occlum.vfs.mount import FileSystem

__all__ = ["CHUNK", "SEFS_MAGIC", "SefsFs"]

# A chunk is the unit of change detection: small, so that a database page write costs little;
# an extent is the unit of host I/O: large, because creating a host file costs about as much as
# writing a megabyte to it (measured on ext4: 256 KiB objects ~250 MiB/s, 4 MiB ~1 GiB/s).
CHUNK = 256 * 1024
EXTENT_CHUNKS = 16
_IN_FLIGHT = 3  # extents being sealed/written while the next one is read: 12 MiB at most
SEFS_MAGIC = 0x53454653  # "SEFS": statfs f_type
_ZERO = bytes(CHUNK)
_FORMAT = 1


@dataclass(slots=True, frozen=True)
class Chunk:
    """One committed chunk: slot ``slot`` of the extent object ``ref`` (``object_len`` bytes
    of plaintext), and the SHA-256 of the chunk's plaintext to spot changes."""

    ref: ObjectRef
    object_len: int
    slot: int
    phash: bytes


def _chunk_record(c: Chunk | None, referenced: set[bytes]) -> list[Any] | None:
    if c is None:
        return None
    referenced.add(c.ref.oid)
    return [c.ref.oid.hex(), c.ref.tag.hex(), c.object_len, c.slot, c.phash.hex()]


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
            text = json.dumps([self.size, records], separators=(",", ":"))
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
        self.gone = False
        self._loaded_ctime = -1
        self.chunks: list[Chunk | None]
        if stored is None:
            self.memfd = os.memfd_create(f"sefs:{self.ino}", os.MFD_CLOEXEC)
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
        fd = os.memfd_create(f"sefs:{self.ino}", os.MFD_CLOEXEC)
        what = f"contents of inode {self.ino}"
        extent: tuple[bytes, bytes] = (b"", b"")  # (id, plaintext): a file's chunks of one
        try:  # extent are consecutive, so one at a time suffices
            os.ftruncate(fd, self.size)
            for i, c in enumerate(self.chunks):
                if c is None:
                    continue
                if extent[0] != c.ref.oid:
                    extent = (c.ref.oid, self.fs.store.get(c.ref, c.object_len, what))
                off = i * CHUNK
                start = c.slot * CHUNK
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
        self.memfd = fd
        return fd

    def _size(self) -> int:
        if self.memfd is not None:
            return os.fstat(self.memfd).st_size
        return 0 if self.gone else self.size

    def getattr(self) -> Stat:
        st = RamInode.getattr(self)
        if self.memfd is not None:
            host = os.fstat(self.memfd)
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
        return fd

    def dropped(self) -> None:
        super().dropped()
        self.gone = True
        self.size, self.chunks = 0, []

    def unload(self) -> None:
        """Close the memfd at unmount (donated descriptors keep their own reference)."""
        if self.memfd is not None:
            os.close(self.memfd)
            self.memfd = None
        self.gone = True

    def needs_flush(self) -> bool:
        return self.memfd is not None and (self.writers or self.content_dirty)

    def flush(self, store: ObjectStore, writer: Executor) -> None:
        """Bring ``chunks`` up to date with the memfd, writing objects for changed chunks only.

        Extents are sealed and written on ``writer`` while this thread reads and hashes the
        next ones (both release the GIL), with a few extents in flight at most.
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
                    chunks[first + slot] = Chunk(ref, length, slot, h)

        def write_extent() -> None:
            if run:
                body = b"".join(data for data, _ in run)
                fut = writer.submit(store.put, body)
                in_flight.append((len(chunks) - len(run), [h for _, h in run], len(body), fut))
                run.clear()
                settle(_IN_FLIGHT)

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
        self.chunks, self.size = chunks, size
        self.content_dirty = False


class SefsDir(RamDir):
    """A ramfs directory whose new files and subdirectories are SEFS ones."""

    fs: SefsFs

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._writable(name)
        return self._add(name, SefsFile(self.fs, S_IFREG | (mode & 0o7777), uid, gid))

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
    Nothing reaches ``storage_dir`` except at :meth:`sync` (and the format); :meth:`close`
    syncs and releases the page cache.
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
        self._generation = 0
        self._committed_meta = b""
        self._committed: set[bytes] = set()  # object ids the on-disk superblock names
        self._garbage: set[bytes] = set()  # objects no state names (left by a crash)
        try:
            self._mount(mode, uid, gid)
        except BaseException:
            self.store.close()
            raise

    # --- mount -------------------------------------------------------------------------------

    def _mount(self, mode: int, uid: int, gid: int) -> None:
        sb = self.store.read_superblock()
        names = self.store.listing()
        present = self.store.object_ids(names)
        if sb is None:
            # objects without a superblock are a format that crashed (marker present) or a
            # deleted superblock, which must not silently become an empty volume
            if present and FORMATTING not in names:
                raise self.store.error("the superblock is missing, but objects remain")
            self.store.set_marker()
            self.root = SefsDir(self, mode, uid, gid)
            self._garbage = present
            self.sync()
            self.store.clear_marker()
            return
        meta = self.store.get(sb.meta, sb.meta_len, "metadata")
        self.root, referenced = self._decode(meta)
        self._generation = sb.generation
        self._committed_meta = meta
        self._committed = referenced | {sb.meta.oid}
        self._garbage = present - self._committed
        if FORMATTING in names:
            self.store.clear_marker()

    def _decode(self, meta: bytes) -> tuple[SefsDir, set[bytes]]:
        try:
            doc = json.loads(meta)
            if doc["format"] != _FORMAT:
                raise ValueError(f"unknown metadata format {doc['format']}")
            return self._build_tree(doc)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise self.store.error(f"metadata is malformed ({e})")

    def _build_tree(self, doc: dict[str, Any]) -> tuple[SefsDir, set[bytes]]:
        inodes: dict[int, RamInode] = {}
        entries: dict[int, list[list[Any]]] = {}
        referenced: set[bytes] = set()
        for ino, mode, uid, gid, rdev, nlink, at, mt, ct, extra in doc["inodes"]:
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
                    oid, tag, object_len, slot, phash = c
                    ref = ObjectRef(bytes.fromhex(oid), bytes.fromhex(tag))
                    referenced.add(ref.oid)
                    chunks.append(Chunk(ref, object_len, slot, bytes.fromhex(phash)))
                if len(chunks) != -(-size // CHUNK):
                    raise ValueError(f"inode {ino}: {len(chunks)} chunks for {size} bytes")
                node = SefsFile(self, mode, uid, gid, (size, chunks))
            elif kind == S_IFLNK:
                node = RamSymlink(self, extra.encode("latin-1"), uid, gid)
            else:
                node = RamInode(self, mode, uid, gid, rdev)
            node.ino, node.mode, node.rdev, node.nlink = ino, mode, rdev, nlink
            node.atime_ns, node.mtime_ns, node.ctime_ns = at, mt, ct
            inodes[ino] = node
        for ino, names in entries.items():
            d = inodes[ino]
            assert isinstance(d, SefsDir)
            d.children = {name.encode("latin-1"): inodes[child] for name, child in names}
        root = inodes[doc["root"]]
        if not isinstance(root, SefsDir):
            raise ValueError("the root is not a directory")
        self.inos = itertools.count(max(inodes) + 1)
        return root, referenced

    # --- commit ------------------------------------------------------------------------------

    def _encode(self) -> tuple[bytes, set[bytes]]:
        """The metadata of the tree as it is now (flushing file contents first), and its objects."""
        records: list[list[Any]] = []
        referenced: set[bytes] = set()
        seen: set[int] = set()
        stack: list[RamInode] = [self.root]
        # the writer thread lives for one sync only: no thread outlives a call into SEFS (the
        # supervisor may fork)
        writer: ThreadPoolExecutor | None = None
        try:
            while stack:
                node = stack.pop()
                if node.ino in seen:
                    continue  # another hard link to it
                seen.add(node.ino)
                extra: Any = None
                if isinstance(node, SefsFile):
                    if node.needs_flush():
                        writer = writer or ThreadPoolExecutor(1, thread_name_prefix="sefs")
                        node.flush(self.store, writer)
                    extra = _RawJson(node.encoded_chunks(referenced))
                elif isinstance(node, RamDir):
                    extra = [[n.decode("latin-1"), c.ino] for n, c in node.children.items()]
                    stack.extend(reversed(node.children.values()))
                elif isinstance(node, RamSymlink):
                    extra = node.target.decode("latin-1")
                st = node.getattr()
                times = [st.atime_ns, st.mtime_ns, st.ctime_ns]
                records.append(
                    [node.ino, st.mode, st.uid, st.gid, st.rdev, st.nlink, *times, extra]
                )
        finally:
            if writer is not None:
                writer.shutdown()
        # the same text json.dumps(doc, separators=(",", ":")) gives, with each file's chunk
        # list serialized once per change instead of at every commit
        head = json.dumps({"format": _FORMAT, "root": self.root.ino}, separators=(",", ":"))
        parts = []
        for rec in records:
            extra = rec[-1]
            if isinstance(extra, _RawJson):
                parts.append(
                    json.dumps(rec[:-1], separators=(",", ":"))[:-1] + "," + extra.text + "]"
                )
            else:
                parts.append(json.dumps(rec, separators=(",", ":")))
        return (head[:-1] + ',"inodes":[' + ",".join(parts) + "]}").encode(), referenced

    def sync(self) -> None:
        """Commit the tree and every changed file atomically; nothing to do if nothing changed.

        On return the new state is durable.  A host error raises SyscallError (EIO, ENOSPC...)
        and leaves the last committed state on disk.
        """
        if self.closed:
            return
        meta, referenced = self._encode()
        if meta == self._committed_meta:
            return
        store = self.store
        ref = store.put(meta)
        try:
            store.sync_dir()
        except OSError as e:
            raise store.error(f"syncing the storage directory: {e.strerror}", e.errno)
        store.write_superblock(Superblock(self._generation + 1, ref, len(meta)))
        referenced.add(ref.oid)
        garbage = (self._committed | store.written | self._garbage) - referenced
        store.written.clear()
        self._generation += 1
        self._committed, self._committed_meta, self._garbage = referenced, meta, set()
        store.remove(garbage)

    @property
    def generation(self) -> int:
        """How many commits the volume has seen (the superblock's counter)."""
        return self._generation

    def close(self, *, commit: bool = True) -> None:
        """Unmount: commit, then free the page cache and the storage directory descriptor.

        ``commit=False`` drops everything since the last sync, as a crash would.
        """
        if self.closed:
            return
        try:
            if commit:
                self.sync()
        finally:
            self.closed = True
            stack: list[RamInode] = [self.root]
            while stack:
                node = stack.pop()
                if isinstance(node, SefsFile):
                    node.unload()
                elif isinstance(node, RamDir):
                    stack.extend(node.children.values())
            self.store.close()

    def statfs(self) -> StatFs:
        try:
            v = os.statvfs(self.storage_dir)
        except OSError:
            return StatFs(f_type=SEFS_MAGIC, namelen=255)
        return StatFs(
            f_type=SEFS_MAGIC,
            bsize=v.f_bsize,
            blocks=v.f_blocks,
            bfree=v.f_bfree,
            bavail=v.f_bavail,
            files=v.f_files,
            ffree=v.f_ffree,
            namelen=255,
            frsize=v.f_frsize,
        )
