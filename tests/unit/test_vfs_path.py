"""Path resolution, open flags, rename semantics, getdents64 and stat packing."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    DT_DIR,
    DT_REG,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    StatFs,
    pack_stat,
    pack_statfs,
    pack_statx,
    parse_dirents64,
)
from occlum.fs.hostfs import HostFs
from occlum.fs.ramfs import RamFs
from occlum.fs.unionfs import UnionFs
from occlum.vfs import dirstream
from occlum.vfs.dirfile import OpenDirectory
from occlum.vfs.inode import ROOT, Cred, Inode, SetAttr
from occlum.vfs.mount import FileSystem, MountTable
from occlum.vfs.open import open_path
from occlum.vfs.ops import check_new, check_rename
from occlum.vfs.path import Location, PathOp, resolve, resolve_parent


def err(e: pytest.ExceptionInfo[SyscallError]) -> int:
    return e.value.errno


@pytest.fixture
def vfs() -> Iterator[tuple[MountTable, Location]]:
    fs = RamFs(mode=0o755)
    r = fs.root
    r.mkdir(b"tmp", 0o777, 0, 0)
    d = r.mkdir(b"a", 0o755, 0, 0)
    d.mkdir(b"b", 0o755, 0, 0)
    d.create(b"f", 0o644, 0, 0)
    d.symlink(b"lf", b"f", 0, 0)
    d.symlink(b"ld", b"b", 0, 0)
    d.symlink(b"abs", b"/a/b", 0, 0)
    d.symlink(b"up", b"../../../..", 0, 0)
    d.symlink(b"loop1", b"loop2", 0, 0)
    d.symlink(b"loop2", b"loop1", 0, 0)
    d.symlink(b"dangling", b"nowhere", 0, 0)
    mt = MountTable(fs)
    mt.mount(RamFs(), b"/tmp", source=b"tmpfs")
    yield mt, mt.root()


def res(root: Location, path: bytes, **kw: object) -> bytes:
    return resolve(PathOp(root, root, path, **kw)).absolute_path()  # type: ignore[arg-type]


def test_dotdot_and_dot(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    assert res(r, b"/a/b/../b/./") == b"/a/b"
    assert res(r, b"/../../..") == b"/"
    assert res(r, b"a/up") == b"/"
    assert res(r, b"/tmp/..") == b"/"
    assert res(r, b"//a///b") == b"/a/b"


def test_symlinks(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    assert res(r, b"/a/lf") == b"/a/f"
    assert res(r, b"/a/lf", follow=False) == b"/a/lf"
    assert res(r, b"/a/ld/") == b"/a/b"
    assert res(r, b"/a/ld/", follow=False) == b"/a/b"  # trailing slash follows
    assert res(r, b"/a/abs/..") == b"/a"
    with pytest.raises(SyscallError) as e:
        res(r, b"/a/loop1")
    assert err(e) == errno.ELOOP
    with pytest.raises(SyscallError) as e:
        res(r, b"/a/dangling")
    assert err(e) == errno.ENOENT


def test_symlink_budget(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    t = r.inode.lookup(b"tmp")
    del t  # the mounted ramfs covers it; use the mount's root
    tmp = resolve(PathOp(r, r, b"/tmp"))
    for i in range(41):
        tmp.inode.symlink(b"l%d" % (i + 1), b"l%d" % i, 0, 0)
    tmp.inode.create(b"l0", 0o644, 0, 0)
    assert res(r, b"/tmp/l40") == b"/tmp/l0"
    with pytest.raises(SyscallError) as e:
        res(r, b"/tmp/l41")
    assert err(e) == errno.ELOOP


def test_errors(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    cases = [
        (b"", errno.ENOENT),
        (b"/a/f/", errno.ENOTDIR),
        (b"/a/f/x", errno.ENOTDIR),
        (b"/a/lf/", errno.ENOTDIR),
        (b"/nope/x", errno.ENOENT),
        (b"/" + b"x" * 256, errno.ENAMETOOLONG),
        (b"/a" * 2048, errno.ENAMETOOLONG),
    ]
    for path, want in cases:
        with pytest.raises(SyscallError) as e:
            res(r, path)
        assert err(e) == want, path


def test_chroot_like_root(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    root = resolve(PathOp(r, r, b"/a"))
    assert resolve(PathOp(root, root, b"../../b")).absolute_path() == b"/a/b"
    assert resolve(PathOp(root, root, b"/b")).absolute_path(root) == b"/b"
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(root, root, b"/abs"))  # "/a/b" seen from inside /a is /a/a/b
    assert err(e) == errno.ENOENT


def test_resolve_flags(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    a = resolve(PathOp(r, r, b"/a"))
    ok = resolve(PathOp(r, a, b"b/../f", resolve_flags=RESOLVE_BENEATH))
    assert ok.absolute_path() == b"/a/f"
    for path in (b"..", b"/a", b"abs", b"up", b"b/../.."):
        with pytest.raises(SyscallError) as e:
            resolve(PathOp(r, a, path, resolve_flags=RESOLVE_BENEATH))
        assert err(e) == errno.EXDEV, path
    # IN_ROOT: "/" and ".." are clamped to the dirfd
    got = resolve(PathOp(r, a, b"/b/../../f", resolve_flags=RESOLVE_IN_ROOT))
    assert got.absolute_path() == b"/a/f"
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, a, b"lf", resolve_flags=RESOLVE_NO_SYMLINKS))
    assert err(e) == errno.ELOOP
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, r, b"/tmp", resolve_flags=RESOLVE_NO_XDEV))
    assert err(e) == errno.EXDEV
    tmp = resolve(PathOp(r, r, b"/tmp"))
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, tmp, b"..", resolve_flags=RESOLVE_NO_XDEV))
    assert err(e) == errno.EXDEV
    assert (
        resolve(PathOp(r, r, b"/a/lf", resolve_flags=RESOLVE_NO_MAGICLINKS)).absolute_path()
        == b"/a/f"
    )


def test_search_permission(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    a = resolve(PathOp(r, r, b"/a"))
    a.inode.setattr(SetAttr(mode=0o700))
    user = Cred.user(1000, 1000)
    with pytest.raises(SyscallError) as e:
        resolve(PathOp(r, r, b"/a/f", cred=user))
    assert err(e) == errno.EACCES
    assert resolve(PathOp(r, r, b"/a/f", cred=Cred())).absolute_path() == b"/a/f"


def test_resolve_parent(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    pn = resolve_parent(PathOp(r, r, b"/a/ld/new/"))
    assert pn.parent.absolute_path() == b"/a/b" and pn.name == b"new" and pn.trailing_slash
    assert resolve_parent(PathOp(r, r, b"/")).name == b"."


def test_names_to_make(vfs: tuple[MountTable, Location]) -> None:
    """mkdir, mknod, link and symlink targets: Linux's filename_create rules."""
    _, r = vfs

    def check(path: bytes, want_dir: bool = False) -> int:
        try:
            check_new(resolve_parent(PathOp(r, r, path)), want_dir=want_dir)
        except SyscallError as e:
            return e.errno
        return 0

    assert check(b"/a/new") == 0
    assert check(b"/a/new/", want_dir=True) == 0
    assert check(b"/a/new/") == errno.ENOENT  # a slash asks for a directory
    assert check(b"/a/f/") == errno.EEXIST
    assert check(b"/a/.") == errno.EEXIST
    assert check(b"/a/..", want_dir=True) == errno.EEXIST


