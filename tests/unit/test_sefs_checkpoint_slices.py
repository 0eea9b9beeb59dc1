"""A checkpoint made in slices: no slice does work in proportion to the volume's inodes (the
last one encoded every inode and every directory entry: 275 ms at 100 000 files), and the
tree may change between slices, subtrees moving included, without a name or a file lost."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from test_sefs import snapshot

from inode_io import write
from occlum.fs.sefs import SefsFs, checkpoint, volume
from occlum.fs.sefs.checkpoint import checkpoint_steps
from occlum.fs.sefs.closes import CloseWatch
from occlum.fs.sefs.files import SefsDir
from occlum.vfs.inode import SetAttr

KEY = bytes(range(32))


def mount(opened: list[SefsFs], d: Path) -> SefsFs:
    fs = SefsFs(d, KEY)
    fs.close_watch = CloseWatch()  # as in the LibOS: closed files become clean
    opened.append(fs)
    return fs


def settle(fs: SefsFs) -> None:
    assert fs.close_watch is not None
    fs.close_watch.read()
    fs.sync()


def fill(fs: SefsFs, many: int) -> None:
    """``many`` small files in one directory, a few trees of subdirectories, each file's
    data in a journal record (as files made and fsync'd one by one leave it)."""
    d = fs.root.mkdir(b"many", 0o755, 0, 0)
    for i in range(many):
        write(d.create(b"f%d" % i, 0o644, 0, 0), b"%16d" % i)
        if i % 200 == 199:
            settle(fs)
    for t in range(6):
        top = fs.root.mkdir(b"t%d" % t, 0o755, 0, 0)
        for s in range(4):
            sub = top.mkdir(b"s%d" % s, 0o755, 0, 0)
            for i in range(10):
                write(sub.create(b"g%d" % i, 0o644, 0, 0), b"tree %d %d %d" % (t, s, i))
        settle(fs)


@pytest.fixture
def every_look_yields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices as short as the code allows: each look at the clock finds the time up."""
    monkeypatch.setattr(checkpoint, "STEP", 0.0)
    monkeypatch.setattr(volume, "STEP", 0.0, raising=False)


def test_no_slice_encodes_the_whole_volume(
    vol: Path, mounts: list[SefsFs], every_look_yields: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = mount(mounts, vol)
    fill(fs, 3000)
    records = entries = 0
    record = volume.SefsFs._record

    def counted_record(node: Any) -> str:
        nonlocal records
        records += 1
        return record(node)

    dumps = checkpoint.dumps

    def counted_dumps(value: Any) -> str:
        nonlocal entries
        if isinstance(value, list):
            entries += len(value) + sum(len(v[1]) for v in value if isinstance(v[1], list))
        return dumps(value)

    monkeypatch.setattr(volume.SefsFs, "_record", staticmethod(counted_record))
    monkeypatch.setattr(checkpoint, "dumps", counted_dumps)
    per_slice: list[tuple[int, int]] = []
    for _ in checkpoint_steps(fs):
        per_slice.append((records, entries))
        records = entries = 0
    per_slice.append((records, entries))
    assert sum(r for r, _ in per_slice) >= 3000  # every file's chunks moved out of the journal
    assert sum(e for _, e in per_slice) >= 3000
    assert max(r for r, _ in per_slice) <= 256, max(per_slice)
    assert max(e for _, e in per_slice) <= 2 * checkpoint._BATCH, max(per_slice)
    fs.close(commit=False)
    again = mount(mounts, vol)
    assert len(again.root.lookup(b"many").readdir()) == 3000


def _change(fs: SefsFs, rng: random.Random, n: int) -> None:
    """A metadata change anywhere in the tree: made, removed, moved (whole subtrees too)."""
    r = fs.root
    tops = [e.name for e in r.readdir() if e.name.startswith(b"t")]
    top = r.lookup(rng.choice(tops))
    assert isinstance(top, SefsDir)
    subs = [e.name for e in top.readdir()]
    op = rng.randrange(7)
    if op == 0:
        top.create(b"new%d" % n, 0o600, 0, 0)
    elif op == 1 and subs:
        # a subtree moves to another top directory, read before or after this one
        other = r.lookup(rng.choice(tops))
        top.rename(rng.choice(subs), other, b"moved%d" % n, 0)
    elif op == 2:
        many = r.lookup(b"many")
        names = [e.name for e in many.readdir()]
        many.unlink(rng.choice(names))
    elif op == 3:
        top.mkdir(b"dir%d" % n, 0o755, 0, 0).create(b"inside", 0o644, 0, 0)
    elif op == 4 and subs:
        sub = top.lookup(rng.choice(subs))
        if sub.is_dir:
            files = [e.name for e in sub.readdir()]
            if files and not sub.lookup(files[0]).is_dir:
                sub.link(b"link%d" % n, sub.lookup(files[0]))
    elif op == 5:
        top.setattr(SetAttr(mode=0o700 + rng.randrange(0o100)))
    elif op == 6:
        # a directory made and removed, or an empty one removed
        name = rng.choice(subs) if subs else b""
        if not name or not top.lookup(name).is_dir or top.lookup(name).readdir():
            name = b"soon-gone%d" % n
            top.mkdir(name, 0o755, 0, 0)
        top.rmdir(name)


@pytest.mark.parametrize("seed", range(4))
def test_the_tree_changes_between_checkpoint_slices(
    vol: Path, mounts: list[SefsFs], every_look_yields: None, seed: int
) -> None:
    rng = random.Random(seed)
    fs = mount(mounts, vol)
    fill(fs, 700)
    states = [snapshot(fs, contents=False)]
    n = 0
    for _ in checkpoint_steps(fs):
        for _ in range(rng.randrange(3)):
            n += 1
            _change(fs, rng, n)
        states.append(snapshot(fs, contents=False))
    assert n > 10
    # a crash right after the checkpoint: the tree as it was at one of its slices, whole
    fs.close(commit=False)
    assert snapshot(mount(mounts, vol), contents=False) in states


@pytest.mark.parametrize("seed", range(4))
def test_changes_made_during_a_checkpoint_are_the_next_commits(
    vol: Path, mounts: list[SefsFs], every_look_yields: None, seed: int
) -> None:
    rng = random.Random(seed)
    fs = mount(mounts, vol)
    fill(fs, 700)
    n = 0
    for _ in checkpoint_steps(fs):
        for _ in range(rng.randrange(3)):
            n += 1
            _change(fs, rng, n)
        # what a checkpoint reads instead of walking the tree: every inode reachable
        assert {node.ino for node in fs._inodes()} <= fs._nodes.keys()
    fs.sync()
    final = snapshot(fs)
    fs.close(commit=False)
    assert snapshot(mount(mounts, vol)) == final
