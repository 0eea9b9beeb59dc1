"""SEFS at scale: holes cost nothing, commits cost what changed, and file contents are not a
host descriptor each (a cache that lets go of committed files no program holds)."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import resource
import time
from pathlib import Path

import pytest

from inode_io import read, write
from occlum.abi.fsabi import S_IFDIR, S_IFREG
from occlum.fs.sefs import CHUNK, SefsFs, cache
from occlum.fs.sefs.closes import CloseWatch
from occlum.fs.sefs.files import SefsFile
from occlum.fs.sefs.journal import Journal
from occlum.fs.sefs.layout import RECORD_HEAD
from occlum.fs.sefs.store import OBJECT_ID_SIZE, RESERVE, ObjectStore, Superblock
from occlum.vfs.inode import SetAttr

KEY = bytes(range(32))


def mount(opened: list[SefsFs], d: Path, *, watch: bool = True) -> SefsFs:
    fs = SefsFs(d, KEY)
    if watch:  # as in the LibOS: last closes are seen, so written files become clean
        fs.close_watch = CloseWatch()
    opened.append(fs)
    return fs


def settle(fs: SefsFs) -> None:
    """What the LibOS's loop does on close events: commit the volumes whose writers closed."""
    assert fs.close_watch is not None
    for v in fs.close_watch.read():
        v.sync()


def stored_bytes(d: Path) -> int:
    """What the volume's objects, journal and superblock take (the reserve: zeros kept
    for a full disk, left out)."""
    return sum(p.stat().st_size for p in d.iterdir() if p.name != RESERVE)


