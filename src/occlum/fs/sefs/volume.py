"""SEFS, the writable encrypted file system: a ramfs tree that commits itself to sealed objects.

Owns the mounted state of a SEFS volume and its commit (the facade the VFS sees).  While mounted, the whole tree
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
closed again (:mod:`.cache`, least recently used first), so the files a volume holds or a
program touches are not bounded by host descriptors.

The rooms: :mod:`.layout` (chunks, formats), :mod:`.files` (files and directories, a file's
flush), :mod:`.commit` (one commit's change set), :mod:`.cache` (loaded files, eviction),
:mod:`.replay` (mount), :mod:`.checkpoint`, :mod:`.journal`, :mod:`.store`, :mod:`.space`
(a full host), :mod:`.closes` (last closes).

Not thread-safe: like every LibOS file system, callers serialise operations.
"""

from __future__ import annotations

import errno
import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import StatFs
from occlum.fs.ramfs import RamDir, RamFs, RamInode, RamSymlink
from occlum.fs.sefs.cache import FileCache
from occlum.fs.sefs.checkpoint import checkpoint, checkpoint_steps
from occlum.fs.sefs.closes import CloseWatch
from occlum.fs.sefs.commit import STEP, Commit, Delta
from occlum.fs.sefs.counters import Counters
from occlum.fs.sefs.files import SefsDir, SefsFile
from occlum.fs.sefs.journal import Journal
from occlum.fs.sefs.layout import (
    CHUNK,
    FORMAT,
    INLINE_MAX,
    RECORD_HEAD,
    SEFS_MAGIC,
    Chunk,
    dumps,
)
from occlum.fs.sefs.replay import mount
from occlum.fs.sefs.space import fits_reserve, unstored_lines
from occlum.fs.sefs.store import (
    PAD,
    ObjectRef,
    ObjectStore,
    is_space_error,
    reserve_size,
)
from occlum.vfs.inode import Inode
from occlum.vfs.mount import CommitRun, FileSystem

__all__ = ["CHUNK", "JOURNAL_MAX", "SEFS_MAGIC", "SefsFile", "SefsFs"]

