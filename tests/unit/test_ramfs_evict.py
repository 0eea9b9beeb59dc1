"""ramfs and tmpfs files let their memfd go when no program holds them, and get it back
unchanged (fs/filecache.py, RamFile.evict): the number of files is not bounded by the
supervisor's descriptors."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import resource
from collections.abc import Iterator

import pytest

from inode_io import read, write
from occlum.fs.ramfs import RamFile, RamFs
from occlum.platform import native
from occlum.vfs.inode import Inode, SetAttr, Stat

PAGE = 4096


def _backing() -> int | None:
    try:
        return native.detached_mount(b"tmpfs", {b"size": b"64m"})
    except OSError:
        return None


@pytest.fixture(params=["memfd", "tmpfs"])
def fs(request: pytest.FixtureRequest) -> Iterator[RamFs]:
    """A ramfs (contents in memfds) and a tmpfs with a host instance of its own."""
    if request.param == "memfd":
        yield RamFs(kind="ramfs")
        return
    backing = _backing()
    if backing is None:
        pytest.skip("no detached tmpfs instance here (fsopen needs CAP_SYS_ADMIN)")
    yield RamFs(backing=backing)


def fields(st: Stat) -> tuple[int, ...]:
    return (
        st.dev, st.ino, st.mode, st.nlink, st.uid, st.gid, st.size, st.blocks,
        st.mtime_ns, st.ctime_ns,
    )  # fmt: skip


def ramfile(inode: Inode) -> RamFile:
    assert isinstance(inode, RamFile)
    return inode


def holes(f: Inode) -> list[tuple[int, int]]:
    """The data extents SEEK_DATA/SEEK_HOLE show through a fresh descriptor."""
    fd = f.open_host_fd(os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        out, pos = [], 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                assert e.errno == errno.ENXIO
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
        return out
    finally:
        os.close(fd)


def test_contents_holes_xattrs_and_identity_survive(fs: RamFs) -> None:
    root = fs.root
    f = ramfile(root.create(b"sparse", 0o640, 7, 8))
    write(f, b"head")
    write(f, b"middle" + bytes(PAGE) + b"x", 10 * PAGE)  # a written page of zeros stays data
    write(f, b"tail", 1000 * PAGE)
    fd = f.open_host_fd(os.O_RDWR)
    os.ftruncate(fd, 2000 * PAGE)  # a hole at the end
    os.close(fd)
    f.set_xattr(b"user.k", b"v", 0)
    root.link(b"other", f)
    f.setattr(SetAttr(mtime_ns=1_000_000_000_123))  # a time set in the past stays
    before, extents, data = fields(f.getattr()), holes(f), read(f)
    assert extents == [(0, PAGE), (10 * PAGE, 12 * PAGE), (1000 * PAGE, 1001 * PAGE)]
    assert fs.cache is not None
    fs.cache.evict(0)
    assert f.memfd is None
    assert fields(f.getattr()) == before  # stat of the name, while let go
    assert root.lookup(b"other") is f
    assert read(f) == data  # made again
    assert holes(f) == extents
    assert fields(f.getattr()) == before
    fd = f.open_host_fd(os.O_RDONLY)
    assert fields(f.fgetattr(os.fstat(fd))) == before  # fstat of a descriptor agrees
    os.close(fd)
    assert f.get_xattr(b"user.k") == b"v"
    assert f.list_xattr() == [b"user.k"]


def test_a_write_after_remaking_moves_the_times(fs: RamFs) -> None:
    f = ramfile(fs.root.create(b"f", 0o644, 0, 0))
    write(f, b"one")
    f.setattr(SetAttr(mtime_ns=5_000_000_000, atime_ns=4_000_000_000))
    old = f.getattr()
    assert fs.cache is not None
    fs.cache.evict(0)
    write(f, b"two")  # the same clock tick as the remaking, maybe
    st = f.getattr()
    assert st.mtime_ns > old.mtime_ns
    assert st.ctime_ns >= st.mtime_ns
    assert read(f) == b"two"


def test_attributes_set_while_let_go_hold(fs: RamFs) -> None:
    f = ramfile(fs.root.create(b"f", 0o644, 0, 0))
    write(f, b"abc")
    assert fs.cache is not None
    fs.cache.evict(0)
    f.setattr(SetAttr(mtime_ns=7_000_000_000, mode=0o600))
    st = f.getattr()
    assert (st.mtime_ns, st.mode & 0o7777, st.size) == (7_000_000_000, 0o600, 3)
    assert f.memfd is None
    assert read(f) == b"abc"
    assert f.getattr().mtime_ns == 7_000_000_000  # the remade file's own time, set
    fs.cache.evict(0)
    f.setattr(SetAttr(size=1))  # a truncate makes it again
    assert read(f) == b"a"
    assert f.getattr().size == 1


def test_a_file_a_program_holds_is_never_let_go(fs: RamFs) -> None:
    root = fs.root
    held = ramfile(root.create(b"held", 0o644, 0, 0))
    mapped = ramfile(root.create(b"mapped", 0o644, 0, 0))
    gone = ramfile(root.create(b"gone", 0o644, 0, 0))
    free = ramfile(root.create(b"free", 0o644, 0, 0))
    for f in (held, mapped, gone, free):
        write(f, b"v1")
    hfd = held.open_host_fd(os.O_RDONLY)
    mfd = mapped.open_host_fd(os.O_RDWR)
    m = mmap.mmap(mfd, 2)
    os.close(mfd)  # only the mapping holds it now
    gfd = gone.open_host_fd(os.O_RDWR)
    root.unlink(b"gone")  # unlinked, still open: its memfd went, the descriptor reads on
    assert fs.cache is not None
    fs.cache.evict(0)
    assert free.memfd is None
    assert held.memfd is not None and mapped.memfd is not None
    assert gone not in fs.cache
    assert os.pread(gfd, 2, 0) == b"v1"
    os.close(gfd)
    # MAP_SHARED stays coherent with every later open
    m[:2] = b"m2"
    assert read(mapped) == b"m2"
    wfd = mapped.open_host_fd(os.O_RDWR)
    os.pwrite(wfd, b"w3", 0)
    os.close(wfd)
    assert m[:2] == b"w3"
    m.close()
    os.close(hfd)
    fs.cache.evict(0)
    assert held.memfd is None and mapped.memfd is None
    assert (read(held), read(mapped), read(free)) == (b"v1", b"w3", b"v1")


def test_nameless_files_keep_their_memfd_until_named(fs: RamFs) -> None:
    t = ramfile(fs.root.tmpfile(0o600, 0, 0))
    write(t, b"tmp")
    assert fs.cache is not None
    fs.cache.evict(0)
    assert t.memfd is not None  # its memfd is all it has
    fs.root.link(b"named", t)
    fs.cache.evict(0)
    assert t.memfd is None
    assert read(fs.root.lookup(b"named")) == b"tmp"
    assert t.getattr().nlink == 1


def test_files_are_not_a_host_descriptor_each(fs: RamFs) -> None:
    # fewer descriptors than files: each file keeping its memfd would run out (EMFILE)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = len(os.listdir("/proc/self/fd"))
    assert fs.cache is not None
    fs.cache.budget = 50
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 300, hard))
    try:
        before = fs.statfs()
        for i in range(1500):
            f = fs.root.create(b"f%d" % i, 0o644, 0, 0)
            write(f, b"data %d" % i)
        assert len(fs.cache) <= 100
        assert len(os.listdir("/proc/self/fd")) < used + 150
        for i in (0, 777, 1499):
            assert read(fs.root.lookup(b"f%d" % i)) == b"data %d" % i
        if fs.backing is not None:  # the host instance still counts every file's pages
            after = fs.statfs()
            assert before.bfree - after.bfree >= 1500
        assert len(fs.root.readdir()) == 1500
        for i in range(1500):
            fs.root.unlink(b"f%d" % i)
        assert len(fs.cache) == 0
        if fs.backing is not None:  # and frees them with their names
            assert fs.statfs().bfree == before.bfree
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_out_of_descriptors_the_unheld_files_go_first(fs: RamFs) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = len(os.listdir("/proc/self/fd"))
    assert fs.cache is not None
    fs.cache.budget = 10_000  # never reached: only running out of descriptors lets files go
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 200, hard))
    try:
        for i in range(400):
            write(fs.root.create(b"f%d" % i, 0o644, 0, 0), b"%d" % i)
        assert read(fs.root.lookup(b"f3")) == b"3"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_supervisor_keeps_only_so_much_of_the_programs_data() -> None:
    fs = RamFs(kind="ramfs")
    fs.let_go_max = 3 * PAGE
    small, big = (ramfile(fs.root.create(n, 0o644, 0, 0)) for n in (b"small", b"big"))
    write(small, b"s" * PAGE)
    write(big, b"b" * 4 * PAGE)
    assert fs.cache is not None
    fs.cache.evict(0)
    assert small.memfd is None and fs.let_go_bytes == PAGE
    assert big.memfd is not None  # its pages stay where they were written, and charged
    assert read(small) == b"s" * PAGE
    assert fs.let_go_bytes == 0
    fs.root.unlink(b"big")
    fs.cache.evict(0)
    fs.root.unlink(b"small")
    assert fs.let_go_bytes == 0


def test_pages_past_the_end_keep_the_memfd() -> None:
    """Pages allocated past the end (fallocate with FALLOC_FL_KEEP_SIZE) count in st_blocks
    but no SEEK_DATA finds them: such a file keeps its memfd, so st_blocks stays true."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    fs = RamFs(kind="ramfs")
    f = ramfile(fs.root.create(b"f", 0o644, 0, 0))
    write(f, b"x")
    fd = f.open_host_fd(os.O_RDWR)
    assert libc.fallocate(fd, 1, 0, 4 * PAGE) == 0  # FALLOC_FL_KEEP_SIZE
    os.close(fd)
    before = fields(f.getattr())
    assert f.getattr().blocks == 4 * PAGE // 512
    assert fs.cache is not None
    fs.cache.evict(0)
    assert f.memfd is not None
    assert fields(f.getattr()) == before
