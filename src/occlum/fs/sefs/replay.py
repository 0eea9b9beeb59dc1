"""Mounting a SEFS volume: the superblock, the checkpoint's metadata, then the journal replayed.

Every document is verified (sealed objects, chained journal records) and parsed strictly: any
failure makes the mount fail with EIO and a reason, never a partial tree.  A volume of an
older format mounts too, and the next commit rewrites it (a checkpoint in :data:`FORMAT`).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from occlum.abi.fsabi import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG
from occlum.fs.ramfs import RamInode, RamSymlink
from occlum.fs.sefs.files import SefsDir, SefsFile
from occlum.fs.sefs.journal import Journal
from occlum.fs.sefs.layout import CHUNK, FORMAT, FORMATS, RECORD_HEAD, Chunk, dumps
from occlum.fs.sefs.store import FORMATTING, OBJECT_ID_SIZE, ObjectRef
from occlum.vfs.xattr import XattrStore

if TYPE_CHECKING:
    from occlum.fs.sefs.volume import SefsFs

__all__ = ["mount"]


def mount(fs: SefsFs, mode: int, uid: int, gid: int) -> None:
    sb = fs.store.read_superblock()
    names = fs.store.listing()
    if sb is None:
        # objects without a superblock are a format that crashed (marker present) or a
        # deleted superblock, which must not silently become an empty volume
        if fs.store.object_ids(names) and FORMATTING not in names:
            raise fs.store.error("the superblock is missing, but objects remain")
        fs.store.set_marker()
        fs.root = SefsDir(fs, mode, uid, gid)
        fs.changed(fs.root)
        fs.volume_id = os.urandom(OBJECT_ID_SIZE)
        fs.sync()
        fs.store.clear_marker()
        return
    meta = fs.store.get(sb.meta, sb.meta_len, "metadata")
    fs._meta, fs._meta_len = sb.meta, sb.meta_len
    doc = _parse(fs, meta, "metadata", None)
    fmt = doc["format"]
    inodes = {rec[0]: rec for rec in doc["inodes"]}
    entries: dict[int, dict[str, int]] = {}
    if fmt >= 3:
        _apply_dirents(fs, entries, doc)
    root, generation = doc["root"], sb.generation
    fs.volume_id = sb.volume or os.urandom(OBJECT_ID_SIZE)
    if sb.journal:
        journal = Journal(fs.store, sb.journal)
        fs._journal = journal
        for payload in journal.scan():
            delta = _parse_record(fs, payload, generation + 1, fmt)
            for rec in delta["inodes"]:
                inodes[rec[0]] = rec
            if fmt >= 3:
                _apply_dirents(fs, entries, delta)
            for ino in delta["gone"]:
                inodes.pop(ino, None)
                entries.pop(ino, None)
            root, generation = delta["root"], delta["g"]
    try:
        fs.root = _build_tree(fs, root, inodes.values(), fmt, entries)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise fs.store.error(f"metadata is malformed ({e})")
    fs._generation = generation
    fs._records = {ino: dumps(rec) for ino, rec in inodes.items()}
    if fmt < FORMAT:  # rewritten in this format by the next commit, a checkpoint
        fs._upgrade = True
        fs._dirty = {n.ino: n for n in fs._inodes()}
    _check_rollback(fs)
    if FORMATTING in names:
        fs.store.clear_marker()


def _apply_dirents(fs: SefsFs, entries: dict[int, dict[str, int]], doc: dict[str, Any]) -> None:
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
        raise fs.store.error(f"directory entries are malformed ({e})")


def _check_rollback(fs: SefsFs) -> None:
    if fs.counters is None:
        return
    seen = fs.counters.read(fs.volume_id)
    if fs._generation < seen:
        raise fs.store.error(
            f"the volume was rolled back: it holds commit {fs._generation}, but this "
            f"platform saw commit {seen} (an older copy of the storage directory?)"
        )
    if fs._generation > seen and fs._journal is not None:
        # records appended without fdatasync (write-backs) may be in the host's page cache
        # only: the counter must not count them before they are durable
        fs._journal.sync()
    fs.counters.advance(fs.volume_id, fs._generation)


def _parse(fs: SefsFs, meta: bytes, what: str, fmt: int | None) -> dict[str, Any]:
    """A metadata document; ``fmt``, when given, is the format it must have (a journal's
    records have their checkpoint's)."""
    try:
        doc = json.loads(meta)
        if doc["format"] not in FORMATS or (fmt is not None and doc["format"] != fmt):
            raise ValueError(f"unknown metadata format {doc['format']}")
        if not isinstance(doc["inodes"], list):
            raise ValueError("no inode list")
        if doc["format"] >= 3 and not isinstance(doc["dirents"], list):
            raise ValueError("no directory entries")
        return dict(doc)
    except (ValueError, KeyError, TypeError) as e:
        raise fs.store.error(f"{what} is malformed ({e})")


def _parse_record(fs: SefsFs, payload: bytes, generation: int, fmt: int) -> dict[str, Any]:
    """A journal record's metadata delta (its chunk data stays in the journal)."""
    (n,) = RECORD_HEAD.unpack_from(payload)
    raw = payload[RECORD_HEAD.size : RECORD_HEAD.size + n]
    delta = _parse(fs, raw, "journal record", fmt)
    if delta.get("g") != generation or not isinstance(delta.get("gone"), list):
        raise fs.store.error(f"journal record for commit {generation} is malformed")
    return delta


def _build_tree(
    fs: SefsFs,
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
            node = SefsDir(fs, mode, uid, gid)
            entries[ino] = dirents.get(ino, {}).items() if fmt >= 3 else extra
        elif kind == S_IFREG:
            node = SefsFile(fs, mode, uid, gid, _stored_chunks(fs, ino, extra, fmt))
        elif kind == S_IFLNK:
            node = RamSymlink(fs, extra.encode("latin-1"), uid, gid)
        else:
            node = RamInode(fs, mode, uid, gid, rdev)
        node.ino, node.mode, node.rdev, node.nlink = ino, mode, rdev, nlink
        node.atime_ns, node.mtime_ns, node.ctime_ns = at, mt, ct
        if more:  # extended attributes, in records that have any
            node.xattrs = XattrStore({n.encode("latin-1"): v.encode("latin-1") for n, v in more[0]})
        inodes[ino] = node
    for ino, names in entries.items():
        d = inodes[ino]
        assert isinstance(d, SefsDir)
        d.children = {name.encode("latin-1"): inodes[child] for name, child in names}
    root = inodes[root_ino]
    if not isinstance(root, SefsDir):
        raise ValueError("the root is not a directory")
    fs.inos = itertools.count(max(inodes) + 1)
    return root


def _stored_chunks(fs: SefsFs, ino: int, extra: Any, fmt: int) -> tuple[int, dict[int, Chunk]]:
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
        elif not ref.tag and ref.oid not in _journal_records(fs):
            raise ValueError(f"inode {ino}: journal record {oid} is not in the journal")
        chunks[i] = Chunk(ref, object_len, offset, bytes.fromhex(phash))
    return size, chunks


def _journal_records(fs: SefsFs) -> dict[bytes, Any]:
    return fs._journal.records if fs._journal is not None else {}
