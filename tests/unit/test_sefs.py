"""SEFS without a process: persistence, secrecy, tamper detection and crash atomicity."""

from __future__ import annotations

import errno
import mmap
import os
import random
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inode_io import read, write
from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFIFO, S_IFMT, Stat, pack_stat
from occlum.enclave.counter import MonotonicCounters
from occlum.fs.sefs import CHUNK, SEFS_MAGIC, SefsFs, volume
from occlum.fs.sefs.closes import CloseWatch
from occlum.fs.sefs.files import SefsFile
from occlum.fs.sefs.journal import JOURNAL_PREFIX
from occlum.fs.sefs.layout import EXTENT_CHUNKS
from occlum.fs.sefs.store import PAD, RESERVE, SUPERBLOCK
from occlum.vfs.inode import Inode, SetAttr

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

Snapshot = dict[bytes, tuple[object, ...]]


def mount(opened: list[SefsFs], d: Path, key: bytes = KEY, **kw: bool) -> SefsFs:
    fs = SefsFs(d, key, **kw)
    opened.append(fs)
    return fs


def snapshot(fs: SefsFs, *, contents: bool = True) -> Snapshot:
    """Everything a program could observe, by path (atime aside: reading it changes it)."""
    out: Snapshot = {}

    def walk(d: Inode, prefix: bytes) -> None:
        for e in sorted(d.readdir(), key=lambda e: e.name):
            node = d.lookup(e.name)
            st = node.getattr()
            extra: object = None
            if node.is_regular and contents:
                extra = read(node)
            elif node.is_symlink:
                extra = node.readlink()
            path = prefix + e.name
            out[path] = (node.ino, st.mode, st.uid, st.gid, st.nlink, st.size, st.mtime_ns, extra)
            if node.is_dir:
                walk(node, path + b"/")

    st = fs.root.getattr()
    out[b"/"] = (fs.root.ino, st.mode, st.uid, st.gid, st.nlink, st.mtime_ns)
    walk(fs.root, b"/")
    return out


def host_bytes(d: Path) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(d.iterdir()) if p.is_file()]


def objects(d: Path) -> set[str]:
    return {p.name for p in d.iterdir() if len(p.name) == 32}


def journal_name(d: Path) -> str:
    (name,) = [n for n in os.listdir(d) if n.startswith(JOURNAL_PREFIX)]
    return name


