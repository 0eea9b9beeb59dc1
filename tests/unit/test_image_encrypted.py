"""Encrypted images: the synthetic-IV recipe, the version-2 format, and ImageFs with a key."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from test_imagefs import check_round_trip, image_outcome, make_tree, read_all

from occlum.abi.errors import SyscallError
from occlum.crypto.aead import IntegrityError
from occlum.crypto.image_cipher import ImageCipher
from occlum.crypto.merkle import BLOCK_SIZE
from occlum.errors import UserError
from occlum.fs.image_format import (
    VERSION,
    VERSION_ENCRYPTED,
    ImageHeader,
    decode_inode_table,
    image_is_encrypted,
)
from occlum.fs.imagefs import ImageFs, ImageKeyError
from occlum.instance.image_builder import LeafCache, build_image
from occlum.vfs.mount import MountTable

KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))

# strings that must never appear in an encrypted image: contents, names, symlink targets
CONTENT_MARK = b"PLAINTEXT-CONTENT-MARKER"
NAME_MARK = "secret_file_name_marker"
TARGET_MARK = "symlink_target_marker"
ADDED_MARK = b"ADDED-FILE-MARKER"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "image"
    src.mkdir()
    make_tree(src)
    (src / "etc" / NAME_MARK).write_bytes(CONTENT_MARK * 1000)
    (src / "etc" / "tiny").write_bytes(CONTENT_MARK)  # a short last block: padding
    (src / "etc" / "link").symlink_to(TARGET_MARK)
    # two equal files at different paths, several blocks long
    same = os.urandom(3 * BLOCK_SIZE)
    (src / "bin" / "same1").write_bytes(same)
    (src / "bin" / "same2").write_bytes(same)
    return src


def table_of(img: Path, key: bytes) -> tuple[ImageHeader, list[bytes]]:
    """The header and the decrypted inode records' IVs of an encrypted image."""
    raw = img.read_bytes()
    h = ImageHeader.unpack(raw[:BLOCK_SIZE])
    table = ImageCipher(key).open_table(h.table_iv, raw[h.table_off : h.table_off + h.table_len])
    return h, [r.iv for r in decode_inode_table(table, h) if stat.S_ISREG(r.mode)]


# --- the recipe -------------------------------------------------------------------------------


def test_cipher_is_deterministic_and_seekable() -> None:
    c = ImageCipher(KEY)
    assert c.key_check == ImageCipher(KEY).key_check != ImageCipher(OTHER_KEY).key_check
    assert ImageCipher(bytes(32)).key_check != ImageCipher(bytes(16)).key_check
    with pytest.raises(ValueError):
        ImageCipher(bytes(24))
    data = os.urandom(5 * BLOCK_SIZE)

    def iv(name: bytes, content: bytes) -> bytes:
        h = c.file_iv(name)
        h.update(content)
        return h.iv()

    a = iv(b"/a", data)
    assert a == iv(b"/a", data)
    # the IV depends on everything it covers, the name/contents boundary included
    assert len({a, iv(b"/b", data), iv(b"/a", data[:-1]), iv(b"/", b"a" + data)}) == 4
    whole = c.block_cipher(a, 0).update(data)
    assert whole != data
    for first in range(5):  # any block decrypts alone
        part = whole[first * BLOCK_SIZE :]
        assert c.block_cipher(a, first).update(part) == data[first * BLOCK_SIZE :]
    # the counter wraps at 2**128 as AES-CTR's does
    top = (2**128 - 300).to_bytes(16, "big")
    stream = c.block_cipher(top, 0).update(data)
    assert c.block_cipher(top, 3).update(stream[3 * BLOCK_SIZE :]) == data[3 * BLOCK_SIZE :]


def test_table_sealing() -> None:
    c = ImageCipher(KEY)
    table = b"names and modes " * 100
    iv, ct = c.seal_table(table)
    assert (iv, ct) == c.seal_table(table) and b"names" not in ct
    assert c.open_table(iv, ct) == table
    with pytest.raises(IntegrityError):
        ImageCipher(OTHER_KEY).open_table(iv, ct)
    with pytest.raises(IntegrityError):
        c.open_table(iv, ct[:5] + bytes([ct[5] ^ 1]) + ct[6:])


# --- the format -------------------------------------------------------------------------------


