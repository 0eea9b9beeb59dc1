"""A SEFS checkpoint: the whole metadata as one object, a new empty journal, the superblock
switched to them, and every object and journal the new state does not name removed.

Chunks kept in journal records move into extent objects first, shared by many files.  Its
cost grows with the volume, so the volume makes one only when the journal has grown past a
bound proportional to the metadata (:meth:`SefsFs.sync <occlum.fs.sefs.volume.SefsFs.sync>`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Generator, Iterator
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from occlum.abi.errors import SyscallError
from occlum.fs.ramfs import RamDir, RamInode
from occlum.fs.sefs.commit import IO_WAIT, STEP, Commit, Delta
from occlum.fs.sefs.files import SefsFile
from occlum.fs.sefs.journal import Journal
from occlum.fs.sefs.layout import CHUNK, FORMAT, MOVED_OBJECT, Chunk, dumps
from occlum.fs.sefs.space import fits_reserve
from occlum.fs.sefs.store import (
    OBJECT_ID_SIZE,
    ObjectRef,
    ObjectStore,
    Superblock,
    is_space_error,
    reserve_size,
)

if TYPE_CHECKING:
    from occlum.fs.sefs.volume import SefsFs

__all__ = ["checkpoint"]

_T = TypeVar("_T")


def checkpoint(fs: SefsFs) -> None:
    """:func:`checkpoint_steps` at once."""
    for _ in checkpoint_steps(fs):
        pass


def checkpoint_steps(fs: SefsFs) -> Iterator[None]:
    """Write the whole metadata as one object, with a new empty journal, and switch the
    superblock to them; then remove every object and journal the new state does not name.
    Chunks kept in journal records move into objects first (shared by many files).

    On a full host, a checkpoint that moves no file data out of the journal is made again
    in the space of the reserve (its metadata object is what the reserve is sized for).

    Yields between slices of work, none of which grows with the number of inodes: chunks
    move out of the journal and files are flushed; the changed records are encoded and the
    directories' entries copied (:class:`_Snapshot`); then one slice takes the state: what
    changed since (as a journal record would: it costs what changed); then the metadata of
    that state is encoded, sealed and written (on the commit's writer thread), the superblock
    switched, and the garbage removed, in slices.  The tree may change meanwhile: those
    changes are the next commit's.
    """
    try:
        yield from _checkpoint_once(fs)
    except SyscallError as e:
        if not is_space_error(e) or not fits_reserve(fs) or not fs.store.release_reserve():
            raise
        yield from _checkpoint_once(fs)


class _Snapshot:
    """The directories' entries, copied in slices before the state is taken: each as it was
    when copied, made true at the state by the entry changes reported since the last commit
    (a name's latest change, applied to a copy made after it or before it, gives the same
    name), and the objects the files' chunks name (a superset of what the state names: a
    file freed meanwhile keeps its objects until the next checkpoint)."""

    def __init__(self) -> None:
        self.dirs: dict[int, dict[bytes, int]] = {}
        self.objects: set[bytes] = set()

    def take(self, fs: SefsFs) -> Iterator[None]:
        due = time.monotonic() + STEP
        nodes = fs._nodes
        for k, node in enumerate(list(nodes.values())):
            if k & 127 == 127 and time.monotonic() >= due:
                yield
                due = time.monotonic() + STEP
            if node.nlink == 0:
                if nodes.get(node.ino) is node:
                    del nodes[node.ino]  # named again later: reported to changed() again
                continue
            if isinstance(node, SefsFile):
                self.objects.update(c.ref.oid for c in node.chunks.values() if not c.in_journal)
            elif isinstance(node, RamDir):
                # one copy of the table at once (a few milliseconds for a million names),
                # read in batches: the directory may change meanwhile, its copy does not
                entries = iter(node.children.copy().items())
                names = self.dirs[node.ino] = {}
                while batch := list(islice(entries, _BATCH)):
                    names.update((n, c.ino) for n, c in batch)
                    if time.monotonic() >= due:
                        yield
                        due = time.monotonic() + STEP

    def settle(self, fs: SefsFs, dead: set[int]) -> None:
        """The entries as of now: the changes reported since the last commit applied (those
        of a directory made after its copy are all there: it had no entries before)."""
        dirs = self.dirs
        for dino, names in fs._dirents.items():
            if dino in dead:
                continue
            d = dirs.setdefault(dino, {})
            for name, ino in names.items():
                if ino is None:
                    d.pop(name, None)
                else:
                    d[name] = ino
        for dino in dead:
            dirs.pop(dino, None)


# entries, records or names handled between two looks at the clock
_BATCH = 2048


def _encode_dirents(dirs: dict[int, dict[bytes, int]], parts: list[str]) -> Iterator[None]:
    due = time.monotonic() + STEP
    first = True
    for dino, names in dirs.items():  # the snapshot's own: nothing else changes them
        entries = iter(names.items())
        pieces: list[str] = []
        while batch := list(islice(entries, _BATCH)):
            pieces.append(dumps([[n.decode("latin-1"), c] for n, c in batch])[1:-1])
            if time.monotonic() >= due:
                yield
                due = time.monotonic() + STEP
        parts.append(
            ("[" if first else ",[") + str(dino) + ",[" + ",".join(p for p in pieces if p) + "]]"
        )
        first = False


def _new_records(
    fs: SefsFs, changed: dict[int, str], gone: list[int]
) -> Generator[None, None, dict[int, str]]:
    """The committed records with ``changed`` (the delta's own) and without ``gone``."""
    records = fs._records.copy()  # one copy of the table at once, as of a directory's
    due = time.monotonic() + STEP
    entries = iter(changed.items())
    while batch := list(islice(entries, _BATCH * 4)):
        records.update(batch)
        if time.monotonic() >= due:
            yield
            due = time.monotonic() + STEP
    for ino in gone:
        del records[ino]
    return records


def _encode_records(records: dict[int, str], parts: list[str]) -> Iterator[None]:
    """``records``, the checkpoint's own, as the text of a JSON list's items, in parts."""
    texts = iter(records.values())
    due = time.monotonic() + STEP
    while batch := list(islice(texts, _BATCH * 4)):
        parts.append(",".join(batch))
        if time.monotonic() >= due:
            yield
            due = time.monotonic() + STEP


def _checkpoint_once(fs: SefsFs) -> Iterator[None]:
    commit = Commit(fs.store, 0)
    store = fs.store
    journal = Journal(store, os.urandom(OBJECT_ID_SIZE))
    switching = False
    delta = Delta()
    held: tuple[dict[int, RamInode], dict[int, dict[bytes, int | None]]] | None = None
    try:
        yield from _move_out_of_journal(fs, commit)
        yield from fs.flush_files(commit)
        yield from fs.encode_ahead(delta)
        snap = _Snapshot()
        yield from snap.take(fs)
        # the state this checkpoint writes: as of this slice
        changed, gone, dirents = fs._delta(commit, delta)
        unchanged = not changed and not gone and not dirents
        if unchanged and not fs._upgrade and fs._journal is not None and fs._journal.empty:
            # nothing to commit; what the committed state does not name is still garbage
            fs._advance(changed, gone)
            keep = {o.hex() for o in snap.objects}
            keep |= {fs._meta.oid.hex()} if fs._meta is not None else set()
            keep.add(fs._journal.name)
            yield from _sweep(store, keep)
            fs._committed(commit)
            return
        snap.settle(fs, delta.dead)
        # what changes from here on is the next commit's (given back if this one fails)
        held = (fs._dirty, fs._dirents)
        fs._dirty, fs._dirents = {}, {}
        records = yield from _new_records(fs, changed, gone)
        parts: list[str] = []
        yield from _encode_dirents(snap.dirs, parts)
        inodes: list[str] = []
        yield from _encode_records(records, inodes)
        head = dumps({"format": FORMAT, "root": fs.root.ino})
        text = [head[:-1] + ',"dirents":[', *parts, '],"inodes":[']
        text += [",".join(p for p in inodes if p), "]}"]
        # joined, sealed and written on the writer thread (sealing and writing release the
        # GIL), and so are the journal and the superblock (fsyncs): calls are served meanwhile
        ref, meta_len = yield from _off_loop(commit, _put_joined, store, text)
        generation = fs._generation + 1
        sb = Superblock(generation, ref, meta_len, journal.jid, fs.volume_id)
        switching = True  # from here on the new superblock may be in place
        yield from _off_loop(commit, _write_state, fs, journal, sb)
    except BaseException:
        if switching and _superblock_names(fs, ref):
            # the rename happened, only its fsync failed: the new state is the volume's
            # now (sweeping with the old one would remove the metadata it names)
            commit.close()
            _switch(fs, journal, generation, records, ref, meta_len)
            raise
        commit.undo()
        fs.give_back(delta)
        if held is not None:
            _give_back_held(fs, held)
        journal.close()
        with contextlib.suppress(OSError):
            os.unlink(journal.name, dir_fd=store.dirfd)
        raise
    finally:
        commit.close()
    _switch(fs, journal, generation, records, ref, meta_len)
    keep = {o.hex() for o in snap.objects} | {ref.oid.hex(), journal.name}
    yield from _sweep(store, keep)
    fs._committed(commit)
    store.make_reserve(reserve_size(fs._meta_len))  # the metadata may have grown
    fs._evict_after_commit()


def _off_loop(commit: Commit, fn: Callable[..., _T], *args: object) -> Generator[None, None, _T]:
    """``fn(*args)`` on the commit's writer thread, yielding while it runs."""
    running = commit.writer().submit(fn, *args)
    while True:
        try:
            return running.result(timeout=IO_WAIT)
        except TimeoutError:
            yield


def _put_joined(store: ObjectStore, text: list[str]) -> tuple[ObjectRef, int]:
    meta = "".join(text).encode()
    return store.put(meta), len(meta)


def _write_state(fs: SefsFs, journal: Journal, sb: Superblock) -> None:
    """The new empty journal, then the superblock naming it and the metadata: the switch."""
    journal.create()
    fs._sync_dir()
    fs.store.write_superblock(sb)


def _give_back_held(
    fs: SefsFs, held: tuple[dict[int, RamInode], dict[int, dict[bytes, int | None]]]
) -> None:
    """The checkpoint failed after it took the changes until its state: they are still to
    commit, under the ones made since."""
    dirty, dirents = held
    dirty.update(fs._dirty)
    fs._dirty = dirty
    for dino, names in fs._dirents.items():
        dirents.setdefault(dino, {}).update(names)
    fs._dirents = dirents


def _sweep(store: ObjectStore, keep: set[str]) -> Iterator[None]:
    """Remove every object and journal not in ``keep``, in slices."""
    names = store.listing()
    due = time.monotonic() + STEP
    for at in range(0, len(names), _BATCH):
        garbage = store.garbage_names(keep, names[at : at + _BATCH])
        if garbage:
            store.remove(garbage)
        if time.monotonic() >= due:
            yield
            due = time.monotonic() + STEP


def _superblock_names(fs: SefsFs, ref: ObjectRef) -> bool:
    try:
        sb = fs.store.read_superblock()
    except SyscallError:
        return False
    return sb is not None and sb.meta == ref


def _switch(
    fs: SefsFs, journal: Journal, generation: int, records: dict[int, str], ref: ObjectRef, n: int
) -> None:
    """The superblock names ``ref`` and ``journal``: the volume's state follows.  The
    changes made since the state was taken stay to commit."""
    old = fs._journal
    fs._journal = journal
    if old is not None:
        old.close()
    fs._generation = generation
    fs._lagging = False  # the superblock's switch made everything durable
    fs._records = records
    fs._unflushed = {f for f in fs._unflushed if f.needs_flush()}
    fs.store.written.clear()
    fs._upgrade = False
    fs._meta, fs._meta_len = ref, n
    if fs.counters is not None:
        fs.counters.advance(fs.volume_id, generation)


def _move_out_of_journal(fs: SefsFs, commit: Commit) -> Iterator[None]:
    """Give every file chunk kept in a journal record a place in an extent object.  The
    chunks of many files share an object (up to :data:`MOVED_OBJECT` bytes): thousands of
    small files written one commit each cost a few host files here, not one each.  Yields
    between objects once a slice's time is up; a file deleted meanwhile is left out."""
    if fs._journal is None or fs._journal.empty:
        return
    moved: dict[SefsFile, dict[int, Chunk]] = {}
    batch: list[tuple[SefsFile, int, int, bytes]] = []  # file, index, offset, hash
    parts: list[bytes] = []
    at = 0
    record: tuple[bytes, bytes] = (b"", b"")  # (id, data) of the last record read

    def put() -> Iterator[None]:
        nonlocal at
        if not parts:
            return
        body = b"".join(parts)
        ref = yield from _off_loop(commit, fs.store.put, body)
        due = time.monotonic() + STEP
        for k, (f, i, offset, phash) in enumerate(batch):  # thousands of small files
            moved.setdefault(f, dict(f.chunks))[i] = Chunk(ref, len(body), offset, phash)
            if k & 255 == 255 and time.monotonic() >= due:
                yield
                due = time.monotonic() + STEP
        batch.clear()
        parts.clear()
        at = 0

    due = time.monotonic() + STEP
    for k, f in enumerate(list(fs._nodes.values())):  # the files of a tree walk, and freed ones
        if k & 127 == 127 and time.monotonic() >= due:
            yield
            due = time.monotonic() + STEP
        if not isinstance(f, SefsFile) or f.gone or f.nlink == 0:
            continue
        chunks, size = f.chunks, f.size  # as they are now: a yield may come between
        for i in sorted(chunks):
            c = chunks[i]
            if not c.in_journal:
                continue
            if record[0] != c.ref.oid:
                record = (c.ref.oid, fs.object_data(c, f"contents of inode {f.ino}"))
            length = min(CHUNK, size - i * CHUNK)
            parts.append(record[1][c.offset : c.offset + length])
            batch.append((f, i, at, c.phash))
            at += length
            if at >= MOVED_OBJECT:
                yield from put()
                if time.monotonic() >= due:
                    yield
                    due = time.monotonic() + STEP
    yield from put()
    # only once every object is written: a failure leaves the files as they were (those
    # given their new map already are in commit.flushed, which undoes it)
    for k, (f, chunks) in enumerate(moved.items()):
        if k & 127 == 127 and time.monotonic() >= due:
            yield
            due = time.monotonic() + STEP
        if f.gone:
            continue  # deleted while its chunks moved: its old map went with it
        commit.flushed.append((f, f.chunks, f.size))  # undone if the commit fails
        f.chunks = chunks  # a new map: its metadata text is encoded afresh
        fs.changed(f)
