"""SEFS on a full host file system (fs/sefs/space.py): each volume lives on a small tmpfs of its
own, so that ENOSPC comes from the kernel as it would from a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from inode_io import read, write
from occlum.abi.errors import SyscallError
from occlum.fs.sefs import SefsFs, volume
from occlum.fs.sefs.space import volume_usage
from occlum.fs.sefs.store import RESERVE, ObjectStore
from occlum.vfs.inode import SetAttr

KEY = bytes(range(32))
MIB = 1 << 20


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "disk"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def mount(opened: list[SefsFs], d: Path) -> SefsFs:
    fs = SefsFs(d, KEY)
    opened.append(fs)
    return fs


def content(n: int, size: int = MIB) -> bytes:
    return (b"%07d" % n) * (size // 7) + bytes(size % 7)


def fill(fs: SefsFs) -> int:
    """Files f0, f1, ... of 1 MiB, each committed, until one does not fit; its number."""
    n = 0
    while True:
        f = fs.root.create(b"f%d" % n, 0o644, 0, 0)
        write(f, content(n))
        fs.sync()
        if fs.unstored(f):
            return n
        n += 1


def eat_the_rest(d: Path) -> None:
    """Take every block the host has left, as another program writing beside the volume."""
    fd = os.open(d / "other", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def garbage(fs: SefsFs) -> int:
    return volume_usage(fs).store.garbage


def test_a_file_that_does_not_fit_keeps_its_committed_contents(
    disk: Path, mounts: list[SefsFs]
) -> None:
    vol = disk / "vol"
    fs = mount(mounts, vol)
    last = fill(fs)
    assert last >= 4
    f = fs.root.lookup(b"f%d" % last)
    (why,) = fs.unstored(f)
    assert "No space left on device" in why and f"inode {f.ino}" in why
    assert fs.unstored(fs.root.lookup(b"f0")) == [] and fs.unstored() == [why]
    # nothing of it reached the host: no partial object, no garbage
    assert garbage(fs) == 0
    fs.close(commit=False)
    again = mount(mounts, vol)
    for n in range(last):
        assert read(again.root.lookup(b"f%d" % n)) == content(n)
    assert read(again.root.lookup(b"f%d" % last)) == b""  # its name was committed, not its data


def test_deletes_and_truncates_commit_on_a_full_disk_and_give_the_room_back(
    disk: Path, mounts: list[SefsFs]
) -> None:
    vol = disk / "vol"
    fs = mount(mounts, vol)
    last = fill(fs)
    eat_the_rest(disk)  # not even a journal record fits now, but for the reserve
    for n in range(3):
        fs.root.unlink(b"f%d" % n)
    fs.sync()  # the record goes into the reserve's room, then the deleted files' objects go
    assert garbage(fs) == 0 and fs.unstored() == []  # and the file that did not fit now did
    t = fs.root.lookup(b"f3")
    t.setattr(SetAttr(size=1000))  # into the middle of a chunk: a chunk of data to commit
    fs.sync()
    # with room again, f3's old extent waits for the next checkpoint
    assert fs.unstored() == [] and garbage(fs) <= 1
    assert (vol / RESERVE).stat().st_blocks * 512 >= MIB  # taken back
    write(fs.root.create(b"g", 0o644, 0, 0), content(99))
    fs.sync()
    assert fs.unstored() == []
    fs.close(commit=False)
    again = mount(mounts, vol)
    names = sorted(e.name for e in again.root.readdir())
    assert names == sorted([b"g", *(b"f%d" % n for n in range(3, last + 1))])
    assert read(again.root.lookup(b"f3")) == content(3)[:1000]
    assert read(again.root.lookup(b"g")) == content(99)
    for n in range(4, last + 1):
        assert read(again.root.lookup(b"f%d" % n)) == content(n)


def test_without_the_reserve_a_delete_on_a_full_disk_cannot_commit(
    disk: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the control for the test above: what the reserve is for
    monkeypatch.setattr(ObjectStore, "make_reserve", lambda self, size: False)
    fs = mount(mounts, disk / "vol")
    fill(fs)
    eat_the_rest(disk)
    fs.root.unlink(b"f0")
    with pytest.raises(Exception) as e:
        fs.sync()
    assert getattr(e.value, "errno", None) == errno.ENOSPC


def test_a_checkpoint_on_a_full_disk_uses_the_reserve(disk: Path, mounts: list[SefsFs]) -> None:
    vol = disk / "vol"
    fs = mount(mounts, vol)
    last = fill(fs)
    eat_the_rest(disk)
    fs.root.unlink(b"f%d" % last)  # the file that did not fit: nothing left to store
    fs.compact()
    assert fs.unstored() == [] and volume_usage(fs).store.journal_bytes == 0


def test_the_next_checkpoint_removes_garbage(tmp_path: Path, mounts: list[SefsFs]) -> None:
    vol = tmp_path / "vol"
    fs = mount(mounts, vol)
    write(fs.root.create(b"f", 0o644, 0, 0), content(1, 3 * MIB))
    fs.sync()
    # what a crash between an object's write and its commit leaves, or a version of SEFS that
    # kept the part of an object that fitted
    for _ in range(3):
        (vol / os.urandom(16).hex()).write_bytes(os.urandom(MIB))
    fs.root.unlink(b"f")  # a journal commit: its objects stay until the next checkpoint
    fs.sync()
    before = volume_usage(fs)
    assert before.store.garbage == 4 and before.live_bytes == 0
    fs.compact()
    after = volume_usage(fs)
    assert after.store.garbage == 0 and after.store.object_bytes < 64 * 1024
    fs.close(commit=False)
    assert sorted(os.listdir(vol)) == sorted(mount(mounts, vol).committed_names() | {
        "superblock", RESERVE
    })  # fmt: skip


def test_live_and_stored_bytes(tmp_path: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, tmp_path / "vol")
    write(fs.root.create(b"a", 0o644, 0, 0), content(1, 2 * MIB))
    sparse = fs.root.create(b"sparse", 0o644, 0, 0)
    sparse.setattr(SetAttr(size=64 * MIB))  # a hole: not live data, not stored
    fs.compact()
    u = volume_usage(fs)
    assert u.files == 2 and u.live_bytes == 2 * MIB
    assert 2 * MIB <= u.store.object_bytes < 2 * MIB + 64 * 1024
    assert u.store.reserve_bytes >= MIB and 1.0 <= u.overhead < 1.05


# --- the store ---------------------------------------------------------------------------------


def test_an_object_that_does_not_fit_leaves_nothing_behind(disk: Path) -> None:
    store = ObjectStore(disk / "s", KEY, mac_only=False)
    try:
        store.put(content(1))
        with pytest.raises(SyscallError) as e:
            store.put(content(2, 16 * MIB))
        assert e.value.errno == errno.ENOSPC and store.short
        assert len(os.listdir(disk / "s")) == 1  # the first object only, no part of the second
    finally:
        store.close()


def test_the_reserve_is_allocated_given_back_and_taken_again(disk: Path) -> None:
    store = ObjectStore(disk / "s", KEY, mac_only=False)
    try:
        assert store.make_reserve(2 * MIB) and not store.short
        reserve = disk / "s" / RESERVE
        assert reserve.stat().st_blocks * 512 >= 2 * MIB
        eat_the_rest(disk)
        assert store.nearly_full()
        assert store.release_reserve() and store.short
        assert reserve.stat().st_blocks == 0
        store.put(content(1))  # the room it gave back
        assert not store.release_reserve()  # nothing left to give
        assert not store.make_reserve(2 * MIB) and store.short  # no room to take it again
        (disk / "other").unlink()
        assert store.make_reserve(2 * MIB) and not store.short and not store.nearly_full()
    finally:
        store.close()


def test_sweep_removes_what_no_state_names_and_usage_counts_it(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s", KEY, mac_only=False)
    try:
        kept = store.put(content(1))
        lost = store.put(content(2))
        store.make_reserve(MIB)
        (tmp_path / "s" / "journal-00").write_bytes(bytes(4096))
        keep = {kept.name}
        u = store.usage(keep)
        assert (u.objects, u.garbage) == (2, 2) and u.reserve_bytes >= MIB
        assert u.garbage_bytes == u.journal_bytes + u.object_bytes // 2
        assert store.sweep(keep) == 2
        assert sorted(os.listdir(tmp_path / "s")) == sorted([kept.name, RESERVE])
        assert store.usage(keep).garbage == 0 and lost.name not in os.listdir(tmp_path / "s")
    finally:
        store.close()


def test_a_checkpoint_whose_rename_is_not_made_durable_still_switches(
    tmp_path: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = tmp_path / "vol"
    fs = mount(mounts, vol)
    write(fs.root.create(b"f", 0o644, 0, 0), content(1))
    fs.sync()
    real = fs.store.sync_dir
    calls = 0

    def failing() -> None:  # the directory fsync after the superblock's rename fails
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.EIO, "Input/output error")
        real()

    monkeypatch.setattr(fs.store, "sync_dir", failing)
    with pytest.raises(SyscallError):
        fs.compact()
    monkeypatch.undo()
    # the new superblock is in place: commits go to the journal it names, and a sweep on a
    # nearly full host would keep its metadata
    write(fs.root.create(b"g", 0o644, 0, 0), content(2))
    fs.sync()
    sb = fs.store.read_superblock()
    assert sb is not None and {sb.meta.name, "journal-" + sb.journal.hex()} <= fs.committed_names()
    fs.store.sweep(fs.committed_names())
    fs.close(commit=False)
    again = mount(mounts, vol)
    assert read(again.root.lookup(b"f")) == content(1)
    assert read(again.root.lookup(b"g")) == content(2)


def test_a_full_journal_on_a_full_disk_still_takes_deletes_until_a_checkpoint_fits(
    disk: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    # small files live in the journal; a checkpoint must move them out, which needs room
    monkeypatch.setattr(volume, "JOURNAL_MAX", 512 * 1024)
    vol = disk / "vol"
    fs = mount(mounts, vol)
    n = 0
    while not fs.unstored():
        write(fs.root.create(b"s%d" % n, 0o644, 0, 0), content(n, 100 * 1024))
        fs.sync()
        n += 1
    eat_the_rest(disk)
    for k in range(n):  # every sync commits, none raises
        fs.root.unlink(b"s%d" % k)
        fs.sync()
    assert fs.unstored() == []
    fs.compact()
    u = volume_usage(fs)
    assert u.files == 0 and u.store.garbage == 0 and u.store.journal_bytes == 0
    fs.close(commit=False)
    assert mount(mounts, vol).root.readdir() == []


def test_creating_files_on_a_full_disk_cannot_eat_the_reserve(
    disk: Path, mounts: list[SefsFs]
) -> None:
    vol = disk / "vol"
    fs = mount(mounts, vol)
    last = fill(fs)
    eat_the_rest(disk)
    refused = 0
    for k in range(100):  # a program that keeps making (empty) files and writing to them
        f = fs.root.create(b"new%d" % k, 0o644, 0, 0)
        write(f, content(k, 4096))
        try:
            fs.sync()
        except SyscallError as e:
            assert e.errno == errno.ENOSPC
            refused += 1
    assert refused > 80  # without the rule: every one, in the reserve's room
    fs.root.unlink(b"f0")  # and the delete still commits, with them
    fs.sync()
    fs.close(commit=False)
    again = mount(mounts, vol)
    names = {e.name for e in again.root.readdir()}
    assert b"f0" not in names and b"f1" in names and b"f%d" % last in names