def test_encrypted_build_is_deterministic(tree: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    ha = build_image(tree, a, key=KEY)
    assert build_image(tree, b, key=KEY) == ha
    assert a.read_bytes() == b.read_bytes()
    plain = build_image(tree, tmp_path / "p.img")
    assert len({ha, plain, build_image(tree, b, key=OTHER_KEY)}) == 3
    assert ImageHeader.unpack(a.read_bytes()[:BLOCK_SIZE]).version == VERSION_ENCRYPTED
    assert ImageHeader.unpack((tmp_path / "p.img").read_bytes()[:BLOCK_SIZE]).version == VERSION
    assert image_is_encrypted(a) and not image_is_encrypted(tmp_path / "p.img")
    # one changed byte is another image; restored, the same image again
    f = tree / "bin" / "big"
    st0 = f.stat()
    data = bytearray(f.read_bytes())
    data[5000] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    assert build_image(tree, b, key=KEY) != ha
    data[5000] ^= 1
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    assert build_image(tree, b, key=KEY) == ha


def test_no_plaintext_in_the_image(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    build_image(tree, img, key=KEY, add_files={"/etc/added": ADDED_MARK})
    raw = img.read_bytes()
    known = [
        CONTENT_MARK, ADDED_MARK, NAME_MARK.encode(), TARGET_MARK.encode(), b"two_blocks",
        b"hosts_link", b"127.0.0.1 localhost", bytes(range(256)), b"x" * 64, b"../nowhere",
        b"added",
    ]  # fmt: skip
    for mark in known:
        assert mark not in raw, mark
    # the same tree without a key shows them all: the check above can fail
    build_image(tree, tmp_path / "p.img", add_files={"/etc/added": ADDED_MARK})
    plain = (tmp_path / "p.img").read_bytes()
    assert all(mark in plain for mark in known)
    # equal files at different paths are different ciphertext, under different IVs
    h, ivs = table_of(img, KEY)
    assert len(ivs) == len(set(ivs))
    blocks = {raw[o : o + BLOCK_SIZE] for o in range(h.data_off, h.hash_off, BLOCK_SIZE)}
    assert len(blocks) == h.data_len // BLOCK_SIZE


def test_round_trip(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    fs = ImageFs(img, build_image(tree, img, key=KEY), KEY)
    try:
        check_round_trip(tree, fs)
        assert fs.root.lookup(b"etc").lookup(b"link").readlink() == TARGET_MARK.encode()
        assert fs.statfs().files == len(fs.records)
    finally:
        fs.close()
    big = tmp_path / "k32.img"  # a 256-bit key works the same
    fs = ImageFs(big, build_image(tree, big, key=bytes(32)), bytes(32))
    try:
        check_round_trip(tree, fs)
    finally:
        fs.close()


def test_added_files(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    before = sorted(p.name for p in (tree / "etc").iterdir())
    added = {"/etc/image_key": b"c7-32\n", "/etc/hosts": b"replaced\n", "/new": b""}
    for key in (None, KEY):
        fs = ImageFs(img, build_image(tree, img, key=key, add_files=added), key)
        try:
            r = MountTable(fs).root()
            assert read_all(r, b"/etc/image_key") == b"c7-32\n"
            assert read_all(r, b"/etc/hosts") == b"replaced\n"
            assert read_all(r, b"/bin/hosts_link") == (tree / "etc" / "hosts").read_bytes()
            st = fs.root.lookup(b"etc").lookup(b"image_key").getattr()
            assert (st.mode, st.mtime_ns, st.uid) == (0o100600, 0, tree.stat().st_uid)
            assert fs.root.lookup(b"new").getattr().size == 0
        finally:
            fs.close()
    assert sorted(p.name for p in (tree / "etc").iterdir()) == before  # the tree is untouched
    with pytest.raises(UserError, match=r"cannot add /nodir/key to the image: /nodir is not"):
        build_image(tree, img, add_files={"/nodir/key": b"k"})
    with pytest.raises(UserError, match=r"/bin/sh is not a directory of the tree"):
        build_image(tree, img, add_files={"/bin/sh/key": b"k"})  # a symlink


# --- keys -------------------------------------------------------------------------------------


def test_key_errors(tree: Path, tmp_path: Path) -> None:
    img, plain = tmp_path / "x.img", tmp_path / "p.img"
    root = build_image(tree, img, key=KEY)
    plain_root = build_image(tree, plain)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ImageKeyError, match=r"is encrypted: it cannot be mounted without its"):
        ImageFs(img, root)
    with pytest.raises(ImageKeyError, match=r"^wrong image key for the encrypted image "):
        ImageFs(img, root, OTHER_KEY)
    with pytest.raises(ImageKeyError, match=r"not an image key"):
        ImageFs(img, root, b"short")
    with pytest.raises(ImageKeyError, match=r"is not encrypted \(integrity-only\)"):
        ImageFs(plain, plain_root, KEY)
    ImageFs(plain, plain_root).close()
    # damage is not mistaken for a wrong key, nor a wrong key for damage
    with pytest.raises(SyscallError) as e:
        ImageFs(img, plain_root, KEY)
    assert e.value.errno == errno.EIO and "does not match its measured root hash" in e.value.why
    assert len(os.listdir("/proc/self/fd")) == before


# --- tampering --------------------------------------------------------------------------------


def test_tampering_is_detected_never_decrypted(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    root = build_image(tree, img, key=KEY)
    h = ImageHeader.unpack(img.read_bytes()[:BLOCK_SIZE])
    positions = [
        *(0, 10, 60, 76, 85, 111, 115, 130, 4095),  # fields, key check, table IV, padding
        *range(h.data_off + 7, h.data_off + h.data_len, 3 * BLOCK_SIZE + 11),  # data blocks
        h.data_off + h.data_len - 1,  # the last file's encrypted padding
        *range(h.hash_off, h.hash_off + h.hash_len, 331),  # block hash table
        *range(h.table_off, h.image_size, 17),  # the encrypted inode table
    ]
    t = tmp_path / "tampered.img"
    t.write_bytes(img.read_bytes())
    with open(t, "r+b", buffering=0) as f:
        for pos in positions:
            (b,) = os.pread(f.fileno(), 1, pos)
            os.pwrite(f.fileno(), bytes([b ^ 0x01]), pos)
            assert image_outcome(t, root, tree, KEY), f"flip at {pos} went unnoticed"
            os.pwrite(f.fileno(), bytes([b]), pos)
    assert not image_outcome(t, root, tree, KEY)


def test_flipped_block_is_eio_for_that_file(tree: Path, tmp_path: Path) -> None:
    img = tmp_path / "x.img"
    fs = ImageFs(img, build_image(tree, img, key=KEY), KEY)
    with open(img, "r+b") as f:  # a byte of the first file in data order
        f.seek(fs.header.data_off + BLOCK_SIZE + 9)
        b = f.read(1)
        f.seek(fs.header.data_off + BLOCK_SIZE + 9)
        f.write(bytes([b[0] ^ 0x80]))
    r = MountTable(fs).root()
    try:
        with pytest.raises(SyscallError) as e:
            read_all(r, b"/bin/big")
        assert e.value.errno == errno.EIO and e.value.why == "/bin/big: block 1 fails verification"
        assert read_all(r, b"/bin/two_blocks") == b"x" * (BLOCK_SIZE + 1)
    finally:
        fs.close()


# --- incremental builds -------------------------------------------------------------------------


def test_incremental_encrypted_build(tree: Path, tmp_path: Path) -> None:
    full = build_image(tree, tmp_path / "full.img", key=KEY)
    files = 9  # regular-file inodes of the tree
    cache = LeafCache()
    assert build_image(tree, tmp_path / "a.img", cache=cache, key=KEY) == full
    assert cache.hits == 0 and cache.scheme == ImageCipher(KEY).key_check
    saved = tmp_path / "leaves"
    cache.save(saved)
    cache = LeafCache.load(saved)
    assert build_image(tree, tmp_path / "b.img", cache=cache, key=KEY) == full
    assert cache.hits == files
    assert (tmp_path / "b.img").read_bytes() == (tmp_path / "full.img").read_bytes()
    # a changed file is encrypted under a new IV and hashed again; the others are not
    (tree / "bin" / "big").write_bytes(os.urandom(9000))
    changed = build_image(tree, tmp_path / "c.img", cache=cache, key=KEY)
    assert cache.hits == files - 1
    assert changed == build_image(tree, tmp_path / "d.img", key=KEY) != full
    # a cache of another scheme is never used: without a key, or with another key
    for key in (None, OTHER_KEY, KEY):
        cache.save(saved)
        cache = LeafCache.load(saved)
        fresh = build_image(tree, tmp_path / "e.img", key=key)
        assert build_image(tree, tmp_path / "f.img", cache=cache, key=key) == fresh
        assert cache.hits == 0
    assert build_image(tree, tmp_path / "f.img", cache=cache, key=KEY) == changed
    assert cache.hits == files
    fs = ImageFs(tmp_path / "c.img", changed, KEY)
    try:
        check_round_trip(tree, fs)
    finally:
        fs.close()
    # a damaged cache file is an empty cache, not an error
    cache.save(saved)
    saved.write_bytes(saved.read_bytes()[:100])
    assert LeafCache.load(saved).entries == {}
