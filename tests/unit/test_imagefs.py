"""The integrity-only image: Merkle trees, a deterministic builder, and imagefs verification."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import libos
from occlum.abi.errors import SyscallError
from occlum.crypto.merkle import (
    BLOCK_SIZE,
    EMPTY_ROOT,
    leaves_of,
    root_of_leaves,
    tree_of,
    verify_block,
)
from occlum.errors import UserError
from occlum.fs.image_format import IMAGEFS_MAGIC, ImageHeader
from occlum.fs.imagefs import ImageFs
from occlum.fs.ramfs import RamFs
from occlum.instance.image_builder import LeafCache, build_image
from occlum.vfs.inode import SetAttr
from occlum.vfs.mount import MountTable
from occlum.vfs.open import open_path
from occlum.vfs.path import Location, PathOp, resolve

# --- helpers ---------------------------------------------------------------------------------


def read_fd(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def read_all(r: Location, path: bytes) -> bytes:
    o = open_path(PathOp(r, r, path), os.O_RDONLY)
    assert o.host_fd is not None
    try:
        return read_fd(o.host_fd)
    finally:
        os.close(o.host_fd)


def host_tree(src: Path) -> dict[bytes, os.stat_result]:
    """Every path below ``src`` (as ``/rel`` bytes, root ``/``) with its lstat."""
    out = {b"/": os.stat(src)}
    base = os.fsencode(src)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[b"/" + os.path.relpath(full, base)] = os.lstat(full)
    return out


def check_round_trip(src: Path, fs: ImageFs) -> None:
    """Everything under ``src`` reads back through the VFS with the same bytes and stats."""
    mt = MountTable(RamFs(mode=0o755))
    mt.root().inode.mkdir(b"img", 0o755, 0, 0)
    mt.mount(fs, b"/img", source=b"image")
    r = mt.root()
    base = os.fsencode(src)
    for rel, hst in host_tree(src).items():
        host = base + rel.rstrip(b"/")
        path = b"/img" + rel
        loc = resolve(PathOp(r, r, path, follow=False))
        ist = loc.inode.getattr()
        assert ist.dev == fs.dev
        assert ist.mode == hst.st_mode, rel
        assert (ist.uid, ist.gid, ist.mtime_ns) == (hst.st_uid, hst.st_gid, hst.st_mtime_ns)
        assert ist.nlink == hst.st_nlink, rel
        if stat.S_ISDIR(hst.st_mode):
            names = sorted(e.name for e in loc.inode.readdir())
            assert names == sorted(os.listdir(host))
            for e in loc.inode.readdir():
                assert e.ino == loc.inode.lookup(e.name).ino
        elif stat.S_ISLNK(hst.st_mode):
            assert loc.inode.readlink() == os.readlink(host)
            assert ist.size == hst.st_size
        else:
            assert ist.size == hst.st_size
            with open(host, "rb") as f:
                assert read_all(r, path) == f.read(), rel


def make_tree(root: Path) -> None:
    (root / "etc" / "deep" / "er").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "empty_dir").mkdir()
    (root / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    (root / "etc" / "empty").write_bytes(b"")
    (root / "etc" / "deep" / "er" / "block").write_bytes(bytes(range(256)) * 16)  # 4096
    (root / "bin" / "big").write_bytes(os.urandom((1 << 20) + 12345))
    (root / "bin" / "two_blocks").write_bytes(b"x" * (BLOCK_SIZE + 1))
    (root / "bin" / "big").chmod(0o755)
    (root / "etc" / "hosts").chmod(0o600)
    (root / "etc" / "deep").chmod(0o2750)
    (root / "bin" / "sh").symlink_to("big")
    (root / "etc" / "abs").symlink_to("/etc/hosts")
    (root / "etc" / "dangling").symlink_to("../nowhere")
    os.link(root / "etc" / "hosts", root / "bin" / "hosts_link")
    os.utime(root / "etc", ns=(1, 1_600_000_000_123_456_789))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "image"
    src.mkdir()
    make_tree(src)
    return src


# --- Merkle trees ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 5 * 4096 - 7, 7 * 4096])
def test_merkle_proofs(size: int) -> None:
    data = os.urandom(size)
    t = tree_of(data)
    assert t.root == root_of_leaves(leaves_of(data))
    if size == 0:
        assert t.root == EMPTY_ROOT and t.leaf_count == 0
        return
    n = t.leaf_count
    for i in range(n):
        block = data[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]
        proof = t.proof(i)
        assert verify_block(t.root, i, n, block, proof)
        bad = bytes([block[0] ^ 1]) + block[1:]
        assert not verify_block(t.root, i, n, bad, proof)
        assert not verify_block(t.root, (i + 1) % n, n, block, proof) or (n == 1 and i == 0)
    # the index is bound into each leaf: reordering blocks changes the root
    if n >= 2:
        swapped = data[BLOCK_SIZE : 2 * BLOCK_SIZE] + data[:BLOCK_SIZE] + data[2 * BLOCK_SIZE :]
        assert tree_of(swapped).root != t.root or swapped == data


def test_merkle_padding_and_extension() -> None:
    # zero padding of the last block is hashed, but the tree still tells sizes apart by count
    assert tree_of(b"a").root == tree_of(b"a" + bytes(10)).root  # size lives in the inode
    assert tree_of(b"a" * 4096).root != tree_of(b"a" * 4096 + bytes(1)).root


# --- the builder ------------------------------------------------------------------------------


def test_build_is_deterministic(tree: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    seen: list[tuple[int, int]] = []
    ha = build_image(tree, a, progress=lambda done, total: seen.append((done, total)))
    hb = build_image(tree, b)
    assert ha == hb and a.read_bytes() == b.read_bytes()
    assert (
        seen
        and seen[-1][0]
        == seen[-1][1]
        == sum(s.st_size for s in host_tree(tree).values() if stat.S_ISREG(s.st_mode))
        - (tree / "etc" / "hosts").stat().st_size
    )  # a hard link is stored once
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # one changed byte, or one changed mtime, is another image
    f = tree / "bin" / "big"
    st0 = f.stat()
    data = bytearray(f.read_bytes())
    data[5000] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    hc = build_image(tree, b)
    assert hc != ha
    data[5000] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    assert build_image(tree, b) == ha
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns + 1))
    assert build_image(tree, b) != ha
    # atime alone does not matter
    os.utime(f, ns=(12345, st0.st_mtime_ns))
    assert build_image(tree, b) == ha


def test_build_refuses_special_files(tmp_path: Path) -> None:
    src = tmp_path / "image"
    (src / "dev").mkdir(parents=True)
    os.mkfifo(src / "dev" / "fifo")
    with pytest.raises(UserError, match=r"dev/fifo: is a FIFO"):
        build_image(src, tmp_path / "x.img")
    os.unlink(src / "dev" / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "sock"))
        with pytest.raises(UserError, match=r"sock: is a socket"):
            build_image(src, tmp_path / "x.img")
    assert not (tmp_path / "x.img").exists()


def test_build_refuses_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "image"
    src.mkdir()
    (src / "secret").write_bytes(b"s")
    old = tmp_path / "x.img"
    old.write_bytes(b"previous image")
    real_open = os.open

    def deny(path: str | bytes, flags: int, *args: int, **kw: int) -> int:
        if os.fsencode(path).endswith(b"/secret"):  # root reads past mode bits: fake EACCES
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(UserError, match=r"image/secret: cannot read: Permission denied"):
        build_image(src, old)
    monkeypatch.undo()
    assert old.read_bytes() == b"previous image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image", "x.img"]


# --- imagefs ----------------------------------------------------------------------------------


def test_round_trip(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    fs = ImageFs(img, build_image(tree, img))
    check_round_trip(tree, fs)
    sf = fs.statfs()
    assert sf.f_type == IMAGEFS_MAGIC and sf.flags & 1
    assert sf.blocks == -(-img.stat().st_size // sf.bsize) and sf.files == 14
    # a hard link is one inode
    a = fs.root.lookup(b"etc").lookup(b"hosts")
    assert fs.root.lookup(b"bin").lookup(b"hosts_link") is a
    assert a.getattr().nlink == 2
    fs.close()


def test_open_rules_and_page_cache(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    fs = ImageFs(img, build_image(tree, img))
    mt = MountTable(fs)
    r = mt.root()
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(SyscallError) as e:
            open_path(PathOp(r, r, b"/bin/big"), flags)
        assert e.value.errno == errno.EROFS
    big = resolve(PathOp(r, r, b"/bin/big")).inode
    for flags in (os.O_WRONLY, os.O_RDWR):
        with pytest.raises(SyscallError) as e:
            big.open_host_fd(flags)
        assert e.value.errno == errno.EROFS
    with pytest.raises(SyscallError) as e:
        open_path(PathOp(r, r, b"/bin/new"), os.O_CREAT | os.O_WRONLY, 0o644)
    assert e.value.errno == errno.EROFS
    with pytest.raises(SyscallError) as e:
        r.inode.mkdir(b"d", 0o755, 0, 0)
    assert e.value.errno == errno.EROFS
    with pytest.raises(SyscallError) as e:
        big.setattr(SetAttr(mode=0o777))
    assert e.value.errno == errno.EROFS
    fd1 = big.open_host_fd(os.O_RDONLY)
    fd2 = big.open_host_fd(os.O_RDONLY)
    try:
        # one sealed memfd behind both, with independent offsets
        assert os.fstat(fd1).st_ino == os.fstat(fd2).st_ino
        seals = fcntl.fcntl(fd1, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        assert os.read(fd1, 10) == (tree / "bin" / "big").read_bytes()[:10]
        assert os.lseek(fd2, 0, os.SEEK_CUR) == 0
        assert os.fstat(fd1).st_size == (tree / "bin" / "big").stat().st_size
        with pytest.raises(OSError):
            os.write(fd1, b"x")
        # even a writable reopen through /proc cannot change sealed pages
        rw = os.open(f"/proc/self/fd/{fd1}", os.O_RDWR)
        try:
            with pytest.raises(PermissionError):
                os.write(rw, b"x")
            with pytest.raises(PermissionError):
                os.ftruncate(rw, 1)
        finally:
            os.close(rw)
    finally:
        os.close(fd1)
        os.close(fd2)
    fs.close()


def test_page_cache_is_bounded(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    fs = ImageFs(img, build_image(tree, img), cache_bytes=64 << 10)
    mt = MountTable(fs)
    r = mt.root()
    expected = (tree / "bin" / "big").read_bytes()
    before = len(os.listdir("/proc/self/fd"))
    # bigger than the whole cache: served, never kept
    for _ in range(3):
        assert read_all(r, b"/bin/big") == expected
    assert len(os.listdir("/proc/self/fd")) == before
    held = resolve(PathOp(r, r, b"/etc/deep/er/block")).inode.open_host_fd(os.O_RDONLY)
    for _ in range(40):  # evicts /etc/deep/er/block many times over
        assert read_all(r, b"/bin/two_blocks") == b"x" * (BLOCK_SIZE + 1)
        assert read_all(r, b"/etc/hosts") == b"127.0.0.1 localhost\n"
    # a descriptor donated before the eviction still reads its pages
    assert read_fd(held) == bytes(range(256)) * 16
    os.close(held)
    assert len(os.listdir("/proc/self/fd")) <= before + 3
    fs.close()
    assert len(os.listdir("/proc/self/fd")) == before - 1


def test_wrong_root_hash_fails_mount(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    good = build_image(tree, img)
    before = len(os.listdir("/proc/self/fd"))
    for bad in ("00" * 32, good[:-2] + ("00" if good[-2:] != "00" else "11")):
        with pytest.raises(SyscallError) as e:
            ImageFs(img, bad)
        assert e.value.errno == errno.EIO
        assert "does not match its measured root hash" in e.value.why
    with pytest.raises(SyscallError) as e:
        ImageFs(tmp_path / "missing.img", good)
    assert e.value.errno == errno.ENOENT
    assert len(os.listdir("/proc/self/fd")) == before


# --- tampering --------------------------------------------------------------------------------


def image_outcome(img: Path, root_hash: str, src: Path, key: bytes | None = None) -> bool:
    """True if tampering was noticed (EIO at mount or on some read).

    Fails the test if any read returns bytes other than the original, or any error is
    something other than EIO.
    """
    try:
        fs = ImageFs(img, root_hash, key)
    except SyscallError as e:
        assert e.errno == errno.EIO, e
        return True
    noticed = False
    try:
        mt = MountTable(fs)
        r = mt.root()
        base = os.fsencode(src)
        for rel, hst in host_tree(src).items():
            try:
                loc = resolve(PathOp(r, r, b"/" + rel.lstrip(b"/"), follow=False))
                if stat.S_ISREG(hst.st_mode):
                    data = read_all(r, rel)
                    with open(base + rel, "rb") as f:
                        assert data == f.read(), f"wrong data returned for {rel!r}"
                elif stat.S_ISLNK(hst.st_mode):
                    assert loc.inode.readlink() == os.readlink(base + rel)
            except SyscallError as e:
                assert e.errno == errno.EIO, e
                assert b"fails verification" in e.why.encode()
                noticed = True
    finally:
        fs.close()
    return noticed


def mutated(img: Path, tmp: Path, change: Callable[[bytearray], bytearray]) -> Path:
    out = tmp / "tampered.img"
    out.write_bytes(bytes(change(bytearray(img.read_bytes()))))
    return out


def test_tampering_is_always_detected(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    root_hash = build_image(tree, img)
    assert not image_outcome(img, root_hash, tree)
    h = ImageHeader.unpack(img.read_bytes()[:4096])
    size = h.image_size
    positions = [
        *(0, 9, 10, 12, 20, 60, 100, 4095),  # header fields and its padding
        *range(h.data_off + 1, h.data_off + h.data_len, BLOCK_SIZE + 3),  # every data block
        h.data_off + h.data_len - 1,  # the last file's zero padding
        *range(h.hash_off, h.hash_off + h.hash_len, 97),  # block hash table
        *range(h.table_off, size),  # every byte of the inode table
    ]
    t = tmp_path / "tampered.img"
    t.write_bytes(img.read_bytes())
    with open(t, "r+b", buffering=0) as f:
        for pos in positions:
            (b,) = os.pread(f.fileno(), 1, pos)
            os.pwrite(f.fileno(), bytes([b ^ 0x01]), pos)
            assert image_outcome(t, root_hash, tree), f"flip at {pos} went unnoticed"
            os.pwrite(f.fileno(), bytes([b]), pos)

    def swap_blocks(a: int, b: int) -> Callable[[bytearray], bytearray]:
        def f(buf: bytearray) -> bytearray:
            x = slice(a, a + BLOCK_SIZE)
            y = slice(b, b + BLOCK_SIZE)
            buf[x], buf[y] = buf[y], buf[x]
            return buf

        return f

    blocks = h.data_len // BLOCK_SIZE
    changes = [
        lambda b: b[: size - 1],  # truncated by a byte
        lambda b: b[: h.table_off],  # the inode table cut off
        lambda b: b[: h.hash_off],  # hash table and inode table cut off
        lambda b: b + b"\0",  # grown
        swap_blocks(h.data_off, h.data_off + BLOCK_SIZE),
        swap_blocks(h.data_off + BLOCK_SIZE, h.data_off + (blocks - 1) * BLOCK_SIZE),
        swap_blocks(h.data_off + 3 * BLOCK_SIZE, h.data_off + 7 * BLOCK_SIZE),
    ]
    for i, change in enumerate(changes):
        assert image_outcome(mutated(img, tmp_path, change), root_hash, tree), f"change {i}"

    def swap_hashes(buf: bytearray) -> bytearray:
        a = slice(h.hash_off, h.hash_off + 32)
        b = slice(h.hash_off + 32, h.hash_off + 64)
        buf[a], buf[b] = buf[b], buf[a]
        return buf

    assert image_outcome(mutated(img, tmp_path, swap_hashes), root_hash, tree)


def test_tampering_after_mount(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    fs = ImageFs(img, build_image(tree, img))
    h = fs.header
    with open(img, "r+b") as f:
        f.seek(h.data_off + 100)  # a byte of the first file in data order
        b = f.read(1)
        f.seek(h.data_off + 100)
        f.write(bytes([b[0] ^ 0x80]))
    mt = MountTable(fs)
    r = mt.root()
    failures = []
    for rel in (b"/bin/big", b"/bin/two_blocks", b"/etc/hosts", b"/etc/empty"):
        try:
            assert read_all(r, rel) == (tree / os.fsdecode(rel[1:])).read_bytes()
        except SyscallError as e:
            assert e.errno == errno.EIO
            failures.append(e.why)
    assert failures == ["/bin/big: block 0 fails verification"]
    # a file verified before the image changed keeps being served from its sealed pages
    fs.close()


# --- random trees -----------------------------------------------------------------------------

NAMES = st.text(alphabet="abcXY_.-é", min_size=1, max_size=6).filter(lambda s: s not in {".", ".."})
SIZES = st.sampled_from([0, 1, 100, 4095, 4096, 4097, 8192, 9000])
CONTENT = st.one_of(
    st.binary(max_size=300), SIZES.flatmap(lambda n: st.binary(min_size=n, max_size=n))
)
TREES = st.recursive(
    CONTENT,
    lambda children: st.dictionaries(NAMES, children, max_size=4),
    max_leaves=10,
)


def materialise(path: Path, node: bytes | dict[str, object], mode_seed: int) -> None:
    if isinstance(node, bytes):
        path.write_bytes(node)
        path.chmod(0o400 + (mode_seed % 0o400))
        return
    path.mkdir()
    for i, (name, child) in enumerate(sorted(node.items())):
        assert isinstance(child, bytes | dict)
        materialise(path / name, child, mode_seed + i)
    if node:
        first = sorted(node)[0]
        (path / (first + "~ln")).symlink_to(first)


@settings(
    max_examples=libos.examples(25),
    deadline=None,
    # files of several blocks are the point: large inputs are expected
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tree=st.dictionaries(NAMES, TREES, max_size=5), seed=st.integers(0, 0o377))
def test_random_trees_round_trip(tree: dict[str, object], seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        materialise(src, tree, seed)
        img = Path(tmp) / "x.img"
        root_hash = build_image(src, img)
        assert build_image(src, Path(tmp) / "y.img") == root_hash
        fs = ImageFs(img, root_hash)
        try:
            check_round_trip(src, fs)
        finally:
            fs.close()


def test_incremental_build_with_leaf_cache(tree: Path, tmp_path: Path) -> None:
    full = build_image(tree, tmp_path / "full.img")
    cache = LeafCache()
    assert build_image(tree, tmp_path / "a.img", cache=cache) == full and cache.hits == 0
    saved = tmp_path / "leaves"
    cache.save(saved)
    cache = LeafCache.load(saved)
    assert build_image(tree, tmp_path / "b.img", cache=cache) == full
    assert cache.hits == 5  # every regular file inode, none hashed again
    assert (tmp_path / "b.img").read_bytes() == (tmp_path / "full.img").read_bytes()
    # a rewrite that even restores size and mtime is seen (ctime moved) and hashed again
    f = tree / "bin" / "big"
    st0 = f.stat()
    data = bytearray(f.read_bytes())
    data[7] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    (tree / "etc" / "empty").unlink()
    changed = build_image(tree, tmp_path / "c.img", cache=cache)
    assert cache.hits == 3
    assert changed == build_image(tree, tmp_path / "d.img") != full
    assert b"/etc/empty" not in b"".join(cache.entries)
    fs = ImageFs(tmp_path / "c.img", changed)
    check_round_trip(tree, fs)
    fs.close()
    # a damaged cache file is an empty cache, not an error
    saved.write_bytes(saved.read_bytes()[:100])
    assert LeafCache.load(saved).entries == {}
    assert LeafCache.load(tmp_path / "missing").entries == {}
