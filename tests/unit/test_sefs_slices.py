"""Commits made in slices (SefsFs.start_commit) and the kernel's driver of them
(kernel/commits.py): the tree may change between slices, the commit stays whole, and a call
that waits for durability is answered only after a commit that started after it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from inode_io import read, write
from occlum.abi.errors import SyscallError
from occlum.fs.sefs import SefsFs
from occlum.kernel.api import Result
from occlum.kernel.commits import DEFERRED, Commits
from occlum.vfs.inode import Inode
from occlum.vfs.mount import CommitRun, FileSystem

KEY = bytes(range(32))
BIG = 64 << 20  # hashing it takes longer than one slice (10 ms)


def mount(opened: list[SefsFs], d: Path) -> SefsFs:
    fs = SefsFs(d, KEY)
    opened.append(fs)
    return fs


def test_the_tree_may_change_between_slices(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    big = fs.root.create(b"big", 0o644, 0, 0)
    gone = fs.root.create(b"gone", 0o644, 0, 0)
    write(gone, b"old")
    fs.sync()
    data = os.urandom(1 << 20) * (BIG >> 20)
    write(big, data)
    run = fs.start_commit(None)
    assert not run.step()  # still reading the big file
    # meanwhile a program creates a file, removes one and renames another
    late = fs.root.create(b"late", 0o644, 0, 0)
    write(late, b"written after the commit began")
    fs.root.unlink(b"gone")
    fs.root.rename(b"big", fs.root, b"big2", 0)
    run.finish()
    assert run.error is None
    fs.close(commit=False)  # a crash right after the commit
    fs = mount(mounts, vol)
    # the names as of the commit's last slice; contents as the commit read them (late's
    # were written after the commit listed the files to read: the next commit's)
    assert sorted(e.name for e in fs.root.readdir()) == [b"big2", b"late"]
    assert read(fs.root.lookup(b"big2")) == data
    assert read(fs.root.lookup(b"late")) == b""


def test_a_file_freed_while_it_is_flushed(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    big = fs.root.create(b"big", 0o644, 0, 0)
    write(big, os.urandom(1 << 20) * (BIG >> 20))
    run = fs.start_commit(None)
    assert not run.step()
    fs.root.unlink(b"big")  # no descriptor holds it: its memfd is closed now
    run.finish()
    assert run.error is None
    fs.sync()
    fs.close(commit=False)
    fs = mount(mounts, vol)
    assert fs.root.readdir() == []


class Slow(FileSystem):
    """A file system whose commits take ``slices`` slices; counts them."""

    def __init__(self, slices: int) -> None:
        super().__init__()
        self.slices = slices
        self.started: list[Inode | None] = []
        self.fail: SyscallError | None = None

    def start_commit(self, inode: Inode | None) -> CommitRun:
        self.started.append(inode)
        return CommitRun(self._steps())

    def _steps(self) -> Iterator[None]:
        for _ in range(self.slices - 1):
            yield
        if self.fail is not None:
            raise self.fail


def test_durability_waits_for_a_commit_that_started_after_the_call() -> None:
    answers: list[tuple[int, Result]] = []
    commits = Commits(lambda nid, res: answers.append((nid, res)), lambda fs, exc: None)
    quick = Slow(1)
    assert commits.wait(1, [quick], None) == 0  # over in one slice: answered at once
    assert not commits.active
    fs = Slow(3)
    assert commits.wait(2, [fs], None) is DEFERRED
    commits.step()
    assert commits.wait(3, [fs], None) is DEFERRED  # the commit under way began before it
    commits.step()
    commits.step()  # the first commit ends: call 2 is answered, the next commit starts
    assert answers == [(2, 0)]
    assert fs.started == [None, None]
    fs.fail = SyscallError(5, "the host failed")
    for _ in range(3):
        commits.step()
    assert answers == [(2, 0), (3, -5)]
    assert not commits.active


def test_write_backs_while_a_commit_runs_make_one_more() -> None:
    ended: list[FileSystem] = []
    commits = Commits(lambda nid, res: None, lambda fs, exc: ended.append(fs))
    fs = Slow(2)
    commits.background(fs)
    commits.background(fs)  # during the first: one more after it, not now
    assert len(fs.started) == 1
    while commits.active:
        commits.step()
    assert len(fs.started) == 2 and ended == [fs, fs]
