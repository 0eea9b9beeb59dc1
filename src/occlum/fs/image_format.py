"""The read-only image: its byte layout and its metadata parser.

Owns the file format that ``occlum build`` writes from ``image/`` (and ``initfs/``; the builder
is :mod:`occlum.instance.image_builder`) and that
:class:`occlum.fs.imagefs.ImageFs` serves.  One image is one host file::

    block 0            header: magic, version, offsets and lengths of the regions below
    data region        every regular file's contents, each starting on a block boundary,
                       its last block zero-padded (files in inode order, blocks in order)
    block hash table   every file's leaf hashes (32 bytes a block, files in inode order)
    inode table        one record per inode: attributes, then for a directory its sorted
                       entries, for a file where its blocks and leaves are and its Merkle
                       root, for a symlink its target

The **root hash** is ``SHA-256(header || inode table)``.  The inode table holds every file's
Merkle root (:mod:`occlum.crypto.merkle`), each root covers that file's leaves, each leaf one
padded block: so the one hash measured into the enclave covers every metadata field and every
byte of the image, header padding included (the whole header block is hashed) and the image's
exact size (a header field).

Determinism, so that the same ``image/`` gives the same root hash: entries are sorted by their
name bytes; inodes are numbered breadth-first in that order (root = 1); recorded per inode are
mode, uid, gid, mtime (ns), size, a symlink's target; atime and ctime are not recorded (reads
and chmod-to-same would change them), host inode numbers neither.  mtimes *are* recorded, so
``ls -l`` inside looks like the host: the same contents with another mtime is another image
and another hash, which is right since the image is what gets measured.  Hard links inside the
tree stay hard links (one inode, one copy of the contents, ``nlink`` counted within the image).

Only regular files, directories and symlinks go into an image; a FIFO, socket, device or an
unreadable file stops the build with a :class:`~occlum.errors.UserError` naming it.

**Encrypted images** (``occlum build --image-key``, header version 2) have the same regions.
What differs: every file's blocks are stored encrypted (zero padding included) and the inode
table is stored encrypted whole, so no name, symlink target, size, mode or byte of contents is
in the image file in plaintext; the header adds a key-check value and the table's IV; a file's
inode record adds its IV.  The recipe is :mod:`occlum.crypto.image_cipher` (synthetic IVs, so
the same tree and key give the same image without ever reusing an IV for other plaintext).
Integrity works exactly as above, over the bytes *stored*: leaves hash ciphertext blocks and
the root hash covers the header and the encrypted table, so MRENCLAVE also pins the key (by
its key-check value).  Left visible: the header's region sizes and inode count, and how the
data region splits into files' block runs.  Integrity-only images are version 1, byte for byte
what they were before encryption existed.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field

from occlum.abi.fsabi import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG
from occlum.crypto.image_cipher import IV_SIZE, KEY_CHECK_SIZE
from occlum.crypto.merkle import BLOCK_SIZE, HASH_SIZE, block_count
from occlum.errors import UserError

__all__ = [
    "HEADER_SIZE",
    "IMAGEFS_MAGIC",
    "MAGIC",
    "VERSION",
    "VERSION_ENCRYPTED",
    "ImageHeader",
    "InodeRecord",
    "decode_inode_table",
    "image_is_encrypted",
    "image_root",
]

MAGIC = b"OCCLUMIMG1"
VERSION = 1  # integrity-only
VERSION_ENCRYPTED = 2
HEADER_SIZE = BLOCK_SIZE
# statfs f_type of a mounted image ("OCIM")
IMAGEFS_MAGIC = 0x4F43494D
DIR_SIZE = 4096  # what stat reports as a directory's size, as ext4 does for small ones


_HEADER = struct.Struct("<10sHIQQQQQQQQ")
_INODE = struct.Struct("<IIIIqQ")  # mode uid gid nlink mtime_ns size
_FILE = struct.Struct("<QQ32s")  # data offset, hash offset, Merkle root
# version 2: the header's key-check value and inode-table IV follow _HEADER; a file adds its IV
_ENC_HEADER = struct.Struct(f"<{KEY_CHECK_SIZE}s{IV_SIZE}s")
_ENC_FILE = struct.Struct(f"<QQ32s{IV_SIZE}s")
_COUNT = struct.Struct("<I")
_ENTRY = struct.Struct("<QH")  # child ino, name length; the name follows
_READ_CHUNK = 1 << 20  # a multiple of BLOCK_SIZE


@dataclass(slots=True, frozen=True)
class ImageHeader:
    """Block 0 of an image: where each region is (absolute offsets, byte lengths).

    An encrypted image (``version`` 2) also carries its key-check value and the IV of its
    inode table; an integrity-only one (version 1) leaves that part of the block zero.
    """

    image_size: int
    data_off: int
    data_len: int
    hash_off: int
    hash_len: int
    table_off: int
    table_len: int
    inode_count: int
    block_size: int = BLOCK_SIZE
    version: int = VERSION
    key_check: bytes = b""
    table_iv: bytes = b""

    @property
    def encrypted(self) -> bool:
        return self.version == VERSION_ENCRYPTED

    def pack(self) -> bytes:
        raw = _HEADER.pack(
            MAGIC, self.version, self.block_size, self.image_size, self.data_off,
            self.data_len, self.hash_off, self.hash_len, self.table_off, self.table_len,
            self.inode_count,
        )  # fmt: skip
        if self.encrypted:
            raw += _ENC_HEADER.pack(self.key_check, self.table_iv)
        return raw + bytes(HEADER_SIZE - len(raw))

    @classmethod
    def unpack(cls, raw: bytes) -> ImageHeader:
        """Parse block 0; ValueError if it is not an image of a version we read."""
        if len(raw) < HEADER_SIZE:
            raise ValueError("shorter than its header")
        magic, version, bs, size, doff, dlen, hoff, hlen, toff, tlen, n = _HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise ValueError("not an Occlum image (bad magic)")
        if version not in (VERSION, VERSION_ENCRYPTED) or bs != BLOCK_SIZE:
            raise ValueError(f"image version {version}, block size {bs} not supported")
        check, iv = b"", b""
        if version == VERSION_ENCRYPTED:
            check, iv = _ENC_HEADER.unpack_from(raw, _HEADER.size)
        return cls(size, doff, dlen, hoff, hlen, toff, tlen, n, bs, version, check, iv)


def image_is_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether the image file at ``path`` says it is encrypted (needs its key to mount).

    Reads the header only and verifies nothing: it tells a caller which key to bring, and
    :class:`~occlum.fs.imagefs.ImageFs` then checks the header against the measured root
    hash.  ``UserError`` if the file cannot be read or is not an image.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
    except OSError as e:
        raise UserError(f"image {os.fsdecode(path)}: {e.strerror}")
    try:
        return ImageHeader.unpack(raw).encrypted
    except ValueError as e:
        raise UserError(f"image {os.fsdecode(path)}: {e}")


def image_root(header: bytes, table: bytes) -> bytes:
    """The measured root hash of an image from its header block and inode table bytes."""
    h = hashlib.sha256(header)
    h.update(table)
    return h.digest()


@dataclass(slots=True)
class InodeRecord:
    """One inode of the table as parsed; which fields mean something depends on ``mode``."""

    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime_ns: int
    size: int
    data_off: int = 0
    hash_off: int = 0
    root: bytes = b""
    entries: dict[bytes, int] = field(default_factory=dict)
    target: bytes = b""
    iv: bytes = b""  # an encrypted image's file: the IV of its contents


def decode_inode_table(table: bytes, header: ImageHeader) -> list[InodeRecord]:
    """Parse the (decrypted) inode table; ValueError on anything malformed (records index
    ``ino - 1``).

    A table whose hash matched the measured root was written by :func:`occlum.instance.image_builder.build_image`; the
    checks still keep a bad builder from becoming an exception or an out-of-range read.
    """
    mv = memoryview(table)
    out: list[InodeRecord] = []
    pos = 0
    count = header.inode_count
    data_end = header.data_off + header.data_len
    hash_end = header.hash_off + header.hash_len
    encrypted = header.encrypted
    try:
        for ino in range(1, count + 1):
            mode, uid, gid, nlink, mtime, size = _INODE.unpack_from(mv, pos)
            pos += _INODE.size
            rec = InodeRecord(ino, mode, uid, gid, nlink, mtime, size)
            kind = mode & S_IFMT
            if kind == S_IFREG:
                if encrypted:
                    rec.data_off, rec.hash_off, rec.root, rec.iv = _ENC_FILE.unpack_from(mv, pos)
                    pos += _ENC_FILE.size
                else:
                    rec.data_off, rec.hash_off, rec.root = _FILE.unpack_from(mv, pos)
                    pos += _FILE.size
                n = block_count(size)
                if n and (
                    rec.data_off < header.data_off
                    or rec.data_off % BLOCK_SIZE
                    or rec.data_off + n * BLOCK_SIZE > data_end
                    or rec.hash_off < header.hash_off
                    or rec.hash_off + n * HASH_SIZE > hash_end
                ):
                    raise ValueError(f"inode {ino}: contents outside their regions")
            elif kind == S_IFDIR:
                (n_entries,) = _COUNT.unpack_from(mv, pos)
                pos += _COUNT.size
                for _ in range(n_entries):
                    child, name_len = _ENTRY.unpack_from(mv, pos)
                    pos += _ENTRY.size
                    name = bytes(mv[pos : pos + name_len])
                    pos += name_len
                    if (
                        len(name) != name_len
                        or not name
                        or b"/" in name
                        or b"\0" in name
                        or name in (b".", b"..")
                        or not 2 <= child <= count
                        or name in rec.entries
                    ):
                        raise ValueError(f"inode {ino}: bad directory entry")
                    rec.entries[name] = child
            elif kind == S_IFLNK:
                rec.target = bytes(mv[pos : pos + size])
                pos += size
                if len(rec.target) != size:
                    raise ValueError(f"inode {ino}: symlink target cut short")
            else:
                raise ValueError(f"inode {ino}: file type {kind:o} not allowed in an image")
            out.append(rec)
    except struct.error:
        raise ValueError("inode table cut short")
    if pos != len(table):
        raise ValueError("trailing bytes after the inode table")
    if not out or out[0].mode & S_IFMT != S_IFDIR:
        raise ValueError("the root is not a directory")
    return out
