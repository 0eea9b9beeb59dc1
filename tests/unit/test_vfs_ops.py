"""The VFS operations (occlum.vfs.ops) on typed values, without a program or the syscall layer:
each rule Linux checks before a file system is asked."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator

import pytest

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFBLK, S_IFDIR, S_IFIFO, S_IFMT, S_ISGID, S_ISUID, S_ISVTX, SetAttr
from occlum.fs.ramfs import RamFs
from occlum.vfs import ops
from occlum.vfs.inode import Cred, Inode
from occlum.vfs.mount import MountTable
from occlum.vfs.path import Location, PathOp, resolve

USER = Cred.user(1000, 1000)
OTHER = Cred.user(2000, 2000)


def errno_of(fn: Callable[[], object]) -> int:
    with pytest.raises(SyscallError) as e:
        fn()
    return e.value.errno


@pytest.fixture
def root() -> Iterator[Location]:
    fs = RamFs(mode=0o755)
    r = fs.root
    r.mkdir(b"tmp", 0o777 | S_ISVTX, 0, 0)  # sticky, as /tmp
    r.mkdir(b"grp", 0o2777, 0, 50)  # set-group-id, group 50
    r.mkdir(b"mine", 0o755, 1000, 1000)
    r.mkdir(b"mnt", 0o755, 0, 0)
    mt = MountTable(fs)
    mt.mount(RamFs(), b"/mnt", source=b"tmpfs")
    yield mt.root()


def op(r: Location, path: bytes, cred: Cred | None = None, **kw: object) -> PathOp:
    return PathOp(r, r, path, cred=cred, **kw)  # type: ignore[arg-type]


def st(r: Location, path: bytes):  # type: ignore[no-untyped-def]
    return resolve(op(r, path, follow=False)).inode.getattr()


def test_mkdir_umask_setgid_parent(root: Location) -> None:
    ops.mkdir_at(op(root, b"/mine/d", USER), 0o4777, 0o022)
    s = st(root, b"/mine/d")
    assert (s.mode & S_IFMT, s.mode & 0o7777, s.uid, s.gid) == (S_IFDIR, 0o755, 1000, 1000)
    ops.mkdir_at(op(root, b"/grp/d", USER), 0o777, 0o022)
    s = st(root, b"/grp/d")
    assert (s.mode & 0o7777, s.gid) == (0o2755, 50)
    assert errno_of(lambda: ops.mkdir_at(op(root, b"/grp/d", USER), 0o777, 0)) == errno.EEXIST
    assert errno_of(lambda: ops.mkdir_at(op(root, b"/mine/.", USER), 0o777, 0)) == errno.EEXIST
    # no write permission on the parent
    assert errno_of(lambda: ops.mkdir_at(op(root, b"/x", USER), 0o777, 0)) == errno.EACCES


def test_mknod_types(root: Location) -> None:
    assert errno_of(lambda: ops.mknod_type(S_IFDIR)) == errno.EPERM
    assert errno_of(lambda: ops.mknod_type(0o170000)) == errno.EINVAL
    # the type is refused before the name is looked at
    assert errno_of(lambda: ops.mknod_at(op(root, b"/no/such", USER), S_IFDIR, 0)) == errno.EPERM
    ops.mknod_at(op(root, b"/tmp/fifo", USER), S_IFIFO | 0o666, 0o022)
    assert st(root, b"/tmp/fifo").mode == S_IFIFO | 0o644
    dev = op(root, b"/tmp/dev", USER)
    assert errno_of(lambda: ops.mknod_at(dev, S_IFBLK | 0o600, 0)) == errno.EPERM


def test_sticky_directory(root: Location) -> None:
    ops.mknod_at(op(root, b"/tmp/f", USER), 0o644, 0)
    assert errno_of(lambda: ops.unlink_at(op(root, b"/tmp/f", OTHER))) == errno.EPERM
    theirs = op(root, b"/tmp/g", OTHER)
    assert errno_of(lambda: ops.rename_at(
        ops.parent_for_change(op(root, b"/tmp/f", OTHER)), ops.parent_for_change(theirs), 0, OTHER
    )) == errno.EPERM  # fmt: skip
    gone: list[Inode] = []
    ops.unlink_at(op(root, b"/tmp/f", USER), gone=gone.append)
    assert len(gone) == 1 and gone[0].getattr().nlink == 0


def test_unlink_and_rmdir_names(root: Location) -> None:
    assert errno_of(lambda: ops.unlink_at(op(root, b"/mine/.."))) == errno.EISDIR
    assert errno_of(lambda: ops.rmdir_at(op(root, b"/mine/."))) == errno.EINVAL
    assert errno_of(lambda: ops.rmdir_at(op(root, b"/mine/.."))) == errno.ENOTEMPTY
    assert errno_of(lambda: ops.rmdir_at(op(root, b"/mnt"))) == errno.EBUSY
    ops.mknod_at(op(root, b"/mine/f"), 0o644, 0)
    assert errno_of(lambda: ops.unlink_at(op(root, b"/mine/f/"))) == errno.ENOTDIR


def test_link_and_rename_across_mounts(root: Location) -> None:
    ops.mknod_at(op(root, b"/mine/f"), 0o644, 0)
    f = resolve(op(root, b"/mine/f"))
    assert errno_of(lambda: ops.link_at(f, op(root, b"/mnt/f"))) == errno.EXDEV
    d = resolve(op(root, b"/mine"))
    assert errno_of(lambda: ops.link_at(d, op(root, b"/tmp/d"))) == errno.EPERM
    old, new = (
        ops.parent_for_change(op(root, b"/mine/f")),
        ops.parent_for_change(op(root, b"/mnt/f")),
    )
    assert errno_of(lambda: ops.rename_at(old, new, 0, USER)) == errno.EXDEV
    # NOREPLACE|EXCHANGE: refused by the row's flag set (tests/unit/test_arg_decode.py)
    assert errno_of(lambda: ops.rename_flags(4)) == errno.EINVAL  # WHITEOUT


def test_symlink_owner(root: Location) -> None:
    assert errno_of(lambda: ops.symlink_at(b"", op(root, b"/tmp/l", USER))) == errno.ENOENT
    ops.symlink_at(b"target", op(root, b"/grp/l", USER))
    s = st(root, b"/grp/l")
    assert (s.uid, s.gid) == (1000, 50)


def test_chmod_chown_rules(root: Location) -> None:
    ops.mknod_at(op(root, b"/mine/f", USER), 0o755, 0)
    f = resolve(op(root, b"/mine/f"))
    assert errno_of(lambda: ops.chmod(f, OTHER, 0o700)) == errno.EPERM
    ops.chmod(f, USER, 0o2755)  # group 1000 is the caller's: kept
    assert f.inode.getattr().mode & 0o7777 == 0o2755
    f.inode.setattr(SetAttr(gid=7))
    ops.chmod(f, USER, 0o2755)  # not in group 7: S_ISGID dropped silently
    assert f.inode.getattr().mode & 0o7777 == 0o755
    assert errno_of(lambda: ops.chown(f, USER, 2000, None)) == errno.EPERM
    assert errno_of(lambda: ops.chown(f, USER, None, 9)) == errno.EPERM
    ops.chown(f, USER, None, 1000)
    f.inode.setattr(SetAttr(mode=0o4755))
    ops.chown(f, Cred(), None, None)  # root's chown to the same ids still drops set-user-id
    s = f.inode.getattr()
    assert (s.mode & (S_ISUID | S_ISGID), s.uid, s.gid) == (0, 1000, 1000)


def test_utimes_rules(root: Location) -> None:
    ops.mknod_at(op(root, b"/mine/f", USER), 0o666, 0)
    f = resolve(op(root, b"/mine/f"))
    assert errno_of(lambda: ops.utimes(f, OTHER, 5, 6, now=99)) == errno.EPERM
    ops.utimes(f, OTHER, 99, 99, now=99)  # "now" with write permission
    f.inode.setattr(SetAttr(mode=0o644))
    assert errno_of(lambda: ops.utimes(f, OTHER, 99, 99, now=99)) == errno.EACCES
    ops.utimes(f, USER, 5, None)
    s = f.inode.getattr()
    assert (s.atime_ns, s.mtime_ns) == (5, 99)


def test_truncate_rules(root: Location) -> None:
    assert errno_of(lambda: ops.truncate(op(root, b"/no/such"), -1)) == errno.EINVAL
    assert errno_of(lambda: ops.truncate(op(root, b"/mine"), 0)) == errno.EISDIR
    ops.mknod_at(op(root, b"/mine/f", USER), 0o644, 0)
    assert errno_of(lambda: ops.truncate(op(root, b"/mine/f", OTHER), 0)) == errno.EACCES
    busy = op(root, b"/mine/f", USER)
    assert errno_of(lambda: ops.truncate(busy, 0, lambda inode: True)) == errno.ETXTBSY
    ops.truncate(busy, 10, lambda inode: False)
    assert st(root, b"/mine/f").size == 10


def test_access_real_ids(root: Location) -> None:
    ops.mknod_at(op(root, b"/mine/f", USER), 0o600, 0)
    f = resolve(op(root, b"/mine/f"))
    setuid = Cred(uid=2000, gid=2000, euid=1000, fsuid=1000, cap_permitted=0, cap_effective=0)
    assert errno_of(lambda: ops.access(f, setuid, 4, effective=False)) == errno.EACCES
    ops.access(f, setuid, 4, effective=True)


def test_writer_drops_setid(root: Location) -> None:
    ops.mknod_at(op(root, b"/mine/f", USER), 0o755, 0)
    f = resolve(op(root, b"/mine/f")).inode
    f.setattr(SetAttr(mode=0o6755))
    ops.drop_setid_for_writer(f, Cred())  # CAP_FSETID keeps them
    assert f.getattr().mode & 0o7777 == 0o6755
    ops.drop_setid_for_writer(f, USER)
    assert f.getattr().mode & 0o7777 == 0o755
    f.setattr(SetAttr(mode=0o2745))  # set-group-id without group exec: mandatory locking
    ops.drop_setid_for_writer(f, USER)
    assert f.getattr().mode & 0o7777 == 0o2745


def test_readlink(root: Location) -> None:
    ops.symlink_at(b"target", op(root, b"/mine/l"))
    assert ops.readlink(resolve(op(root, b"/mine/l", follow=False)), named=True) == b"target"
    mine = resolve(op(root, b"/mine"))
    assert errno_of(lambda: ops.readlink(mine, named=True)) == errno.EINVAL
    assert errno_of(lambda: ops.readlink(mine, named=False)) == errno.ENOENT