# The journal is folded into a checkpoint once it holds JOURNAL_MAX bytes (and four times the
# checkpoint's metadata).
JOURNAL_MAX = 16 * 1024 * 1024
# A commit with more changed inodes than this encodes their records in slices ahead of its
# last slice (which then encodes only what changed meanwhile)
AHEAD_MIN = 512


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
        # every inode a program could reach, by number (and some no longer reachable, until
        # a checkpoint drops them): what a checkpoint reads in slices, where a walk of the
        # tree could miss a subtree moved meanwhile
        self._nodes: dict[int, RamInode] = {}
        self._running: CommitRun | None = None  # the commit under way in slices, if any
        # files whose contents are loaded, least recently used first (see evict)
        self.page_cache = FileCache()
        # files whose latest contents the last commit could not store (the host is full)
        self._unstored: dict[SefsFile, str] = {}
        self._swept = 0  # objects the last commit removed at once (a full host)
        # says, once per file, that its contents could not be stored (the LibOS's log)
        self.log_error: Callable[[str], None] | None = None
        try:
            mount(self, mode, uid, gid)
        except BaseException:
            self._close_storage()
            raise
        self._nodes = {n.ino: n for n in self._inodes()}
        self.store.make_reserve(reserve_size(self._meta_len))

    # --- what changed ------------------------------------------------------------------------

    def changed(self, inode: RamInode) -> None:
        # every inode made, named (a link, an O_TMPFILE's) or moved is reported here
        self._dirty[inode.ino] = self._nodes[inode.ino] = inode

    def entry_changed(self, d: RamDir, name: bytes, inode: RamInode | None) -> None:
        self._dirents.setdefault(d.ino, {})[name] = None if inode is None else inode.ino

    def may_differ(self, f: SefsFile) -> None:
        """``f``'s memfd may hold what its chunks do not: the next commit reads it."""
        self._unflushed.add(f)

    def unloaded(self, f: SefsFile) -> None:
        self.page_cache.forget(f)
        self._unflushed.discard(f)

    def evict(self, target: int) -> None:
        """Let go of loaded files down to ``target`` (see :meth:`.cache.FileCache.evict`)."""
        self.page_cache.evict(target)

    def object_data(self, c: Chunk, what: str) -> bytes:
        """The plaintext of the object (or journal record data) that holds chunk ``c``."""
        if not c.in_journal:
            return self.store.get(c.ref, c.object_len, what)
        if self._journal is None:
            raise self.store.error(f"{what}: journal record {c.ref.name} is unknown")
        payload = self._journal.read(c.ref.oid, what)
        (n,) = RECORD_HEAD.unpack_from(payload)
        return payload[RECORD_HEAD.size + n :]

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
            "," + dumps([[n.decode("latin-1"), v.decode("latin-1")] for n, v in
                          sorted(xattrs.items())])
            if xattrs
            else ""
        )  # fmt: skip
        if isinstance(node, SefsFile):
            # the text json.dumps gives, with each file's chunk list serialized once per
            # change instead of at every commit
            return dumps(rec)[:-1] + "," + node.encoded_chunks() + tail + "]"
        return dumps([*rec, extra])[:-1] + tail + "]"

    def flush_files(self, commit: Commit) -> Iterator[None]:
        """Flush the changed contents of files into ``commit``, yielding between slices of
        work (:data:`.commit.STEP`).  Files that change meanwhile (a write, a truncate, a
        new writer) stay to flush: the commit takes the contents it read, the next one the
        rest."""
        for f in list(self._unflushed):
            if f.needs_flush():
                if commit.only is None or f is commit.only or not f.writers:
                    yield from self._flush(f, commit)
                elif f in self._unstored:  # left for a later commit, still unstored
                    commit.unstored[f] = self._unstored[f]

    def _encode(self, delta: Delta, ino: int, node: RamInode) -> None:
        """Put ``node``'s record as it is now into ``delta``."""
        if node.nlink == 0 or (isinstance(node, SefsFile) and node.gone):
            delta.changed.pop(ino, None)
            delta.dead.add(ino)
            if self._nodes.get(ino) is node:
                del self._nodes[ino]  # named again (an O_TMPFILE's link): reported again
            if ino in self._records:
                delta.gone.add(ino)
            return
        delta.dead.discard(ino)
        delta.gone.discard(ino)
        text = self._record(node)
        if self._records.get(ino) != text:
            delta.changed[ino] = text
        else:
            delta.changed.pop(ino, None)

    def encode_ahead(self, delta: Delta) -> Iterator[None]:
        """Encode the records of the inodes changed so far into ``delta``, yielding between
        slices (:data:`.commit.STEP`): a checkpoint after data moved out of the journal, or a
        ``chmod -R``, changes every inode.  What changes meanwhile is reported again and
        encoded by :meth:`_delta`.  Few changes are left to :meth:`_delta` at once."""
        if len(self._dirty) < AHEAD_MIN:
            return
        taken, self._dirty = self._dirty, {}
        delta.taken.append(taken)
        due = time.monotonic() + STEP
        for k, (ino, node) in enumerate(taken.items()):
            self._encode(delta, ino, node)
            if k & 127 == 127 and time.monotonic() >= due:
                yield
                due = time.monotonic() + STEP

    def give_back(self, delta: Delta) -> None:
        """The commit failed: the changes encoded ahead are still to commit."""
        for taken in delta.taken:
            for ino, node in taken.items():
                self._dirty.setdefault(ino, node)
        delta.taken.clear()

    def _delta(
        self, commit: Commit, delta: Delta | None = None
    ) -> tuple[dict[int, str], list[int], list[Any]]:
        """What changed since the last commit (its files flushed by :meth:`flush_files`): the
        changed inodes' records, the inodes gone, the directory entries changed.  Costs what
        changed: the dirty inodes are those :meth:`changed` was told of (and of those, the
        ones :meth:`encode_ahead` put into ``delta``, only what changed again)."""
        if delta is None:
            delta = Delta()
        dirty = self._dirty
        for f in list(self._unflushed):
            if not f.gone:
                dirty[f.ino] = f  # its size and times come from the memfd
        for ino, node in dirty.items():
            self._encode(delta, ino, node)
        dead = delta.dead
        dirents = [
            [dino, [[n.decode("latin-1"), c] for n, c in names.items()]]
            for dino, names in self._dirents.items()
            if dino not in dead
        ]
        return delta.changed, list(delta.gone), dirents

    def _flush(self, f: SefsFile, commit: Commit) -> Iterator[None]:
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
            yield from f.flush(commit)
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

    def start_commit(self, inode: Inode | None) -> CommitRun:
        """The commit :meth:`sync_file` (of ``inode``) or :meth:`sync` (``None``) makes, in
        slices of a few milliseconds (:mod:`occlum.kernel.commits` serves calls between
        them).  Between slices the tree may change: the commit holds the file contents it
        read and the metadata as of its last slice, which does all the metadata work and the
        append at once, so the state it commits is whole.  One commit runs at a time: one
        still under way is finished first."""
        self._finish_running()
        only = inode if isinstance(inode, SefsFile) else None
        run = CommitRun(self._commit_steps(only))
        self._running = run
        return run

    def start_writeback(self) -> CommitRun:
        """A write-back nobody waits for (after last closes): as :meth:`start_commit` of
        everything, but its journal record is not made durable on its own; the next durable
        commit (an fsync, sync, the periodic write-back, unmount) makes it durable with its
        own, in one ``fdatasync``, and only then raises the rollback counter past it.  Files
        made one by one without fsync cost a commit each, whose ``fdatasync`` was most of it."""
        self._finish_running()
        run = CommitRun(self._commit_steps(None, durable=False))
        self._running = run
        return run

    @property
    def committing(self) -> bool:
        """A commit is under way (its files must not be let go: a failure puts them back)."""
        return self._running is not None and not self._running.done

    def _finish_running(self) -> None:
        """Finish the commit under way, if any: whoever waits for it learns how it ended."""
        running, self._running = self._running, None
        if running is not None:
            running.finish()

    def _sync(self, only: SefsFile | None) -> None:
        self._finish_running()
        for _ in self._commit_steps(only):
            pass

    def _commit_steps(self, only: SefsFile | None, *, durable: bool = True) -> Iterator[None]:
        """Commit what changed since the last commit atomically; nothing to do if nothing did.
        Yields between slices of work (see :meth:`start_commit`).

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

        With ``durable`` off (:meth:`start_writeback`) a journal record is appended without
        ``fdatasync`` and the rollback counter stays behind it until a durable commit.
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
                yield from checkpoint_steps(self)
                return
            except SyscallError as e:
                if journal is None or self._upgrade or not is_space_error(e):
                    raise
                # no room for a checkpoint: the journal grows past its bound until one fits
        for _ in range(2):
            # while the reserve is not whole, file data may not take the room it lacks
            room = self.store.spare() if self.store.short else None
            commit = Commit(self.store, INLINE_MAX, room=room)
            commit.only = only
            try:
                yield from self._append(journal, commit, durable)
            except SyscallError as e:
                if not is_space_error(e):
                    raise
                # a record of what takes no room, written in the reserve's room
                commit = Commit(self.store, CHUNK, extents=False)
                commit.only = only
                yield from self._append(journal, commit, durable)
            if not (self._unstored and self._swept):
                break
            # the commit freed room (deletes) after its files did not fit: once more for them
        self._evict_after_commit()

    def _append(self, journal: Journal, commit: Commit, durable: bool = True) -> Iterator[None]:
        """Commit by appending one record with ``commit``'s changes to ``journal``: its files
        flushed in slices, then the metadata and the append in one (made durable, with the
        records appended before it, unless ``durable`` is off)."""
        delta = Delta()
        try:
            yield from self.flush_files(commit)
            yield from self.encode_ahead(delta)
            changed, gone, dirents = self._delta(commit, delta)
            if not changed and not gone and not dirents and not commit.inline:
                if durable:
                    self._make_durable()  # what write-backs appended before
                self._advance(changed, gone)
                self._committed(commit)
                return
            if self.store.written:  # extent objects: durable, and so must their names be
                self._sync_dir()
            head = dumps({"format": FORMAT, "g": self._generation + 1, "root": self.root.ino})
            text = (
                head[:-1] + ',"gone":' + dumps(gone) + ',"dirents":' + dumps(dirents)
                + ',"inodes":[' + ",".join(changed.values()) + "]}"
            )  # fmt: skip
            raw = text.encode()
            payload = RECORD_HEAD.pack(len(raw)) + raw + commit.inline
            try:
                journal.append(commit.record, payload, durable=durable)
            except SyscallError as e:
                # only a record of what takes no room may use the reserve: one that deletes,
                # or changes inodes without adding any (creating files needs room)
                adds = any(ino not in self._records for ino in changed)
                if commit.extents or not is_space_error(e) or (adds and not gone):
                    raise
                if not self.store.release_reserve(len(payload) + PAD):
                    raise
                journal.append(commit.record, payload, durable=durable)
        except BaseException:
            commit.undo()
            self.give_back(delta)
            raise
        finally:
            commit.close()
        self._advance(changed, gone)
        self._generation += 1
        self._lagging = not durable
        if durable and self.counters is not None:
            self.counters.advance(self.volume_id, self._generation)
        self._committed(commit)

    # records appended without fdatasync since the last durable commit (start_writeback)
    _lagging = False

    def _make_durable(self) -> None:
        """Make the records write-backs appended durable, and only then count them."""
        if not self._lagging or self._journal is None:
            return
        self._journal.sync()
        self._lagging = False
        if self.counters is not None:
            self.counters.advance(self.volume_id, self._generation)

    def _committed(self, commit: Commit) -> None:
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
        checkpoint(self)

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
                self.page_cache.forget(f)
        return failed

    def _evict_after_commit(self) -> None:
        self.page_cache.after_commit()

    def _sync_dir(self) -> None:
        try:
            self.store.sync_dir()
        except OSError as e:
            raise self.store.error(f"syncing the storage directory: {e.strerror}", e.errno)

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
        return len(self.page_cache)

    def close(self, *, commit: bool = True) -> None:
        """Unmount: commit and checkpoint, then free the page cache and the storage directory
        descriptor.  ``commit=False`` drops everything since the last sync, as a crash would.
        """
        if self.closed:
            return
        try:
            self._finish_running()
            if commit:
                self.sync()
                if self._journal is not None and not self._journal.empty:
                    checkpoint(self)
        finally:
            self.closed = True
            for f in self.page_cache:
                f.unload()
            for f in self._unflushed:  # unnamed files are in no cache list
                f.unload()
            self.page_cache.clear()
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
