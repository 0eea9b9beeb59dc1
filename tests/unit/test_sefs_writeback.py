"""Write-backs after last closes leave their durability to the next durable commit: files
made one by one without fsync cost a journal append each, not an ``fdatasync`` each, and
the rollback counter only ever counts commits that are durable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inode_io import read, write
from occlum.enclave.counter import MonotonicCounters
from occlum.fs.sefs import SefsFs, journal
from occlum.kernel.commits import Commits
from occlum.vfs.inode import Inode
from occlum.vfs.mount import CommitRun, FileSystem

KEY = bytes(range(32))


@pytest.fixture
def fdatasyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The journal's fdatasync calls, counted."""
    calls: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(journal.os, "fdatasync", counted)
    return calls


def run(c: CommitRun) -> None:
    c.finish()
    assert c.error is None


def test_write_backs_append_without_fdatasync_and_count_once_durable(
    tmp_path: Path, fdatasyncs: list[int]
) -> None:
    vol = tmp_path / "vol"
    counters = MonotonicCounters(tmp_path / "counters")
    fs = SefsFs(vol, KEY, counters=counters)
    try:
        fs.sync()
        start, g = len(fdatasyncs), fs.generation
        for i in range(20):
            write(fs.root.create(b"f%d" % i, 0o644, 0, 0), b"data %d" % i)
            run(fs.start_writeback())
        assert fs.generation == g + 20  # a commit each
        assert len(fdatasyncs) == start  # none made durable on its own
        assert counters.read(fs.volume_id) == g  # nor counted
        run(fs.start_commit(None))  # nothing changed since: the journal is made durable
        assert len(fdatasyncs) == start + 1
        assert counters.read(fs.volume_id) == g + 20
        run(fs.start_commit(None))  # durable already: nothing to do
        assert len(fdatasyncs) == start + 1
        write(fs.root.create(b"late", 0o644, 0, 0), b"late")
        run(fs.start_writeback())
        fs.close(commit=False)  # a kill: the host's page cache keeps what was appended
        fs = SefsFs(vol, KEY, counters=counters)  # the mount counts it, once durable
        assert len(fdatasyncs) == start + 2
        assert counters.read(fs.volume_id) == fs.generation == g + 21
        assert read(fs.root.lookup(b"late")) == b"late"
    finally:
        fs.close(commit=False)


def test_a_durable_append_makes_the_write_backs_before_it_durable(
    tmp_path: Path, fdatasyncs: list[int]
) -> None:
    counters = MonotonicCounters(tmp_path / "counters")
    fs = SefsFs(tmp_path / "vol", KEY, counters=counters)
    try:
        fs.sync()
        g = fs.generation
        write(fs.root.create(b"a", 0o644, 0, 0), b"a")
        run(fs.start_writeback())
        start = len(fdatasyncs)
        f = fs.root.create(b"b", 0o644, 0, 0)
        write(f, b"b")
        fs.sync_file(f)  # an fsync: one append, one fdatasync for both records
        assert len(fdatasyncs) == start + 1
        assert counters.read(fs.volume_id) == fs.generation == g + 2
    finally:
        fs.close(commit=False)


class Recorder(FileSystem):
    """A file system that says which kind of commit it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def start_commit(self, inode: Inode | None) -> CommitRun:
        self.asked.append("durable")
        return CommitRun(iter([None]))

    def start_writeback(self) -> CommitRun:
        self.asked.append("writeback")
        return CommitRun(iter([None]))


def test_commits_after_last_closes_are_write_backs_and_the_periodic_one_is_durable() -> None:
    commits = Commits(lambda nid, res: None, lambda fs, exc: None)
    fs = Recorder()
    commits.written_after_close(fs)
    commits.written_after_close(fs)  # during it: one more after it, a write-back too
    while commits.active:
        commits.step()
    assert fs.asked == ["writeback", "writeback"]
    commits.written_after_close(fs)
    commits.background(fs)  # the periodic one, meanwhile: the one after is durable
    commits.written_after_close(fs)
    while commits.active:
        commits.step()
    assert fs.asked == ["writeback", "writeback", "writeback", "durable"]
