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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from occlum.abi.errors import SyscallError
from occlum.fs.ramfs import RamDir
from occlum.fs.sefs.commit import STEP, Commit
from occlum.fs.sefs.files import SefsFile
from occlum.fs.sefs.journal import Journal
from occlum.fs.sefs.layout import CHUNK, FORMAT, MOVED_OBJECT, Chunk, dumps
from occlum.fs.sefs.space import fits_reserve
from occlum.fs.sefs.store import OBJECT_ID_SIZE, ObjectRef, Superblock, is_space_error, reserve_size

if TYPE_CHECKING:
    from occlum.fs.sefs.volume import SefsFs

__all__ = ["checkpoint"]


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

    Yields between slices of work: while chunks move out of the journal and files are
    flushed.  The metadata object, the new journal and the superblock are written in one
    slice, whose cost grows with the number of inodes (not with file data).
    """
    try:
        yield from _checkpoint_once(fs)
    except SyscallError as e:
        if not is_space_error(e) or not fits_reserve(fs) or not fs.store.release_reserve():
            raise
        yield from _checkpoint_once(fs)


def _checkpoint_once(fs: SefsFs) -> Iterator[None]:
    commit = Commit(fs.store, 0)
    store = fs.store
    journal = Journal(store, os.urandom(OBJECT_ID_SIZE))
    switching = False
    try:
        yield from _move_out_of_journal(fs, commit)
        yield from fs.flush_files(commit)
        changed, gone, dirents = fs._delta(commit)
        unchanged = not changed and not gone and not dirents
        if unchanged and not fs._upgrade and fs._journal is not None and fs._journal.empty:
            # nothing to commit; what the committed state does not name is still garbage
            fs._advance(changed, gone)
            store.sweep(fs.committed_names())
            fs._committed(commit)
            return
        records = dict(fs._records)
        records.update(changed)
        for ino in gone:
            del records[ino]
        head = dumps({"format": FORMAT, "root": fs.root.ino})
        meta = (
            head[:-1] + ',"dirents":' + dumps(_all_dirents(fs))
            + ',"inodes":[' + ",".join(records.values()) + "]}"
        ).encode()  # fmt: skip
        ref = store.put(meta)
        journal.create()
        fs._sync_dir()
        generation = fs._generation + 1
        switching = True  # from here on the new superblock may be in place
        store.write_superblock(Superblock(generation, ref, len(meta), journal.jid, fs.volume_id))
    except BaseException:
        if switching and _superblock_names(fs, ref):
            # the rename happened, only its fsync failed: the new state is the volume's
            # now (sweeping with the old one would remove the metadata it names)
            commit.close()
            _switch(fs, journal, generation, records, ref, len(meta))
            raise
        commit.undo()
        journal.close()
        with contextlib.suppress(OSError):
            os.unlink(journal.name, dir_fd=store.dirfd)
        raise
    finally:
        commit.close()
    _switch(fs, journal, generation, records, ref, len(meta))
    store.sweep(fs.committed_names())
    fs._committed(commit)
    store.make_reserve(reserve_size(fs._meta_len))  # the metadata may have grown
    fs._evict_after_commit()


def _superblock_names(fs: SefsFs, ref: ObjectRef) -> bool:
    try:
        sb = fs.store.read_superblock()
    except SyscallError:
        return False
    return sb is not None and sb.meta == ref


def _switch(
    fs: SefsFs, journal: Journal, generation: int, records: dict[int, str], ref: ObjectRef, n: int
) -> None:
    """The superblock names ``ref`` and ``journal``: the volume's state follows."""
    old = fs._journal
    fs._journal = journal
    if old is not None:
        old.close()
    fs._generation = generation
    fs._records = {}
    fs._advance(records, [])
    fs._upgrade = False
    fs._meta, fs._meta_len = ref, n
    if fs.counters is not None:
        fs.counters.advance(fs.volume_id, generation)


def _all_dirents(fs: SefsFs) -> list[Any]:
    return [
        [d.ino, [[n.decode("latin-1"), c.ino] for n, c in d.children.items()]]
        for d in fs._inodes()
        if isinstance(d, RamDir)
    ]


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

    def put() -> None:
        nonlocal at
        if not parts:
            return
        body = b"".join(parts)
        ref = fs.store.put(body)
        for f, i, offset, phash in batch:
            moved.setdefault(f, dict(f.chunks))[i] = Chunk(ref, len(body), offset, phash)
        batch.clear()
        parts.clear()
        at = 0

    due = time.monotonic() + STEP
    for f in list(fs._files()):
        if f.gone:
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
                put()
                if time.monotonic() >= due:
                    yield
                    due = time.monotonic() + STEP
    put()
    # only once every object is written: a failure leaves the files as they were
    for f, chunks in moved.items():
        if f.gone:
            continue  # deleted while its chunks moved: its old map went with it
        commit.flushed.append((f, f.chunks, f.size))  # undone if the commit fails
        f.chunks = chunks  # a new map: its metadata text is encoded afresh
        fs.changed(f)