def test_a_sparse_file_costs_its_data_not_its_size(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    f = fs.root.create(b"x", 0o644, 0, 0)
    f.setattr(SetAttr(size=16 << 30))
    fs.sync()
    # holes are not listed: the metadata stays small (format 2 listed a null per chunk)
    assert stored_bytes(vol) < 64 * 1024
    start = time.monotonic()
    f.setattr(SetAttr(size=1 << 40))
    write(f, b"hello", 1 << 39)
    settle(fs)
    fs.sync()
    assert time.monotonic() - start < 2
    assert stored_bytes(vol) < 1 << 20
    fs.close()
    fs = mount(mounts, vol)
    f = fs.root.lookup(b"x")
    assert f.getattr().size == 1 << 40
    fd = f.open_host_fd(os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 1 << 39  # loaded without filling the holes
        assert os.lseek(fd, 1 << 39, os.SEEK_HOLE) == (1 << 39) + 4096
        assert os.pread(fd, 5, 1 << 39) == b"hello"
    finally:
        os.close(fd)


def test_holes_made_later_are_dropped(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    f = fs.root.create(b"f", 0o644, 0, 0)
    write(f, os.urandom(3 * CHUNK))
    settle(fs)
    fs.sync()
    assert isinstance(f, SefsFile) and sorted(f.chunks) == [0, 1, 2]
    f.setattr(SetAttr(size=CHUNK))
    f.setattr(SetAttr(size=3 * CHUNK))  # the last two chunks are holes now
    fs.sync()
    assert sorted(f.chunks) == [0]
    fs.close()
    fs = mount(mounts, vol)
    g = fs.root.lookup(b"f")
    fd = g.open_host_fd(os.O_RDONLY)
    try:
        with pytest.raises(OSError):  # ENXIO: no data past the first chunk
            os.lseek(fd, CHUNK, os.SEEK_DATA)
    finally:
        os.close(fd)


def test_a_commit_writes_only_what_changed(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    d = fs.root.mkdir(b"many", 0o755, 0, 0)
    sizes: list[int] = []
    for i in range(2000):
        f = d.create(b"file-%05d" % i, 0o644, 0, 0)
        write(f, b"x" * 16)
        settle(fs)
        fs.sync()
        journal = fs._journal
        assert journal is not None
        sizes.append(journal.size)
    # each commit named one new file and one directory entry: one padded block each, however
    # many files the directory and the volume hold (format 2 rewrote the whole listing)
    steps = {b - a for a, b in zip(sizes[-100:], sizes[-99:], strict=False) if b > a}
    assert max(steps) <= 4096 + 64, steps
    fs.close()
    fs = mount(mounts, vol)
    many = fs.root.lookup(b"many")
    assert len(many.readdir()) == 2000
    assert read(many.lookup(b"file-01234")) == b"x" * 16


def test_unlink_rename_and_links_replay_from_the_journal(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    a = fs.root.mkdir(b"a", 0o755, 0, 0)
    b = fs.root.mkdir(b"b", 0o700, 1, 2)
    f = a.create(b"f", 0o600, 0, 0)
    write(f, b"contents")
    settle(fs)
    fs.sync()  # a checkpoint happened at the format; these are journal records
    a.link(b"g", f)
    a.rename(b"f", b, b"moved", 0)
    a.symlink(b"s", b"target", 0, 0)
    fs.sync()
    a.unlink(b"g")
    fs.root.rename(b"a", b, b"sub", 0)
    f.setattr(SetAttr(mode=0o640))
    f.set_xattr(b"user.k", b"v", 0)
    fs.sync()
    fs.close(commit=False)  # what the journal holds, not a checkpoint
    fs = mount(mounts, vol)
    b2 = fs.root.lookup(b"b")
    assert sorted(e.name for e in fs.root.readdir()) == [b"b"]
    assert sorted(e.name for e in b2.readdir()) == [b"moved", b"sub"]
    moved = b2.lookup(b"moved")
    st = moved.getattr()
    assert (st.mode & 0o7777, st.nlink) == (0o640, 1)
    assert moved.get_xattr(b"user.k") == b"v"
    assert read(moved) == b"contents"
    assert b2.lookup(b"sub").lookup(b"s").readlink() == b"target"
    assert b2.getattr().nlink == 3


def test_files_are_not_a_host_descriptor_each(
    vol: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    # fewer descriptors than files: each file keeping its memfd would run out (EMFILE)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(cache, "CACHED_FILES", 50)
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 300, hard))
    try:
        fs = mount(mounts, vol)
        for i in range(1500):
            f = fs.root.create(b"f%d" % i, 0o644, 0, 0)
            write(f, b"data %d" % i)
            settle(fs)
        fs.sync()
        assert fs.loaded_files <= 100
        assert len(os.listdir("/proc/self/fd")) < used + 150
        # an evicted file loads again, from its objects
        for i in (0, 777, 1499):
            assert read(fs.root.lookup(b"f%d" % i)) == b"data %d" % i
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fs.close()
    fs = mount(mounts, vol)
    assert len(fs.root.readdir()) == 1500


def test_only_unheld_committed_files_are_let_go(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    held = fs.root.create(b"held", 0o644, 0, 0)
    mapped = fs.root.create(b"mapped", 0o644, 0, 0)
    dirty = fs.root.create(b"dirty", 0o644, 0, 0)
    free = fs.root.create(b"free", 0o644, 0, 0)
    for f in (held, mapped, dirty, free):
        write(f, b"v1")
    settle(fs)
    fs.sync()
    hfd = held.open_host_fd(os.O_RDONLY)
    mfd = mapped.open_host_fd(os.O_RDWR)
    m = mmap.mmap(mfd, 2)
    os.close(mfd)  # only the mapping holds it now
    write(dirty, b"v2")  # closed, but not committed: no close event read yet
    assert isinstance(held, SefsFile) and isinstance(mapped, SefsFile)
    assert isinstance(dirty, SefsFile) and isinstance(free, SefsFile)
    fs.evict(0)
    assert free.memfd is None
    assert held.memfd is not None and mapped.memfd is not None and dirty.memfd is not None
    m[:2] = b"m2"  # a store through the mapping: seen by every later open
    assert read(mapped) == b"m2"
    assert read(free) == b"v1"  # loaded again
    m.close()
    os.close(hfd)
    settle(fs)
    fs.sync()
    fs.evict(0)
    assert held.memfd is None and mapped.memfd is None and dirty.memfd is None
    assert (read(mapped), read(dirty), read(held)) == (b"m2", b"v2", b"v1")


def _format_2_volume(d: Path) -> None:
    """A volume as format 2 wrote it: whole directory listings in directory records, a file's
    every chunk listed (null for a hole), journal records with every inode."""
    store = ObjectStore(d, KEY, mac_only=False)
    data = b"old data" + bytes(CHUNK)  # the first chunk, and a second all-zero one
    ext = store.put(data[:CHUNK])
    chunk = [
        ext.oid.hex(),
        ext.tag.hex(),
        CHUNK,
        0,
        hashlib.sha256(data[:CHUNK]).hexdigest(),
    ]
    t = 1_700_000_000_000_000_000
    root = [1, S_IFDIR | 0o755, 0, 0, 0, 3, t, t, t, [["f", 2], ["sub", 3]]]
    f = [2, S_IFREG | 0o644, 0, 0, 0, 1, t, t, t, [len(data), [chunk, None]]]
    sub = [3, S_IFDIR | 0o700, 0, 0, 0, 2, t, t, t, []]
    meta = json.dumps({"format": 2, "root": 1, "inodes": [root, f, sub]}).encode()
    ref = store.put(meta)
    journal = Journal(store, os.urandom(OBJECT_ID_SIZE))
    journal.create()
    # one journal record: a file added under sub, as format 2 recorded it
    sub2 = [3, S_IFDIR | 0o700, 0, 0, 0, 2, t, t, t, [["new", 4]]]
    new = [4, S_IFREG | 0o600, 0, 0, 0, 1, t, t, t, [0, []]]
    delta = json.dumps({"format": 2, "g": 2, "root": 1, "gone": [], "inodes": [sub2, new]})
    raw = delta.encode()
    journal.append(os.urandom(OBJECT_ID_SIZE), RECORD_HEAD.pack(len(raw)) + raw)
    store.sync_dir()
    store.write_superblock(Superblock(1, ref, len(meta), journal.jid, os.urandom(16)))
    journal.close()
    store.close()


def test_a_format_2_volume_mounts_and_is_upgraded(vol: Path, mounts: list[SefsFs]) -> None:
    _format_2_volume(vol)
    fs = mount(mounts, vol)
    f = fs.root.lookup(b"f")
    assert f.getattr().size == 8 + CHUNK
    assert read(f)[:8] == b"old data"
    assert sorted(e.name for e in fs.root.lookup(b"sub").readdir()) == [b"new"]
    write(fs.root.lookup(b"sub").lookup(b"new"), b"now")
    settle(fs)
    fs.sync()  # the first commit rewrites the volume in the current format
    fs.close()
    fs = mount(mounts, vol)
    assert read(fs.root.lookup(b"sub").lookup(b"new")) == b"now"
    assert read(fs.root.lookup(b"f"))[:8] == b"old data"


def test_small_files_share_objects_at_a_checkpoint(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    for i in range(300):
        write(fs.root.create(b"f%d" % i, 0o644, 0, 0), b"small %d" % i)
        settle(fs)  # one commit each: the data is kept in its journal record
    fs.close()  # a checkpoint moves the data out of the journal: into a few shared objects
    assert len([p for p in vol.iterdir() if len(p.name) == 32]) < 10
    fs = mount(mounts, vol)
    assert [read(fs.root.lookup(b"f%d" % i)) for i in (0, 150, 299)] == [
        b"small 0",
        b"small 150",
        b"small 299",
    ]
