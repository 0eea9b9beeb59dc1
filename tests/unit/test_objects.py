"""The kernel's registry of donated host objects: lookup by identity, pruning."""

from __future__ import annotations

import array
import mmap
import os
import resource
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from occlum.fs.ramfs import RamFs
from occlum.kernel import objects
from occlum.kernel.objects import FileRef, ObjectRegistry
from occlum.vfs.mount import MountTable


def _key(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_lookup_follows_identity_not_descriptor_number(tmp_path: Path) -> None:
    reg = ObjectRegistry()
    loc = MountTable(RamFs()).root()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    reg.register(fd, FileRef(loc))
    dup = os.dup(fd)
    ref = reg.lookup(os.getpid(), dup)
    assert ref is not None and ref.location is loc
    other = os.open("/dev/null", os.O_RDONLY)
    assert reg.lookup(os.getpid(), other) is None
    for d in (fd, dup, other):
        os.close(d)


def _send_fd(sock: socket.socket, fd: int) -> None:
    sock.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def _recv_fd(sock: socket.socket) -> int:
    _msg, anc, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(4))
    fds = array.array("i")
    fds.frombytes(anc[0][2])
    return fds[0]


def _registry(scratch: Path, prune_at: int) -> ObjectRegistry:
    reg = ObjectRegistry()
    reg.scratch_fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    reg.prune_at = prune_at
    return reg


@pytest.fixture
def tmpfs_dir() -> Iterator[Path]:
    """Directory handles live on a tmpfs in the LibOS, whose inode numbers are not soon used
    again (a disk file system may give a removed directory's number to the next one)."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        yield Path(d)


def test_registry_prunes_only_objects_nothing_references(tmpfs_dir: Path) -> None:
    reg = _registry(tmpfs_dir, 8)
    loc = MountTable(RamFs()).root()
    held: list[int] = []
    closed: list[tuple[int, int]] = []
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for i in range(40):
        fd = reg.make_dir_handle() if i % 3 else reg.make_path_handle()
        ref = FileRef(loc)
        reg.register(fd, ref)
        # the entry just registered is there, whatever pruning the registration started
        assert reg.lookup(os.getpid(), fd) is ref
        if i == 5:
            _send_fd(a, fd)  # in flight: no process holds it, a socket does
            os.close(fd)
        elif i % 2:
            closed.append(_key(fd))
            os.close(fd)
        else:
            held.append(fd)
    reg.prune()
    keys = set(reg._by_key)
    assert keys.isdisjoint(closed)
    assert {_key(fd) for fd in held} <= keys
    assert len(keys) == len(held) + 1  # and the one in flight
    got = _recv_fd(b)
    assert reg.lookup(os.getpid(), got) is not None
    # a mapping alone keeps a file alive, and so its entry
    memfd = os.memfd_create("mapped")
    os.ftruncate(memfd, 4096)
    reg.register(memfd, FileRef(loc))
    mapped = mmap.mmap(memfd, 4096)
    key = _key(memfd)
    os.close(memfd)
    reg.prune()
    assert key in reg._by_key
    mapped.close()
    reg.prune()
    assert key not in reg._by_key
    for fd in (*held, got, reg.scratch_fd):
        os.close(fd)
    a.close()
    b.close()
    reg.close()


def test_registry_keeps_every_live_handle_past_the_threshold(tmpfs_dir: Path) -> None:
    reg = _registry(tmpfs_dir, objects.PRUNE_AT)
    loc = MountTable(RamFs()).root()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = min(2 * objects.PRUNE_AT + 100, hard - 64)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    handles = []
    try:
        for _ in range(count):
            fd = reg.make_dir_handle()
            reg.register(fd, FileRef(loc))
            handles.append(fd)
        assert all(reg.lookup(os.getpid(), fd) is not None for fd in handles)
        for fd in handles[: count // 2]:
            os.close(fd)
        reg.prune()
        assert len(reg._by_key) == count - count // 2
        assert reg.prune_at == max(objects.PRUNE_AT, 2 * len(reg._by_key))
    finally:
        for fd in handles[count // 2 :]:
            os.close(fd)
        os.close(reg.scratch_fd)
        reg.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_linked_host_files_carry_no_watch_and_live_while_held(tmp_path: Path) -> None:
    """A hostfs file keeps its host name, so a watch on it would outlive every descriptor
    (and use up the host user's watches): its entry lives while a process holds it."""
    reg = ObjectRegistry()
    reg.prune_at = 4
    loc = MountTable(RamFs()).root()
    held: dict[tuple[int, int], int] = {}
    reg.live_keys = lambda: set(held)
    closed = []
    for i in range(12):
        path = tmp_path / f"f{i}"
        path.write_text("x")
        fd = os.open(path, os.O_RDONLY)
        reg.register(fd, FileRef(loc))
        # the file being registered is in no process yet, and stays
        assert reg.lookup(os.getpid(), fd) is not None
        if i % 2:
            closed.append(_key(fd))
            os.close(fd)
        else:
            held[_key(fd)] = fd
    assert reg._inotify < 0  # no watch was placed
    reg.prune()
    assert set(reg._by_key) == set(held)
    assert set(reg._by_key).isdisjoint(closed)
    for fd in held.values():
        os.close(fd)
    reg.close()