def test_rename_names(vfs: tuple[MountTable, Location]) -> None:
    """rename(2)'s checks on its final components, in Linux's order."""
    _, r = vfs

    def check(old: bytes, new: bytes, flags: int = 0) -> int:
        try:
            check_rename(
                resolve_parent(PathOp(r, r, old)), resolve_parent(PathOp(r, r, new)), flags
            )
        except SyscallError as e:
            return e.errno
        return 0

    assert check(b"/a/f", b"/a/g") == 0
    assert check(b"/a/f/", b"/a/g") == errno.ENOTDIR
    assert check(b"/a/f", b"/a/g/") == errno.ENOTDIR
    assert check(b"/a/lf/", b"/a/g") == errno.ENOTDIR  # the symlink itself is renamed
    assert check(b"/a/ld/", b"/a/g") == errno.ENOTDIR
    assert check(b"/a/b/", b"/a/g/") == 0
    assert check(b"/a/none/", b"/a/g") == errno.ENOENT
    assert check(b"/a/.", b"/a/g") == errno.EBUSY
    assert check(b"/a/f", b"/a/..") == errno.EBUSY
    assert check(b"/a/f", b"/a/..", RENAME_NOREPLACE) == errno.EEXIST
    assert check(b"/a/f", b"/a/b/", RENAME_NOREPLACE) == errno.EEXIST  # before the slash
    assert check(b"/a/b", b"/a/f/", RENAME_EXCHANGE) == errno.ENOTDIR
    assert check(b"/a/f", b"/tmp/g") == errno.EXDEV


