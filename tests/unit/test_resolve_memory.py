"""What the VFS remembers to answer faster: resolutions (and ENOENT) in the mount table, which
every change that can make a path name something else must make resolve again; a union
name's packed stat while only the read-only lower layer has it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import RESOLVE_IN_ROOT, pack_stat
from occlum.fs.hostfs import HostFs
from occlum.fs.ramfs import RamFs
from occlum.fs.unionfs import UnionFs
from occlum.vfs.cred import Cred
from occlum.vfs.inode import SetAttr
from occlum.vfs.mount import MountTable
from occlum.vfs.path import Location, PathOp, resolve


def errno_of(root: Location, path: bytes, cred: Cred | None = None) -> int:
    try:
        resolve(PathOp(root, root, path, cred=cred))
    except SyscallError as e:
        return e.errno
    return 0


@pytest.fixture
def ram() -> tuple[MountTable, Location]:
    mt = MountTable(RamFs())
    root = mt.root()
    root.inode.mkdir(b"d", 0o755, 0, 0)
    return mt, root


def test_resolutions_are_remembered(ram: tuple[MountTable, Location]) -> None:
    mt, root = ram
    first = resolve(PathOp(root, root, b"/d"))
    assert resolve(PathOp(root, root, b"/d")) is first  # no second walk
    assert errno_of(root, b"/d/x") == errno.ENOENT
    assert mt.resolved  # the ENOENT and the directory /d/x is looked up in are kept


def test_a_created_name_is_found(ram: tuple[MountTable, Location]) -> None:
    _, root = ram
    assert errno_of(root, b"/d/x") == errno.ENOENT
    assert errno_of(root, b"/d/y") == errno.ENOENT
    resolve(PathOp(root, root, b"/d")).inode.create(b"x", 0o644, 0, 0)
    assert errno_of(root, b"/d/x") == 0
    assert errno_of(root, b"/d/y") == errno.ENOENT


def test_a_renamed_or_removed_name_is_gone(ram: tuple[MountTable, Location]) -> None:
    _, root = ram
    d = resolve(PathOp(root, root, b"/d")).inode
    d.mkdir(b"sub", 0o755, 0, 0)
    assert errno_of(root, b"/d/sub") == 0
    d.rename(b"sub", root.inode, b"moved", 0)
    assert errno_of(root, b"/d/sub") == errno.ENOENT
    assert errno_of(root, b"/moved") == 0
    root.inode.rmdir(b"moved")
    assert errno_of(root, b"/moved") == errno.ENOENT


def test_a_directory_mode_change_counts(ram: tuple[MountTable, Location]) -> None:
    _, root = ram
    d = resolve(PathOp(root, root, b"/d")).inode
    d.create(b"f", 0o644, 0, 0)
    user = Cred.user(1000, 1000)
    assert errno_of(root, b"/d/f", user) == 0
    d.setattr(SetAttr(mode=0o700))
    assert errno_of(root, b"/d/f", user) == errno.EACCES
    assert errno_of(root, b"/d/f", Cred()) == 0  # root searches anyway


def test_mount_and_unmount_count(ram: tuple[MountTable, Location]) -> None:
    mt, root = ram
    resolve(PathOp(root, root, b"/d")).inode.create(b"x", 0o644, 0, 0)
    assert errno_of(root, b"/d/x") == 0
    mounted = mt.mount(RamFs(), b"/d")
    assert errno_of(root, b"/d/x") == errno.ENOENT
    mt.umount(mounted.root_location())
    assert errno_of(root, b"/d/x") == 0


def test_union_whiteout_and_copy_up(ram: tuple[MountTable, Location]) -> None:
    lower = RamFs()
    lower.root.create(b"a", 0o644, 0, 0)
    lower.root.mkdir(b"dir", 0o755, 0, 0)
    mt = MountTable(UnionFs(RamFs(), lower))
    root = mt.root()
    assert errno_of(root, b"/a") == 0
    assert errno_of(root, b"/dir/new") == errno.ENOENT
    root.inode.unlink(b"a")  # a whiteout in the upper layer
    assert errno_of(root, b"/a") == errno.ENOENT
    resolve(PathOp(root, root, b"/dir")).inode.create(b"new", 0o644, 0, 0)  # a copy-up of dir
    assert errno_of(root, b"/dir/new") == 0


def test_hostfs_is_never_remembered(tmp_path: Path) -> None:
    """The host may change a hostfs directory at any time."""
    fs = HostFs(os.fsencode(tmp_path))
    try:
        mt = MountTable(RamFs())
        root = mt.root()
        root.inode.mkdir(b"host", 0o755, 0, 0)
        mt.mount(fs, b"/host")
        assert errno_of(root, b"/host/f") == errno.ENOENT
        (tmp_path / "f").write_text("made on the host\n")
        assert errno_of(root, b"/host/f") == 0
        (tmp_path / "f").unlink()
        assert errno_of(root, b"/host/f") == errno.ENOENT
    finally:
        fs.close()


def test_union_stat_of_a_lower_name_follows_its_copy_up() -> None:
    lower = RamFs()
    lower.root.create(b"f", 0o644, 0, 0)
    lower.readonly = True  # as the image is
    lower.fixed_attributes = True
    mt = MountTable(UnionFs(RamFs(), lower))
    root = mt.root()
    f = resolve(PathOp(root, root, b"/f")).inode
    first = f.packed_stat()
    assert first == pack_stat(f.getattr())
    assert f.packed_stat() is first  # packed once
    held = f.open_host_fd(os.O_RDONLY)
    try:
        assert f.packed_fstat(os.fstat(held)) is first  # its descriptors show the same
    finally:
        os.close(held)
    f.setattr(SetAttr(mode=0o600))  # copies f up
    assert f.packed_stat() == pack_stat(f.getattr()) != first
    held = f.open_host_fd(os.O_RDONLY)
    try:
        host = os.fstat(held)
        assert f.packed_fstat(host) == pack_stat(f.fgetattr(host)) != first
    finally:
        os.close(held)


def test_in_root_resolutions_keep_their_root(ram: tuple[MountTable, Location]) -> None:
    """An absolute path under RESOLVE_IN_ROOT starts at the directory given, not at /."""
    _, root = ram
    d = resolve(PathOp(root, root, b"/d"))
    d.inode.create(b"only-in-d", 0o644, 0, 0)
    root.inode.create(b"only-at-root", 0o644, 0, 0)
    for start, found, missing in ((d, b"/only-in-d", b"/only-at-root"),
                                  (root, b"/only-at-root", b"/only-in-d")):  # fmt: skip
        op = PathOp(root, start, found, resolve_flags=RESOLVE_IN_ROOT)
        assert resolve(op).name == found[1:]
        with pytest.raises(SyscallError) as e:
            resolve(PathOp(root, start, missing, resolve_flags=RESOLVE_IN_ROOT))
        assert e.value.errno == errno.ENOENT
