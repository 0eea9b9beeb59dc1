"""unionfs: merged lookup and readdir, copy-up, whiteouts, opaque directories, renames, inode
numbers, and the persistence of all of it in a SEFS upper across remounts."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import RENAME_EXCHANGE, RENAME_NOREPLACE
from occlum.fs.hostfs import HostFs
from occlum.fs.imagefs import ImageFs
from occlum.fs.ramfs import RamFs
from occlum.fs.sefs import SEFS_MAGIC, SefsFs
from occlum.fs.unionfs import OPAQUE_MARKER, WH_PREFIX, UnionFs
from occlum.instance.image_builder import build_image
from occlum.vfs.inode import Inode, SetAttr
from occlum.vfs.mount import FileSystem, MountTable
from occlum.vfs.open import open_path
from occlum.vfs.path import Location, PathOp, resolve, resolve_parent
from occlum.vfs.xattr import XATTR_CREATE, XATTR_REPLACE

KEY = bytes(range(32))
MTIME_NS = 1_600_000_000_123_456_789

# the lower layer every test starts from; a None value is a directory, str a symlink target
LOWER: dict[str, bytes | str | None] = {
    "a": b"lower a\n",
    "b": b"lower b\n",
    "d": None,
    "d/x": b"lower x\n",
    "d/y": b"lower y\n",
    "d/sub": None,
    "d/sub/z": b"deep\n",
    "empty": None,
    "link": "d/x",
    "dirlink": "d",
}


def write_tree(root: Path, tree: dict[str, bytes | str | None]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for rel, what in tree.items():
        p = root / rel
        if what is None:
            p.mkdir(0o755)
        elif isinstance(what, str):
            p.symlink_to(what)
        else:
            p.write_bytes(what)
            os.chmod(p, 0o644)
    for p in sorted(root.rglob("*"), reverse=True):
        os.utime(p, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)


@dataclass
class Env:
    """A union mounted as the root of a mount table, with its layers."""

    tmp: Path
    upper_kind: str
    lower: FileSystem
    upper: FileSystem
    fs: UnionFs
    root: Location

    def loc(self, path: str, follow: bool = True) -> Location:
        return resolve(PathOp(self.root, self.root, path.encode() or b".", follow=follow))

    def inode(self, path: str, follow: bool = True) -> Inode:
        return self.loc(path, follow).inode

    def parent(self, path: str) -> tuple[Inode, bytes]:
        pn = resolve_parent(PathOp(self.root, self.root, path.encode()))
        return pn.parent.inode, pn.name

    def read(self, path: str) -> bytes:
        o = open_path(PathOp(self.root, self.root, path.encode()), os.O_RDONLY)
        assert o.host_fd is not None
        try:
            return os.pread(o.host_fd, 1 << 20, 0)
        finally:
            os.close(o.host_fd)

    def write(self, path: str, data: bytes, flags: int = os.O_WRONLY) -> None:
        o = open_path(PathOp(self.root, self.root, path.encode()), flags, 0o644)
        assert o.host_fd is not None
        try:
            os.write(o.host_fd, data)
        finally:
            os.close(o.host_fd)

    def names(self, path: str) -> list[bytes]:
        return sorted(e.name for e in self.inode(path).readdir())

    def upper_names(self, path: str = "") -> list[bytes]:
        d: Inode = self.upper.root
        for part in path.encode().split(b"/"):
            if part:
                d = d.lookup(part)
        return sorted(e.name for e in d.readdir())

    def remount(self) -> None:
        """sync, unmount the upper, mount it again and a new union over the same lower."""
        assert isinstance(self.upper, SefsFs)
        self.fs.sync()
        self.upper.close()
        self.upper = SefsFs(self.tmp / "sefs", KEY)
        self.fs = UnionFs(self.upper, self.lower)
        self.root = MountTable(self.fs).root()


def errno_of(fn: Callable[[], object]) -> int:
    try:
        fn()
    except SyscallError as e:
        return e.errno
    return 0


@pytest.fixture(params=["image", "host"])
def lower_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileSystem]:
    src = tmp_path / "lower-src"
    write_tree(src, LOWER)
    fs: FileSystem
    if request.param == "image":
        out = tmp_path / "lower.img"
        fs = ImageFs(out, build_image(src, out))
        yield fs
        fs.close()
    else:
        fs = HostFs(str(src), readonly=True)
        yield fs
        fs.close()


def _make_env(kind: str, tmp_path: Path, lower_fs: FileSystem) -> Env:
    upper: FileSystem = RamFs(mode=0o755) if kind == "ram" else SefsFs(tmp_path / "sefs", KEY)
    fs = UnionFs(upper, lower_fs)
    return Env(tmp_path, kind, lower_fs, upper, fs, MountTable(fs).root())


@pytest.fixture(params=["ram", "sefs"])
def env(request: pytest.FixtureRequest, tmp_path: Path, lower_fs: FileSystem) -> Iterator[Env]:
    e = _make_env(request.param, tmp_path, lower_fs)
    yield e
    if isinstance(e.upper, SefsFs):
        e.upper.close()


@pytest.fixture
def sefs_env(tmp_path: Path, lower_fs: FileSystem) -> Iterator[Env]:
    """Persistence needs a SEFS upper: these tests run with that one only."""
    e = _make_env("sefs", tmp_path, lower_fs)
    yield e
    if isinstance(e.upper, SefsFs):
        e.upper.close()


def lower_bytes(e: Env, path: str) -> bytes:
    d: Inode = e.lower.root
    for part in path.encode().split(b"/"):
        d = d.lookup(part)
    fd = d.open_host_fd(os.O_RDONLY)
    try:
        return os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)


# --- the merged view -------------------------------------------------------------------------


def test_lookup_and_readdir_merge_the_layers(env: Env) -> None:
    assert env.names("") == [b"a", b"b", b"d", b"dirlink", b"empty", b"link"]
    env.write("d/new", b"upper\n", os.O_CREAT | os.O_WRONLY)
    assert env.names("d") == [b"new", b"sub", b"x", b"y"]
    assert env.read("d/new") == b"upper\n"
    assert env.read("d/x") == b"lower x\n"
    # d is now in both layers; the upper copy holds only what changed
    assert env.upper_names("d") == [b"new"]
    st = env.inode("d").getattr()
    assert st.dev == env.fs.dev
    assert st.nlink == 3  # ".", "..", and sub
    assert stat.S_IMODE(st.mode) == 0o755


def test_merged_link_count_is_not_recounted_for_each_new_file(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from occlum.fs.unionfs import UnionDir

    d = env.inode("d")
    env.write("d/new0", b"", os.O_CREAT | os.O_WRONLY)  # d is merged from now on
    assert d.getattr().nlink == 3
    listings = 0
    real = UnionDir.readdir

    def counted(self: UnionDir) -> list[object]:
        nonlocal listings
        listings += 1
        return real(self)  # type: ignore[return-value]

    monkeypatch.setattr(UnionDir, "readdir", counted)
    for i in range(1, 50):  # each create stats the parent (access checks)
        env.write(f"d/new{i}", b"", os.O_CREAT | os.O_WRONLY)
        assert d.getattr().nlink == 3
    assert listings == 0
    # what changes the count is still seen: an upper subdirectory, a lower one hidden
    d.mkdir(b"more", 0o755, 0, 0)
    assert d.getattr().nlink == 4
    root = env.inode("")
    env.write("top", b"", os.O_CREAT | os.O_WRONLY)  # the root is merged too
    before = root.getattr().nlink
    d.rename(b"more", root, b"moved", 0)
    assert (d.getattr().nlink, root.getattr().nlink) == (3, before + 1)
    root.rmdir(b"empty")  # a lower directory, hidden by a whiteout
    assert root.getattr().nlink == before


def test_read_only_open_does_not_copy_up(env: Env) -> None:
    assert env.read("d/sub/z") == b"deep\n"
    assert env.read("link") == b"lower x\n"
    assert env.upper_names() == []


def test_write_copies_up_and_keeps_the_lower_intact(env: Env) -> None:
    before = env.inode("d/x").getattr()
    env.write("d/x", b"UPPER")
    assert env.read("d/x") == b"UPPER x\n"
    assert lower_bytes(env, "d/x") == b"lower x\n"
    assert env.upper_names("d") == [b"x"]
    after = env.inode("d/x").getattr()
    assert after.ino == before.ino  # the inode number survives the copy-up
    # parents were copied up with their attributes, and the copy-up left their times alone
    d = env.upper.root.lookup(b"d").getattr()
    assert stat.S_IMODE(d.mode) == 0o755
    assert d.mtime_ns == MTIME_NS


def test_truncate_through_open_o_trunc(env: Env) -> None:
    env.write("a", b"new", os.O_WRONLY | os.O_TRUNC)
    assert env.read("a") == b"new"
    assert lower_bytes(env, "a") == b"lower a\n"
    env.inode("b").setattr(SetAttr(size=3))
    assert env.read("b") == b"low"
    env.inode("d/y").setattr(SetAttr(size=20))
    assert env.read("d/y") == b"lower y\n" + bytes(12)


def test_chmod_chown_utime_copy_up(env: Env) -> None:
    ino = env.inode("a").ino
    env.inode("a").setattr(SetAttr(mode=0o600))
    env.inode("d/sub").setattr(SetAttr(uid=7, gid=8))
    env.inode("b").setattr(SetAttr(mtime_ns=5, atime_ns=6))
    st = env.inode("a").getattr()
    assert stat.S_IMODE(st.mode) == 0o600 and st.ino == ino
    assert env.read("a") == b"lower a\n"
    sub = env.inode("d/sub").getattr()
    assert (sub.uid, sub.gid) == (7, 8)
    assert env.names("d/sub") == [b"z"]  # a copied-up directory stays merged
    assert env.inode("b").getattr().mtime_ns == 5
    lower_a = env.lower.root.lookup(b"a").getattr()
    assert stat.S_IMODE(lower_a.mode) == 0o644
    assert errno_of(lambda: env.inode("d").setattr(SetAttr(size=0))) == errno.EISDIR
    assert (
        errno_of(lambda: env.inode("link", follow=False).setattr(SetAttr(size=0))) == errno.EINVAL
    )


def test_symlinks_resolve_across_layers(env: Env) -> None:
    # a lower symlink to a file that is then copied up
    env.write("d/x", b"X")
    assert env.read("link") == b"Xower x\n"
    assert env.read("dirlink/y") == b"lower y\n"
    # an upper symlink to a lower file
    d, name = env.parent("up")
    d.symlink(name, b"d/sub/z", 0, 0)
    assert env.read("up") == b"deep\n"
    assert env.inode("up", follow=False).readlink() == b"d/sub/z"
    # copying a symlink up (chown) keeps it a symlink
    env.inode("link", follow=False).setattr(SetAttr(uid=3))
    assert env.inode("link", follow=False).readlink() == b"d/x"
    assert env.upper.root.lookup(b"link").is_symlink


# --- removal: whiteouts and opaque directories -----------------------------------------------


def test_unlink_leaves_a_whiteout(env: Env) -> None:
    env.inode("").unlink(b"a")
    assert b"a" not in env.names("")
    assert errno_of(lambda: env.inode("a")) == errno.ENOENT
    assert env.upper_names() == [WH_PREFIX + b"a"]
    assert lower_bytes(env, "a") == b"lower a\n"
    # a copied-up file: the upper copy goes and a whiteout stays
    env.write("b", b"B")
    env.inode("").unlink(b"b")
    assert env.upper_names() == [WH_PREFIX + b"a", WH_PREFIX + b"b"]
    # creating the name again removes the whiteout
    env.write("a", b"again", os.O_CREAT | os.O_WRONLY)
    assert env.read("a") == b"again"
    assert env.upper_names() == [WH_PREFIX + b"b", b"a"]
    # removing an upper-only file needs no whiteout
    env.inode("").unlink(b"a")
    env.write("fresh", b"", os.O_CREAT | os.O_WRONLY)
    env.inode("").unlink(b"fresh")
    assert b"fresh" not in env.upper_names()


def test_whiteouts_survive_remount(sefs_env: Env) -> None:
    e = sefs_env
    e.inode("").unlink(b"a")
    e.inode("d").unlink(b"x")
    e.write("d/y", b"Y")
    e.write("n", b"new", os.O_CREAT | os.O_WRONLY)
    view = (e.names(""), e.names("d"), e.read("d/y"), e.read("n"))
    e.remount()
    assert (e.names(""), e.names("d"), e.read("d/y"), e.read("n")) == view
    assert errno_of(lambda: e.inode("a")) == errno.ENOENT
    assert errno_of(lambda: e.inode("d/x")) == errno.ENOENT


def test_tmpfile_is_made_in_the_upper_layer_and_named_by_link(sefs_env: Env) -> None:
    e = sefs_env
    o = open_path(PathOp(e.root, e.root, b"d/sub"), os.O_TMPFILE | os.O_RDWR, 0o640)
    assert o.host_fd is not None
    os.write(o.host_fd, b"made unnamed")
    os.close(o.host_fd)
    tmp = o.location.inode
    assert tmp.getattr().nlink == 0
    assert e.names("d/sub") == [b"z"]  # no name, but d/sub is copied up to hold it
    forgotten = open_path(PathOp(e.root, e.root, b"d"), os.O_TMPFILE | os.O_WRONLY, 0o600)
    assert forgotten.host_fd is not None
    os.close(forgotten.host_fd)
    e.inode("d/sub").link(b"named", tmp)
    assert tmp.getattr().nlink == 1
    e.remount()
    assert e.names("d/sub") == [b"named", b"z"]
    assert e.names("d") == [b"sub", b"x", b"y"]
    assert e.read("d/sub/named") == b"made unnamed"
    assert stat.S_IMODE(e.inode("d/sub/named").getattr().mode) == 0o640
    excl = open_path(PathOp(e.root, e.root, b"."), os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
    assert excl.host_fd is not None
    os.close(excl.host_fd)
    assert errno_of(lambda: e.inode("").link(b"x", excl.location.inode)) == errno.ENOENT


def test_rmdir_needs_an_empty_merged_directory(env: Env) -> None:
    root = env.inode("")
    assert errno_of(lambda: root.rmdir(b"d")) == errno.ENOTEMPTY
    sub = env.inode("d/sub")
    sub.unlink(b"z")
    assert errno_of(lambda: env.inode("d").rmdir(b"sub")) == 0
    assert env.names("d") == [b"x", b"y"]
    root.rmdir(b"empty")  # a lower-only empty directory
    assert b"empty" not in env.names("")
    assert errno_of(lambda: root.rmdir(b"a")) == errno.ENOTDIR
    assert errno_of(lambda: root.unlink(b"d")) == errno.EISDIR


def test_mkdir_over_a_removed_directory_is_opaque(env: Env) -> None:
    d = env.inode("d")
    for n in (b"x", b"y"):
        d.unlink(n)
    env.inode("d/sub").unlink(b"z")
    d.rmdir(b"sub")
    env.inode("").rmdir(b"d")
    env.inode("").mkdir(b"d", 0o700, 0, 0)
    assert env.names("d") == []
    assert errno_of(lambda: env.inode("d/x")) == errno.ENOENT
    assert OPAQUE_MARKER in env.upper_names("d")
    assert env.inode("d").getattr().nlink == 2
    env.write("d/x", b"new x", os.O_CREAT | os.O_WRONLY)
    assert env.names("d") == [b"x"]
    if env.upper_kind == "sefs":
        env.remount()
        assert env.names("d") == [b"x"]
        assert env.read("d/x") == b"new x"
        assert stat.S_IMODE(env.inode("d").getattr().mode) == 0o700


def test_reserved_names_are_refused(env: Env) -> None:
    env.inode("").unlink(b"a")
    root = env.inode("")
    wh = WH_PREFIX + b"a"
    assert errno_of(lambda: root.lookup(wh)) == errno.ENOENT
    assert errno_of(lambda: root.create(wh, 0o644, 0, 0)) == errno.EPERM
    assert errno_of(lambda: root.mkdir(WH_PREFIX + b"z", 0o755, 0, 0)) == errno.EPERM
    assert errno_of(lambda: root.rename(b"b", root, wh, 0)) == errno.EPERM
    assert errno_of(lambda: root.link(wh, env.inode("b"))) == errno.EPERM
    assert errno_of(lambda: root.unlink(wh)) == errno.ENOENT
    # a user file named ".opq" has a whiteout distinct from the opaque marker
    root.create(b".opq", 0o644, 0, 0)
    root.unlink(b".opq")
    assert b".opq" not in env.names("")


# --- rename and link -------------------------------------------------------------------------


def test_rename_of_a_lower_file(env: Env) -> None:
    root = env.inode("")
    ino = env.inode("a").ino
    root.rename(b"a", env.inode("d"), b"moved", 0)
    assert env.read("d/moved") == b"lower a\n"
    assert env.inode("d/moved").ino == ino
    assert errno_of(lambda: env.inode("a")) == errno.ENOENT
    assert WH_PREFIX + b"a" in env.upper_names()
    # over another lower file: the target's lower entry stays hidden by the moved file
    root.rename(b"b", env.inode("d"), b"x", 0)
    assert env.read("d/x") == b"lower b\n"
    assert env.names("d") == [b"moved", b"sub", b"x", b"y"]
    # onto a whited-out name: the whiteout goes
    env.inode("d").rename(b"moved", root, b"a", 0)
    assert env.read("a") == b"lower a\n"
    assert WH_PREFIX + b"a" not in env.upper_names()
    # symlinks move as symlinks
    root.rename(b"link", root, b"link2", 0)
    assert env.inode("link2", follow=False).readlink() == b"d/x"
    if env.upper_kind == "sefs":
        env.remount()
        assert env.names("") == [b"a", b"d", b"dirlink", b"empty", b"link2"]
        assert env.read("d/x") == b"lower b\n"


def test_renaming_a_lower_directory_is_exdev(env: Env) -> None:
    root = env.inode("")
    assert errno_of(lambda: root.rename(b"d", root, b"d2", 0)) == errno.EXDEV
    assert errno_of(lambda: root.rename(b"empty", root, b"e2", 0)) == errno.EXDEV
    env.inode("d").mkdir(b"sub2", 0o755, 0, 0)
    assert errno_of(lambda: root.rename(b"d", env.inode("d/sub2"), b"x", 0)) == errno.EINVAL
    # a directory only in the upper layer moves; over a whited-out lower name it is opaque
    root.mkdir(b"u", 0o755, 0, 0)
    env.write("u/f", b"f", os.O_CREAT | os.O_WRONLY)
    env.inode("d/sub").unlink(b"z")
    env.inode("d").rmdir(b"sub")
    env.inode("d").rename(b"sub2", root, b"moved", 0)
    root.rename(b"u", env.inode("d"), b"sub", 0)
    assert env.names("d/sub") == [b"f"]
    assert OPAQUE_MARKER in env.upper_names("d/sub")
    # over an empty merged directory too
    env.inode("").rename(b"moved", root, b"empty", 0)
    assert env.names("empty") == []
    if env.upper_kind == "sefs":
        env.remount()
        assert env.names("d/sub") == [b"f"]
        assert env.names("empty") == []


def test_rename_flags(env: Env) -> None:
    root = env.inode("")
    assert errno_of(lambda: root.rename(b"a", root, b"b", RENAME_NOREPLACE)) == errno.EEXIST
    assert errno_of(lambda: root.rename(b"a", root, b"a", RENAME_NOREPLACE)) == errno.EEXIST
    root.rename(b"a", root, b"c", RENAME_NOREPLACE)
    assert env.read("c") == b"lower a\n"
    root.rename(b"c", env.inode("d"), b"x", RENAME_EXCHANGE)
    assert (env.read("c"), env.read("d/x")) == (b"lower x\n", b"lower a\n")
    assert errno_of(lambda: root.rename(b"c", root, b"nope", RENAME_EXCHANGE)) == errno.ENOENT
    assert errno_of(lambda: root.rename(b"c", root, b"d", RENAME_EXCHANGE)) == errno.EXDEV
    bad = RENAME_EXCHANGE | RENAME_NOREPLACE
    assert errno_of(lambda: root.rename(b"c", root, b"b", bad)) == errno.EINVAL
    assert errno_of(lambda: root.rename(b"c", RamFs().root, b"b", 0)) == errno.EXDEV


def test_hard_link_of_a_lower_file(env: Env) -> None:
    root = env.inode("")
    root.link(b"h", env.inode("d/x"))
    x, h = env.inode("d/x").getattr(), env.inode("h").getattr()
    assert x.ino == h.ino and x.nlink == h.nlink == 2
    env.write("h", b"H")
    assert env.read("d/x") == b"Hower x\n"
    assert lower_bytes(env, "d/x") == b"lower x\n"
    assert errno_of(lambda: root.link(b"dd", env.inode("d"))) == errno.EPERM
    assert errno_of(lambda: root.link(b"b", env.inode("a"))) == errno.EEXIST
    assert errno_of(lambda: root.link(b"z", RamFs().root.create(b"f", 0o644, 0, 0))) == errno.EXDEV
    # renaming one hard link over the other does nothing
    env.inode("d").rename(b"x", root, b"h", 0)
    assert env.read("d/x") == b"Hower x\n"
    if env.upper_kind == "sefs":
        env.remount()
        assert env.inode("h").getattr().nlink == 2
        assert env.inode("h").ino == env.inode("d/x").ino


def test_statfs_and_sync_are_the_uppers(sefs_env: Env) -> None:
    assert sefs_env.fs.statfs().f_type == SEFS_MAGIC
    assert isinstance(sefs_env.upper, SefsFs)
    gen = sefs_env.upper.generation
    sefs_env.write("s", b"s", os.O_CREAT | os.O_WRONLY)
    sefs_env.fs.sync()
    assert sefs_env.upper.generation == gen + 1


def test_inode_numbers_are_stable_per_name(env: Env) -> None:
    inos = {p: env.inode(p, follow=False).ino for p in ("a", "b", "d", "d/x", "link", "empty")}
    assert len(set(inos.values())) == len(inos)
    listed = {e.name: e.ino for e in env.inode("").readdir()}
    assert all(listed[p.encode()] == ino for p, ino in inos.items() if "/" not in p)
    env.write("d/x", b"w")
    env.inode("empty").setattr(SetAttr(mode=0o700))
    assert {p: env.inode(p, follow=False).ino for p in inos} == inos


def test_a_lower_only_directory_lists_the_numbers_its_names_have(env: Env) -> None:
    """A directory only the lower layer has is listed by its own path (no upper to merge):
    the same names, types and union inode numbers as lookups give, before any lookup and
    after, and after the directory is copied up."""
    d = env.inode("d")
    assert d.upper is None  # type: ignore[attr-defined]
    first = sorted(d.readdir())
    assert [(e.name, e.dtype) for e in first] == [
        (b"sub", stat.S_IFDIR >> 12), (b"x", stat.S_IFREG >> 12), (b"y", stat.S_IFREG >> 12)
    ]  # fmt: skip
    looked = {e.name: env.inode("d/" + e.name.decode(), follow=False).ino for e in first}
    assert {e.name: e.ino for e in first} == looked
    assert sorted(d.readdir()) == first
    env.write("d/new", b"upper\n", os.O_CREAT | os.O_WRONLY)  # d is copied up
    merged = {e.name: e.ino for e in env.inode("d").readdir()}
    assert merged == {**looked, b"new": env.inode("d/new").ino}


def test_removed_directory_refuses_new_entries(env: Env) -> None:
    empty = env.inode("empty")
    env.inode("").rmdir(b"empty")
    assert errno_of(lambda: empty.create(b"f", 0o644, 0, 0)) == errno.ENOENT
    assert empty.readdir() == []


def test_readonly_upper_is_refused(tmp_path: Path, lower_fs: FileSystem) -> None:
    with pytest.raises(SyscallError) as ei:
        UnionFs(RamFs(readonly=True), lower_fs)
    assert ei.value.errno == errno.EINVAL


def test_extended_attributes_copy_up_only_when_they_change(env: Env) -> None:
    a = env.inode("a")
    assert a.list_xattr() == []
    assert errno_of(lambda: a.get_xattr(b"user.x")) == errno.ENODATA
    # calls bound to fail copy nothing up
    assert errno_of(lambda: a.remove_xattr(b"user.x")) == errno.ENODATA
    assert errno_of(lambda: a.set_xattr(b"user.x", b"v", XATTR_REPLACE)) == errno.ENODATA
    assert b"a" not in env.upper_names()
    a.set_xattr(b"user.x", b"v", XATTR_CREATE)
    assert b"a" in env.upper_names()
    assert env.read("a") == b"lower a\n"
    assert errno_of(lambda: a.set_xattr(b"user.x", b"w", XATTR_CREATE)) == errno.EEXIST
    d = env.inode("d")
    d.set_xattr(b"trusted.t", b"t", 0)  # a lower directory, copied up, still merged
    assert env.names("d") == [b"sub", b"x", b"y"]
    if env.upper_kind == "sefs":
        env.remount()
    assert env.inode("a").get_xattr(b"user.x") == b"v"
    assert env.inode("d").list_xattr() == [b"trusted.t"]