def test_open_flags(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs

    def op(path: bytes, flags: int, cred: Cred = ROOT) -> int:
        o = open_path(PathOp(r, r, path, cred=cred), flags, 0o644, 0o022)
        if o.host_fd is not None:
            os.close(o.host_fd)
        return o.kind

    def fails(path: bytes, flags: int, want: int, cred: Cred = ROOT) -> None:
        with pytest.raises(SyscallError) as e:
            op(path, flags, cred)
        assert err(e) == want, (path, flags)

    o = open_path(PathOp(r, r, b"/tmp/x"), os.O_CREAT | os.O_WRONLY, 0o666, 0o022)
    assert o.created and o.host_fd is not None
    os.write(o.host_fd, b"abc")
    os.close(o.host_fd)
    st = o.location.inode.getattr()
    assert st.mode & 0o777 == 0o644 and st.size == 3
    fails(b"/tmp/x", os.O_CREAT | os.O_EXCL | os.O_RDWR, errno.EEXIST)
    fails(b"/a/dangling", os.O_CREAT | os.O_EXCL | os.O_RDWR, errno.EEXIST)
    fails(b"/a/lf", os.O_NOFOLLOW, errno.ELOOP)
    fails(b"/a/f", os.O_DIRECTORY, errno.ENOTDIR)
    fails(b"/a", os.O_WRONLY, errno.EISDIR)
    fails(b"/a", os.O_RDONLY | os.O_TRUNC, errno.EISDIR)
    fails(b"/a", os.O_CREAT | os.O_RDONLY, errno.EISDIR)
    fails(b"/a/new/", os.O_CREAT | os.O_RDWR, errno.EISDIR)
    fails(b"/a/f", os.O_WRONLY, errno.EACCES, Cred.user(1000, 1000))
    fails(b"/a/x", os.O_CREAT | os.O_WRONLY, errno.EACCES, Cred.user(1000, 1000))
    assert op(b"/a/lf", os.O_PATH | os.O_NOFOLLOW) == 0o120000
    assert op(b"/a", os.O_RDONLY | os.O_DIRECTORY) == 0o040000
    # O_CREAT through a dangling symlink creates its target
    o = open_path(PathOp(r, r, b"/a/dangling"), os.O_CREAT | os.O_RDWR, 0o600)
    assert o.created and o.location.absolute_path() == b"/a/nowhere"
    assert o.host_fd is not None
    os.close(o.host_fd)
    fails(b"/a/.", os.O_CREAT | os.O_EXCL | os.O_RDWR, errno.EEXIST)
    fails(b"/a/..", os.O_CREAT | os.O_RDWR, errno.EISDIR)
    # O_TRUNC truncates with O_RDONLY too, as on Linux
    o = open_path(PathOp(r, r, b"/a/nowhere"), os.O_RDWR)
    assert o.host_fd is not None
    os.write(o.host_fd, b"data")
    os.close(o.host_fd)
    o = open_path(PathOp(r, r, b"/a/nowhere"), os.O_RDONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    assert o.host_fd is not None and not o.created
    os.close(o.host_fd)
    assert o.location.inode.getattr().size == 0
    # O_TRUNC empties, and every open has its own offset over shared pages
    o1 = open_path(PathOp(r, r, b"/tmp/x"), os.O_RDWR | os.O_TRUNC)
    o2 = open_path(PathOp(r, r, b"/tmp/x"), os.O_RDONLY)
    assert o1.host_fd is not None and o2.host_fd is not None
    os.write(o1.host_fd, b"hello")
    assert os.read(o2.host_fd, 10) == b"hello"
    os.close(o1.host_fd)
    os.close(o2.host_fd)


def test_readonly_hostfs(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    mt = MountTable(HostFs(str(tmp_path), readonly=True))
    r = mt.root()
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_CREAT | os.O_RDONLY):
        with pytest.raises(SyscallError) as e:
            open_path(PathOp(r, r, b"/f" if not flags & os.O_CREAT else b"/g"), flags, 0o644)
        assert err(e) == errno.EROFS
    for call in (
        lambda: r.inode.mkdir(b"d", 0o755, 0, 0),
        lambda: r.inode.unlink(b"f"),
        lambda: r.inode.lookup(b"f").setattr(SetAttr(size=0)),
    ):
        with pytest.raises(SyscallError) as e:
            call()
        assert err(e) == errno.EROFS


def test_rename_semantics() -> None:
    fs = RamFs()
    r = fs.root
    d1 = r.mkdir(b"d1", 0o755, 0, 0)
    r.mkdir(b"d2", 0o755, 0, 0)
    full = r.mkdir(b"full", 0o755, 0, 0)
    full.create(b"x", 0o644, 0, 0)
    r.create(b"f", 0o644, 0, 0)
    r.create(b"g", 0o644, 0, 0)

    def fails(old: bytes, new: bytes, flags: int, want: int) -> None:
        with pytest.raises(SyscallError) as e:
            r.rename(old, r, new, flags)
        assert err(e) == want

    fails(b"d1", b"f", 0, errno.ENOTDIR)
    fails(b"f", b"d1", 0, errno.EISDIR)
    fails(b"d1", b"full", 0, errno.ENOTEMPTY)
    fails(b"f", b"g", RENAME_NOREPLACE, errno.EEXIST)
    fails(b"f", b"nope", RENAME_EXCHANGE, errno.ENOENT)
    fails(b"nope", b"x", 0, errno.ENOENT)
    with pytest.raises(SyscallError) as e:
        r.rename(b"d1", d1, b"sub", 0)
    assert err(e) == errno.EINVAL
    with pytest.raises(SyscallError) as e:
        r.rename(b"f", RamFs().root, b"f", 0)
    assert err(e) == errno.EXDEV
    nlink = r.getattr().nlink
    r.rename(b"d1", r, b"d2", 0)  # dir over empty dir
    assert r.getattr().nlink == nlink - 1
    g = r.lookup(b"g")
    r.rename(b"f", r, b"g", 0)
    assert g.getattr().nlink == 0
    r.rename(b"g", r, b"full", RENAME_EXCHANGE)
    assert r.lookup(b"g").is_dir and r.lookup(b"full").is_regular


def test_getdents64(vfs: tuple[MountTable, Location]) -> None:
    _, r = vfs
    tmp = resolve(PathOp(r, r, b"/tmp"))
    names = {b"n%03d" % i + b"x" * i for i in range(60)}
    for n in names:
        tmp.inode.create(n, 0o644, 0, 0)
    d = OpenDirectory(tmp)
    with pytest.raises(SyscallError) as e:
        d.getdents64(10)
    assert err(e) == errno.EINVAL
    got: list[tuple[int, int, int, bytes]] = []
    while chunk := d.getdents64(200):
        assert len(chunk) <= 200
        got.extend(parse_dirents64(chunk))
    assert [g[3] for g in got[:2]] == [b".", b".."]
    assert got[0][2] == DT_DIR and all(g[2] == DT_REG for g in got[2:])
    assert {g[3] for g in got[2:]} == names
    # d_off is a cookie: seeking to one resumes right after that entry
    d.seek(got[9][1], os.SEEK_SET)
    assert parse_dirents64(d.getdents64(4096))[0][3] == got[10][3]
    d.seek(0, os.SEEK_SET)
    assert parse_dirents64(d.getdents64(4096))[0][3] == b"."


def _listing(loc: Location) -> list[tuple[int, int, int, bytes]]:
    d = OpenDirectory(loc)
    got: list[tuple[int, int, int, bytes]] = []
    while chunk := d.getdents64(32768):
        got.extend(parse_dirents64(chunk))
    return got


def _many(kind: str) -> tuple[Location, Inode]:
    """A directory to fill: of a ramfs, made by a union, or a union's merged directory."""
    if kind == "ramfs":
        fs: FileSystem = RamFs()
        fs.root.mkdir(b"many", 0o755, 0, 0)
    else:
        lower = RamFs()
        m = lower.root.mkdir(b"many", 0o755, 0, 0)
        for i in range(5):
            m.create(b"lower%d" % i, 0o644, 0, 0)
        fs = UnionFs(RamFs(), lower)
        if kind == "union":
            fs.root.mkdir(b"new", 0o755, 0, 0)
    root = MountTable(fs).root()
    loc = resolve(PathOp(root, root, b"/many" if kind != "union" else b"/new"))
    return loc, loc.inode


@pytest.mark.parametrize("kind", ["ramfs", "union", "merged"])
def test_getdents64_keeps_the_packed_listing(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory's listing is packed once and grown name by name: listing it again, or
    after names were made, packs no record but "." and ".." (100 000 names listed 36 times
    slower than on ext4 when each listing packed every record).  A removal makes it anew."""
    loc, d = _many(kind)
    base = len(_listing(loc))
    for i in range(3000):
        d.create(b"f%05d" % i, 0o644, 0, 0)
    first = _listing(loc)
    assert len(first) == base + 3000

    packed = 0
    real = dirstream._layout

    def counted(n: int):  # type: ignore[no-untyped-def]
        nonlocal packed
        packed += 1
        return real(n)

    monkeypatch.setattr(dirstream, "_layout", counted)
    assert _listing(loc) == first
    assert packed == 2  # "." and ".."
    packed = 0
    for i in range(3000, 3010):
        d.create(b"f%05d" % i, 0o644, 0, 0)
    again = _listing(loc)
    assert again[: len(first)] == first and len(again) == base + 3010
    assert packed == 2 + 10
    d.unlink(b"f00007")
    packed = 0
    after = _listing(loc)
    assert packed == len(after)
    assert sorted(n for *_, n in after) == sorted(n for *_, n in again if n != b"f00007")
    # as the file system lists it: names, inode numbers and types
    want = sorted((e.ino, e.dtype, e.name) for e in loc.inode.readdir())
    assert sorted((i, t, n) for i, _, t, n in after[2:]) == want


def test_getdents64_resumes_at_its_cookies_while_names_come_and_go(
    vfs: tuple[MountTable, Location],
) -> None:
    """d_off stays a cookie for the listing under way whatever changes: seeking to one
    resumes right after its entry, names made meanwhile come last, removed ones stay until
    the listing starts again."""
    _, r = vfs
    tmp = resolve(PathOp(r, r, b"/tmp"))
    for i in range(200):
        tmp.inode.create(b"n%03d" % i, 0o644, 0, 0)
    d = OpenDirectory(tmp)
    head = parse_dirents64(d.getdents64(24 * 52))
    assert len(head) == 52
    tmp.inode.create(b"late", 0o644, 0, 0)
    tmp.inode.unlink(head[10][3])
    tmp.inode.unlink(b"n199")  # not read yet: still in the listing under way, or not
    rest: list[tuple[int, int, int, bytes]] = []
    while chunk := d.getdents64(700):
        rest.extend(parse_dirents64(chunk))
    names = [n for *_, n in head + rest]
    assert len(names) == len(set(names)) and names[-1] == b"late"
    assert set(names) >= {b"n%03d" % i for i in range(199)}
    d.seek(head[30][1], os.SEEK_SET)
    assert parse_dirents64(d.getdents64(100))[0][3] == head[31][3]
    d.seek(0, os.SEEK_SET)
    fresh = [n for *_, n in parse_dirents64(d.getdents64(1 << 16))]
    assert head[10][3] not in fresh and b"late" in fresh and len(fresh) == 2 + 199


def test_struct_sizes() -> None:
    fs = RamFs()
    st = fs.root.getattr()
    assert len(pack_stat(st)) == 144
    assert len(pack_statx(st, 0x7FF)) == 256
    assert len(pack_statfs(StatFs(f_type=1))) == 120
    raw = pack_stat(st)
    assert int.from_bytes(raw[8:16], "little") == st.ino
    assert int.from_bytes(raw[24:28], "little") == st.mode


def test_a_union_lists_a_host_lower_directory_afresh(tmp_path: Path) -> None:
    """A lower layer whose names may change behind the union (a host directory mounted
    writable; a read-only one is an image, which never changes) is listed anew each time;
    only layers changed through calls keep their listing."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"")
    lower = HostFs(str(tmp_path))
    try:
        fs = UnionFs(RamFs(), lower)
        root = MountTable(fs).root()
        loc = resolve(PathOp(root, root, b"/d"))
        assert [n for *_, n in _listing(loc)[2:]] == [b"a"]
        (tmp_path / "d" / "b").write_bytes(b"")
        assert sorted(n for *_, n in _listing(loc)[2:]) == [b"a", b"b"]
    finally:
        lower.close()