def record_lengths(journal: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(journal):
        (n,) = struct.unpack_from("<I", journal, pos)
        out.append(n)
        pos += 20 + n
    return out


def journal_size(d: Path) -> int:
    return (d / journal_name(d)).stat().st_size


def populate(fs: SefsFs) -> None:
    """A tree that uses every kind of node and operation the VFS offers."""
    r = fs.root
    big = r.create(b"big", 0o644, 1000, 1000)
    write(big, os.urandom(CHUNK * 2 + 1234))
    write(big, b"\0" * CHUNK, CHUNK)  # a hole-like all-zero chunk in the middle
    small = r.create(b"small", 0o600, 0, 0)
    write(small, b"hello world")
    d = r.mkdir(b"dir", 0o750, 5, 6)
    sub = d.mkdir(b"sub", 0o700, 0, 0)
    sub.create(b"empty", 0o644, 0, 0)
    d.link(b"small-link", small)
    d.symlink(b"sym", b"../small", 0, 0)
    d.mknod(b"fifo", S_IFIFO | 0o644, 0, 0, 0)
    t = r.create(b"truncated", 0o644, 0, 0)
    write(t, b"x" * 10000)
    t.setattr(SetAttr(size=100))
    grow = r.create(b"grown", 0o644, 0, 0)
    grow.setattr(SetAttr(size=CHUNK + 7))
    r.create(b"old-name", 0o644, 0, 0)
    r.rename(b"old-name", d, b"new-name", 0)
    r.create(b"gone", 0o644, 0, 0)
    r.unlink(b"gone")
    r.mkdir(b"gone-dir", 0o755, 0, 0)
    r.rmdir(b"gone-dir")
    small.setattr(SetAttr(mode=0o640, uid=7, gid=8))
    small.setattr(SetAttr(atime_ns=1_000_000_000, mtime_ns=2_000_000_000))


# --- persistence ---------------------------------------------------------------------------------


def test_round_trip_across_remount(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    populate(fs)
    before = snapshot(fs)
    fs.close()
    fs2 = mount(mounts, vol)
    assert snapshot(fs2) == before
    small = fs2.root.lookup(b"small")
    assert small is fs2.root.lookup(b"dir").lookup(b"small-link")
    assert small.getattr().mtime_ns == 2_000_000_000
    assert fs2.root.lookup(b"dir").lookup(b"fifo").getattr().mode & S_IFMT == S_IFIFO
    # changes after a remount persist too, and new inode numbers do not collide
    n = fs2.root.create(b"new", 0o644, 0, 0)
    assert n.ino not in {v[0] for v in before.values()}
    write(n, b"second generation")
    fs2.root.unlink(b"big")
    after = snapshot(fs2)
    fs2.close()
    assert snapshot(mount(mounts, vol)) == after


def test_native_writes_through_mmap_are_committed(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    f = fs.root.create(b"mapped", 0o644, 0, 0)
    f.setattr(SetAttr(size=8192))
    fd = f.open_host_fd(os.O_RDWR)
    m = mmap.mmap(fd, 8192)
    os.close(fd)
    fs.sync()
    m[4096:4101] = b"store"  # no write(2): only the shared mapping changes the page
    m.close()
    fs.close()
    assert read(mount(mounts, vol).root.lookup(b"mapped"))[4096:4101] == b"store"


def test_unlinked_open_file_keeps_working_and_is_not_persisted(
    vol: Path, mounts: list[SefsFs]
) -> None:
    fs = mount(mounts, vol)
    f = fs.root.create(b"tmp", 0o644, 0, 0)
    fd = f.open_host_fd(os.O_RDWR)
    fs.root.unlink(b"tmp")
    os.write(fd, b"still writable")
    fs.sync()
    assert os.pread(fd, 100, 0) == b"still writable"
    os.close(fd)
    fs.close()
    assert mount(mounts, vol).root.readdir() == []


def test_only_changed_chunks_are_rewritten(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    big = fs.root.create(b"big", 0o644, 0, 0)
    data = bytearray(os.urandom(CHUNK * (EXTENT_CHUNKS + 4)))
    write(big, data)
    small = fs.root.create(b"small", 0o644, 0, 0)
    write(small, b"a")
    start = objects(vol)
    fs.sync()
    first = objects(vol)
    assert len(first - start) == 2  # big's two extents; small's chunk went into the journal
    write(small, b"b")
    fs.sync()
    assert objects(vol) == first  # one changed chunk: one journal record, no host file
    # one changed chunk of big: in the journal too; the old extent still holds the others
    data[CHUNK * 2 + 5] ^= 1
    write(big, data[CHUNK * 2 + 5 : CHUNK * 2 + 6], CHUNK * 2 + 5)
    size = journal_size(vol)
    fs.sync()
    assert objects(vol) == first and journal_size(vol) > size
    size = journal_size(vol)
    fs.sync()
    assert journal_size(vol) == size  # nothing changed: no commit at all
    # rewriting the whole first extent makes a new one
    data[: CHUNK * EXTENT_CHUNKS] = os.urandom(CHUNK * EXTENT_CHUNKS)
    write(big, data)
    fs.sync()
    assert len(objects(vol) - first) == 1
    # the checkpoint at unmount frees the old extent and moves small's chunk into an object
    fs.close()
    assert len(objects(vol)) == 2 + 1 + 1  # big's extents, small, metadata
    assert journal_size(vol) == 0
    fs2 = mount(mounts, vol)
    assert read(fs2.root.lookup(b"big")) == data
    assert read(fs2.root.lookup(b"small")) == b"b"


def test_small_commits_only_append_to_the_journal(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    db = fs.root.create(b"db", 0o644, 0, 0)
    write(db, os.urandom(3 * CHUNK))
    fs.sync()
    before = sorted(os.listdir(vol))
    for i in range(50):
        write(db, os.urandom(4096), (i * 7919 * 4096) % (3 * CHUNK))
        j = fs.root.create(b"db-journal", 0o644, 0, 0)
        write(j, os.urandom(512))
        fs.sync()
        fs.root.unlink(b"db-journal")
        fs.sync()
    assert sorted(os.listdir(vol)) == before  # no object made or removed: appends only
    expected = snapshot(fs)
    fs.close(commit=False)
    assert snapshot(mount(mounts, vol)) == expected


def test_a_full_journal_becomes_a_checkpoint(
    vol: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volume, "JOURNAL_MAX", 64 * 1024)
    fs = mount(mounts, vol)
    f = fs.root.create(b"f", 0o644, 0, 0)
    journals = set()
    for i in range(40):
        write(f, b"%d" % i)
        fs.sync()
        journals |= {n for n in os.listdir(vol) if n.startswith(JOURNAL_PREFIX)}
        assert journal_size(vol) <= 64 * 1024 + 2 * PAD
    assert len(journals) > 2  # checkpoints started new journals ...
    assert len([n for n in os.listdir(vol) if n.startswith(JOURNAL_PREFIX)]) == 1  # ... alone
    expected = snapshot(fs)
    fs.close(commit=False)
    assert snapshot(mount(mounts, vol)) == expected


def test_sync_without_changes_does_not_commit(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    fs.root.create(b"f", 0o644, 0, 0)
    fs.sync()
    g = fs.generation
    fs.sync()
    assert fs.generation == g
    fs.close()  # the checkpoint at unmount is one more commit
    fs2 = mount(mounts, vol)
    assert fs2.generation == g + 1
    listing = sorted(os.listdir(vol))
    fs2.sync()
    assert fs2.generation == g + 1 and sorted(os.listdir(vol)) == listing
    assert journal_size(vol) == 0


def test_statfs_and_fstype(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    s = fs.statfs()
    assert s.f_type == SEFS_MAGIC and s.blocks > 0 and s.namelen == 255
    assert fs.fstype == "sefs"


def test_bad_key_length(vol: Path) -> None:
    with pytest.raises(SyscallError) as e:
        SefsFs(vol, b"short")
    assert e.value.errno == errno.EINVAL


# --- what the host sees ------------------------------------------------------------------------


def test_no_plaintext_reaches_the_host(vol: Path, mounts: list[SefsFs]) -> None:
    secrets = [b"KNOWN-CONTENT-", b"SECRET-FILE-NAME", b"SECRET-DIR-NAME", b"/SECRET/TARGET"]
    fs = mount(mounts, vol)
    d = fs.root.mkdir(secrets[2], 0o755, 0, 0)
    f = d.create(secrets[1], 0o644, 0, 0)
    write(f, secrets[0] * 50000)
    d.symlink(b"link", secrets[3], 0, 0)
    fs.sync()  # a journal record: the small file's contents, the names, the link
    assert journal_size(vol) > 0

    def check() -> None:
        for name, data in host_bytes(vol):
            for s in secrets:
                assert s not in data and s.decode() not in name
            # only sizes rounded to PAD leak
            if name.startswith(JOURNAL_PREFIX):
                assert all((length - 28) % PAD == 0 for length in record_lengths(data))
            elif name == RESERVE:
                assert not data.strip(b"\0")  # zeros, allocated for a full disk
            elif name != SUPERBLOCK:
                assert (len(data) - 28) % PAD == 0

    check()
    fs.close()
    check()
    # the same volume MAC-only is readable on the host, but still verified
    mac = vol.parent / "mac"
    fs = mount(mounts, mac, mac_only=True)
    write(fs.root.create(b"visible", 0o644, 0, 0), secrets[0])
    fs.close()
    assert any(secrets[0] in data for _, data in host_bytes(mac))
    assert read(mount(mounts, mac, mac_only=True).root.lookup(b"visible")) == secrets[0]


def test_wrong_key_and_wrong_mode(vol: Path, mounts: list[SefsFs]) -> None:
    mount(mounts, vol).close()
    with pytest.raises(SyscallError) as e:
        SefsFs(vol, OTHER_KEY)
    assert e.value.errno == errno.EIO and "wrong key" in e.value.why and str(vol) in e.value.why
    with pytest.raises(SyscallError) as e:
        SefsFs(vol, KEY, mac_only=True)
    assert e.value.errno == errno.EIO and "MAC" in e.value.why


def test_missing_superblock_is_not_reformatted(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    fs.root.create(b"f", 0o644, 0, 0)
    fs.close()
    (vol / SUPERBLOCK).unlink()
    with pytest.raises(SyscallError) as e:
        SefsFs(vol, KEY)
    assert e.value.errno == errno.EIO and "superblock is missing" in e.value.why
    assert objects(vol)  # nothing was deleted by the failed attempt


# --- tampering -----------------------------------------------------------------------------------


def counters_of(d: Path) -> MonotonicCounters:
    """The platform counters for the volume at ``d`` (and every copy of it)."""
    return MonotonicCounters(d.parent / "counters")


def build_tamper_volume(d: Path, mac_only: bool = False) -> dict[bytes, bytes]:
    """Three files in a checkpoint, and one more in a journal record."""
    fs = SefsFs(d, KEY, mac_only=mac_only, counters=counters_of(d))
    expected = {b"big": os.urandom(CHUNK * 2 + 10), b"small": b"small file", b"other": b"other"}
    for name, data in expected.items():
        write(fs.root.create(name, 0o644, 0, 0), data)
    fs.close()
    fs = SefsFs(d, KEY, mac_only=mac_only, counters=counters_of(d))
    expected[b"journaled"] = b"kept in the journal"
    write(fs.root.create(b"journaled", 0o644, 0, 0), expected[b"journaled"])
    fs.sync()
    fs.close(commit=False)
    return expected


def check_detected(d: Path, expected: dict[bytes, bytes], mac_only: bool = False) -> None:
    """The mount fails with EIO, or every file reads its true contents or fails with EIO; and
    something fails."""
    try:
        fs = SefsFs(d, KEY, mac_only=mac_only, counters=MonotonicCounters(d.parent / "counters"))
    except SyscallError as e:
        assert e.errno == errno.EIO, e
        assert str(d) in e.why
        return
    failed = 0
    try:
        for name, data in expected.items():
            try:
                got = read(fs.root.lookup(name))
            except SyscallError as e:
                assert e.errno == errno.EIO, e
                failed += 1
                continue
            assert got == data, f"{name!r}: wrong data"
    finally:
        fs.close(commit=False)
    assert failed, "tampering went unnoticed"


Tamper = Callable[[Path, str], None]


def flip_start(d: Path, name: str) -> None:
    b = bytearray((d / name).read_bytes())
    b[0] ^= 1
    (d / name).write_bytes(b)


def flip_middle(d: Path, name: str) -> None:
    b = bytearray((d / name).read_bytes())
    b[len(b) // 2] ^= 0x40
    (d / name).write_bytes(b)


def flip_end(d: Path, name: str) -> None:
    b = bytearray((d / name).read_bytes())
    b[-1] ^= 0x80
    (d / name).write_bytes(b)


def truncate(d: Path, name: str) -> None:
    b = (d / name).read_bytes()
    (d / name).write_bytes(b[: len(b) - 1])


def truncate_empty(d: Path, name: str) -> None:
    (d / name).write_bytes(b"")


def delete(d: Path, name: str) -> None:
    (d / name).unlink()


TAMPERS: list[Tamper] = [flip_start, flip_middle, flip_end, truncate, truncate_empty, delete]


@pytest.mark.parametrize("mac_only", [False, True])
@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda t: t.__name__)
def test_tampering_with_any_object_is_detected(
    tmp_path: Path, tamper: Tamper, mac_only: bool
) -> None:
    base = tmp_path / "base"
    expected = build_tamper_volume(base, mac_only)
    names = [p.name for p in base.iterdir() if p.name != RESERVE]
    # big's extent, small's and other's (one object: moved out of the journal together),
    # metadata, superblock, journal (and the reserve, zeros)
    assert len(names) == 5 and journal_size(base) > 0
    for name in [*names]:
        d = tmp_path / f"t-{name}"
        shutil.copytree(base, d)
        tamper(d, name)
        check_detected(d, expected, mac_only)


def test_swapping_objects_is_detected(tmp_path: Path) -> None:
    base = tmp_path / "base"
    expected = build_tamper_volume(base)
    names = sorted(objects(base))
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = tmp_path / f"s-{a}-{b}"
            shutil.copytree(base, d)
            (d / a).rename(d / "x")
            (d / b).rename(d / a)
            (d / "x").rename(d / b)
            check_detected(d, expected)


def test_replaying_an_older_object_is_detected(tmp_path: Path, mounts: list[SefsFs]) -> None:
    vol = tmp_path / "vol"
    fs = mount(mounts, vol)
    f = fs.root.create(b"f", 0o644, 0, 0)
    write(f, b"version one")
    fs.sync()
    old = {n: (vol / n).read_bytes() for n in objects(vol)}
    write(f, b"version TWO")
    fs.sync()
    fs.close()
    new = objects(vol) - set(old)
    assert len(new) == 2  # f's chunk and the metadata
    for target in new:
        for source, blob in old.items():
            d = tmp_path / f"r-{target}-{source}"
            shutil.copytree(vol, d)
            (d / target).write_bytes(blob)  # an older object in the newer one's place
            check_detected(d, {b"f": b"version TWO"})


def test_replaying_an_older_superblock_is_detected(tmp_path: Path, mounts: list[SefsFs]) -> None:
    vol = tmp_path / "vol"
    fs = mount(mounts, vol)
    f = fs.root.create(b"f", 0o644, 0, 0)
    write(f, b"version one")
    fs.sync()
    old_sb = (vol / SUPERBLOCK).read_bytes()
    write(f, b"version two")
    fs.close()
    (vol / SUPERBLOCK).write_bytes(old_sb)
    with pytest.raises(SyscallError) as e:
        SefsFs(vol, KEY)
    assert e.value.errno == errno.EIO and "metadata" in e.value.why


def test_a_damaged_file_does_not_break_the_rest(vol: Path, mounts: list[SefsFs]) -> None:
    expected = build_tamper_volume(vol)
    fs = mount(mounts, vol)
    small = fs.root.lookup(b"small")
    assert isinstance(small, SefsFile) and small.chunks[0] is not None
    flip_middle(vol, small.chunks[0].ref.name)
    with pytest.raises(SyscallError) as e:
        small.open_host_fd(os.O_RDONLY)
    assert e.value.errno == errno.EIO and "contents of inode" in e.value.why
    assert read(fs.root.lookup(b"big")) == expected[b"big"]
    # the damaged file can still be removed, and its object then goes away
    fs.root.unlink(b"small")
    fs.close()
    fs2 = mount(mounts, vol)
    assert sorted(e.name for e in fs2.root.readdir()) == [b"big", b"journaled", b"other"]
    assert len(objects(vol)) == 4  # big, other, journaled (moved out of the journal), metadata


# --- crash atomicity -----------------------------------------------------------------------------


def mutate(fs: SefsFs, rng: random.Random) -> None:
    """A handful of random changes to the tree made by :func:`populate`."""
    r = fs.root
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        names = [e.name for e in r.readdir()]
        if op == 0:
            write(
                r.create(b"n%d" % rng.randrange(1 << 30), 0o644, 0, 0),
                os.urandom(rng.randrange(1, 3 * CHUNK)),
            )
        elif op == 1 and b"big" in names:
            write(r.lookup(b"big"), os.urandom(100), rng.randrange(3 * CHUNK))
        elif op == 2:
            victim = rng.choice(names)
            if not r.lookup(victim).is_dir:
                r.unlink(victim)
        elif op == 3 and b"small" in names:
            r.rename(b"small", r, b"small%d" % rng.randrange(100), 0)
        elif op == 4:
            r.mkdir(b"d%d" % rng.randrange(1 << 30), 0o755, 0, 0)
        elif op == 5 and b"truncated" in names:
            r.lookup(b"truncated").setattr(SetAttr(size=rng.randrange(2 * CHUNK)))


@pytest.mark.parametrize("kind", ["journal", "checkpoint"])
def test_a_crash_at_any_step_of_a_commit_leaves_old_or_new(
    tmp_path: Path, mounts: list[SefsFs], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "checkpoint":
        monkeypatch.setattr(volume, "JOURNAL_MAX", 0)  # every commit is a checkpoint
    rng = random.Random(1234)
    vol = tmp_path / "vol"
    fs = mount(mounts, vol)
    populate(fs)
    fs.sync()
    crashes: list[Path] = []
    journal_before = 0

    def crash_here(step: str) -> None:
        d = tmp_path / f"crash{len(crashes)}-{step}"
        shutil.copytree(vol, d)
        crashes.append(d)
        if step == "journal-appended":
            # and a crash in the middle of that append: a torn record
            torn = tmp_path / f"crash{len(crashes)}-torn"
            shutil.copytree(vol, torn)
            with open(torn / journal_name(torn), "r+b") as f:
                f.truncate(rng.randrange(journal_before + 1, journal_size(vol)))
            crashes.append(torn)

    states = [snapshot(fs)]
    for _ in range(4):
        mutate(fs, rng)
        journal_before = journal_size(vol)
        fs.store.on_step = crash_here
        fs.sync()
        fs.store.on_step = None
        states.append(snapshot(fs))
    fs.close()
    assert len(crashes) >= (8 if kind == "journal" else 12)
    mounted = set()
    for d in crashes:
        # a crash may also leave a torn temporary superblock and half an object behind
        if rng.random() < 0.5:
            (d / "superblock.tmp").write_bytes(os.urandom(40))
        (d / os.urandom(16).hex()).write_bytes(os.urandom(100))
        crashed = mount(mounts, d)
        snap = snapshot(crashed)
        assert snap in states, f"{d.name}: neither the old nor the new state"
        mounted.add(states.index(snap))
        # the next checkpoint cleans up whatever the crash left
        crashed.root.create(b"after-crash", 0o644, 0, 0)
        crashed.sync()
        crashed.close()
        assert objects(d) == {oid.hex() for oid in mount(mounts, d).referenced_objects()}
        assert not (d / "superblock.tmp").exists()
    assert mounted == {0, 1, 2, 3, 4}


def test_a_crash_during_the_first_format(tmp_path: Path, mounts: list[SefsFs]) -> None:
    vol = tmp_path / "vol"
    crashes: list[Path] = []
    original = SefsFs.sync

    def sync_with_crashes(self: SefsFs) -> None:
        def crash_here(step: str) -> None:
            d = tmp_path / f"crash{len(crashes)}"
            shutil.copytree(vol, d)
            crashes.append(d)

        self.store.on_step = crash_here
        original(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SefsFs, "sync", sync_with_crashes)
        SefsFs(vol, KEY).close(commit=False)
    assert crashes
    for d in crashes:
        fs = mount(mounts, d)
        assert fs.root.readdir() == []
        fs.close()
        listing = set(os.listdir(d))
        assert listing == {SUPERBLOCK, RESERVE, journal_name(d)} | objects(d)
        assert len(objects(d)) == 1


def test_a_failed_commit_leaves_the_old_state_and_can_be_retried(
    vol: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = mount(mounts, vol)
    write(fs.root.create(b"f", 0o644, 0, 0), b"old")
    fs.sync()
    write(fs.root.lookup(b"f"), os.urandom(CHUNK * EXTENT_CHUNKS * 3))
    real = fs.store._write_file
    calls = 0

    def failing(name: str, data: bytes | bytearray) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(name, data)

    monkeypatch.setattr(fs.store, "_write_file", failing)
    fs.sync()  # f does not fit: it keeps its committed contents and says why
    (why,) = fs.unstored(fs.root.lookup(b"f"))
    assert "No space left on device" in why and f"SEFS {vol}: inode" in why
    shutil.copytree(vol, vol.parent / "after-failure")
    old = mount(mounts, vol.parent / "after-failure")
    assert read(old.root.lookup(b"f")) == b"old"
    assert objects(old.store.root) == {o.hex() for o in old.referenced_objects()}  # no partial
    monkeypatch.undo()
    expected = snapshot(fs)
    fs.close()
    fs2 = mount(mounts, vol)
    assert snapshot(fs2) == expected
    assert objects(vol) == {oid.hex() for oid in fs2.referenced_objects()}


# --- the journal and whole-volume rollback -------------------------------------------------------


def test_a_rolled_back_copy_of_the_whole_volume_is_refused(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    counters = counters_of(vol)
    fs = SefsFs(vol, KEY, counters=counters)
    f = fs.root.create(b"f", 0o644, 0, 0)
    write(f, b"version one")
    fs.sync()
    shutil.copytree(vol, tmp_path / "old-copy")  # the host keeps last week's copy
    write(f, b"version two")
    fs.sync()
    cut = journal_size(vol)
    write(f, b"version six")
    fs.sync()
    fs.close(commit=False)
    # the copy, and the journal cut back by whole records, both look like an older volume
    shutil.copytree(vol, tmp_path / "cut")
    with open(tmp_path / "cut" / journal_name(vol), "r+b") as j:
        j.truncate(cut)
    for d in (tmp_path / "old-copy", tmp_path / "cut"):
        shutil.rmtree(vol)
        shutil.copytree(d, vol)
        with pytest.raises(SyscallError) as e:
            SefsFs(vol, KEY, counters=counters)
        assert e.value.errno == errno.EIO and "rolled back" in e.value.why
    # without the platform's counters the same copy mounts: the counter is what catches it
    assert read(SefsFs(vol, KEY).root.lookup(b"f")) == b"version two"


def test_a_torn_journal_record_is_dropped_but_a_damaged_one_is_refused(
    vol: Path, mounts: list[SefsFs]
) -> None:
    fs = mount(mounts, vol)
    f = fs.root.create(b"f", 0o644, 0, 0)
    write(f, b"committed")
    fs.sync()
    end = journal_size(vol)
    write(f, b"crashed..")
    fs.sync()
    fs.close(commit=False)
    journal = vol / journal_name(vol)
    full = journal.read_bytes()
    journal.write_bytes(full[: end + 100])  # the append never finished
    fs2 = mount(mounts, vol)
    assert read(fs2.root.lookup(b"f")) == b"committed"
    fs2.close(commit=False)
    assert journal_size(vol) == end  # the torn tail is cut off
    damaged = bytearray(full)
    damaged[end // 2] ^= 1  # inside the first, complete record
    journal.write_bytes(damaged)
    with pytest.raises(SyscallError) as e:
        SefsFs(vol, KEY)
    assert e.value.errno == errno.EIO and "journal record 0 fails verification" in e.value.why


def test_a_failed_append_leaves_the_old_state_and_can_be_retried(
    vol: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = mount(mounts, vol)
    f = fs.root.create(b"f", 0o644, 0, 0)
    write(f, b"old")
    fs.sync()
    write(f, b"new")
    real = os.fdatasync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(SyscallError) as e:
        fs.sync()
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fdatasync", real)
    shutil.copytree(vol, vol.parent / "after-failure")
    assert read(mount(mounts, vol.parent / "after-failure").root.lookup(b"f")) == b"old"
    fs.sync()  # the retry writes the change again, not a reference to the failed record
    fs.close(commit=False)
    assert read(mount(mounts, vol).root.lookup(b"f")) == b"new"


# --- the last close ------------------------------------------------------------------------------


def closes(watch: CloseWatch, expect_some: bool = True) -> set[SefsFs]:
    """What the watch reports once the kernel has sent its events (a process's files are
    released a moment after it is reaped)."""
    deadline = time.monotonic() + (2.0 if expect_some else 0.1)
    seen: set[SefsFs] = set()
    while time.monotonic() < deadline and not (seen and expect_some):
        seen |= watch.read()
        time.sleep(0.01)
    return seen


def test_the_last_writable_close_is_seen_and_ends_the_rereading(
    vol: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = mount(mounts, vol)
    watch = CloseWatch()
    fs.close_watch = watch
    try:
        f = fs.root.create(b"f", 0o644, 0, 0)
        assert isinstance(f, SefsFile)
        a = f.open_host_fd(os.O_RDWR)
        b = f.open_host_fd(os.O_WRONLY)
        r = f.open_host_fd(os.O_RDONLY)
        os.write(a, b"first")
        pid = os.fork()
        if pid == 0:  # a child holds b (a fork copy) for a while
            os.close(a)
            time.sleep(0.3)
            os._exit(0)
        os.close(a)
        os.close(b)
        os.close(r)
        assert closes(watch, expect_some=False) == set() and f.writers  # the child holds b
        os.waitpid(pid, 0)
        assert closes(watch) == {fs}  # the child's exit closed the last writer
        assert not f.writers and f.needs_flush()
        fs.sync()
        assert not f.needs_flush()
        flushes = []
        monkeypatch.setattr(SefsFile, "flush", lambda self, c: flushes.append(self))
        fs.root.create(b"g", 0o644, 0, 0)
        fs.sync()
        assert f not in flushes  # closed for good: f is not read back at every commit any more
        monkeypatch.undo()
        # a shared mapping counts as a writer until it is unmapped
        c = f.open_host_fd(os.O_RDWR)
        m = mmap.mmap(c, 5)
        os.close(c)
        assert closes(watch, expect_some=False) == set() and f.writers
        m[:5] = b"again"
        m.close()
        assert closes(watch) == {fs}
        fs.close()
        assert read(mount(mounts, vol).root.lookup(b"f")) == b"again"
    finally:
        watch.close()


def test_extended_attributes_and_large_owner_ids_persist(vol: Path, mounts: list[SefsFs]) -> None:
    fs = mount(mounts, vol)
    f = fs.root.create(b"f", 0o644, 0, 0)
    f.set_xattr(b"user.bin", b"\x00\xff\x80v", 0)
    f.setattr(SetAttr(uid=2**32 - 2, gid=2**31))
    fs.root.set_xattr(b"trusted.dir", b"d", 0)
    fs.sync()  # one journal record
    fs.close(commit=False)  # as if the LibOS died: the journal alone holds them
    fs2 = mount(mounts, vol)
    f2 = fs2.root.lookup(b"f")
    assert f2.get_xattr(b"user.bin") == b"\x00\xff\x80v"
    st = f2.getattr()
    assert (st.uid, st.gid) == (2**32 - 2, 2**31)
    assert fs2.root.list_xattr() == [b"trusted.dir"]
    f2.remove_xattr(b"user.bin")
    fs2.close()  # a checkpoint
    fs3 = mount(mounts, vol)
    f3 = fs3.root.lookup(b"f")
    assert f3.list_xattr() == []
    with pytest.raises(SyscallError) as err:
        f3.get_xattr(b"user.bin")
    assert err.value.errno == errno.ENODATA
    assert fs3.root.get_xattr(b"trusted.dir") == b"d"


def test_stat_reports_ids_unsigned_even_if_stored_negative() -> None:
    # volumes written before ids were decoded as unsigned hold negative ones
    raw = pack_stat(Stat(dev=1, ino=2, mode=0o100644, uid=-(2**31), gid=-2))
    assert struct.unpack_from("<II", raw, 28) == (2**31, 2**32 - 2)


def test_fsync_of_a_file_reads_back_no_other_file_open_for_writing(
    tmp_path: Path, mounts: list[SefsFs], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server keeps files open for writing (PostgreSQL: its WAL segment, relation files);
    fsync of one of them commits it and the tree, and leaves the others' contents as last
    committed until their own fsync or a sync, as Linux makes only the file itself durable."""
    vol = tmp_path / "vol"
    fs = mount(mounts, vol)
    a = fs.root.create(b"a", 0o644, 0, 0)
    b = fs.root.create(b"b", 0o644, 0, 0)
    assert isinstance(a, SefsFile) and isinstance(b, SefsFile)
    fa, fb = a.open_host_fd(os.O_RDWR), b.open_host_fd(os.O_RDWR)
    os.pwrite(fa, b"a, first", 0)
    os.pwrite(fb, b"b, first", 0)
    fs.sync()
    os.pwrite(fa, b"a, second", 0)
    os.pwrite(fb, b"b, second", 0)
    fs.root.create(b"c", 0o644, 0, 0)  # the tree's changes go with it
    flushed: list[SefsFile] = []
    real = SefsFile.flush
    monkeypatch.setattr(SefsFile, "flush", lambda f, c: (flushed.append(f), real(f, c))[1])
    fs.sync_file(a)
    assert a in flushed and b not in flushed  # (and c, new and closed)
    flushed.clear()

    def as_on_disk(name: str) -> dict[bytes, bytes]:
        shutil.copytree(vol, tmp_path / name)  # what a crash now would leave
        copy = mount(mounts, tmp_path / name)
        return {n: read(copy.root.lookup(n)) for n in (b"a", b"b", b"c")}

    assert as_on_disk("after-fsync") == {b"a": b"a, second", b"b": b"b, first", b"c": b""}
    fs.sync()
    assert b in flushed  # sync reads back every file open for writing
    assert as_on_disk("after-sync") == {b"a": b"a, second", b"b": b"b, second", b"c": b""}
    os.close(fa)
    os.close(fb)
