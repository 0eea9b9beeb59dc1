"""imagefs: the read-only file system that serves an image (integrity-only or encrypted), verified.

Owns mounting an image built by :mod:`occlum.fs.image_format` and every check between
its bytes on the host and what a program reads.  At mount the header and the inode table are
hashed and compared with the root hash the caller measured; nothing of an image is trusted
before that.  A regular file's contents are checked on their first open, all of them: the
file's leaf hashes are checked against its Merkle root (in the verified inode table), then
every block read from the image against its leaf, before one byte reaches the page cache.  A
mismatch is ``EIO`` naming the file and block; wrong data is never returned.

An encrypted image is verified the same way (the hashes cover its ciphertext), then decrypted
with the image key: the inode table at mount, a file's blocks as they are verified.  Key
problems are :class:`ImageKeyError`, one line each, told apart from damage: an encrypted image
mounted without a key, a wrong key (the header's key-check value does not match; checked only
after the header has matched the measured root hash), or a key given for an integrity-only
image, which is refused rather than ignored: a caller who believes the image is secret should
learn that it is not.

The page cache is one sealed memfd per file (``F_SEAL_WRITE | GROW | SHRINK | SEAL``), so no
one, the LibOS included, can change verified pages afterwards.  Every open gets its own open
description of that memfd (reopened through ``/proc/self/fd``), as ramfs does.  The memfds
are kept in a cache bounded by total bytes; an evicted memfd is closed here, while programs
that opened it keep its pages alive in the host kernel.

Verified memfds may outlive the mount: :data:`VERIFIED` holds those a long-lived process
(the zygote of ``occlum run``, :mod:`occlum.cli.zygote`) kept from earlier runs and handed
down by ``fork``.  An entry's name says which bytes it holds: the image file as it was
opened (device, inode, size, modification and change times), the root hash it was mounted
with, the image key's digest, and the inode number, which the verified table maps to one
Merkle root.  A rebuilt image has another root hash; an image changed in place has other
times (the change time cannot be set back); either way no entry matches, and its files are
verified again from the image, where damage is ``EIO``.  The memfds are sealed, so nobody can
change an entry's pages.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, ST_RDONLY, StatFs, dtype_of_mode
from occlum.crypto.aead import IntegrityError
from occlum.crypto.image_cipher import ImageCipher
from occlum.crypto.merkle import BLOCK_SIZE, HASH_SIZE, block_count, leaves_of, root_of_leaves
from occlum.errors import UserError
from occlum.fs.image_format import (
    HEADER_SIZE,
    IMAGEFS_MAGIC,
    ImageHeader,
    InodeRecord,
    decode_inode_table,
    image_is_encrypted,
    image_root,
)
from occlum.platform.fdbudget import lasting
from occlum.vfs.inode import HOST_OPEN_MASK, DirEntry, Inode, Stat
from occlum.vfs.mount import FileSystem

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "VERIFIED",
    "ImageFs",
    "ImageKeyError",
    "VerifiedFiles",
    "image_is_encrypted",
]

DEFAULT_CACHE_BYTES = 256 << 20
_VERIFY_CHUNK = 1 << 20  # bytes read and checked at a time; a multiple of BLOCK_SIZE
_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


def _eio(why: str) -> SyscallError:
    return SyscallError(errno.EIO, why)


@dataclass(slots=True)
class VerifiedFiles:
    """Sealed memfds of verified image files kept beyond one mount (see the module's text):
    ``files`` maps an entry's name to its memfd, owned by whoever put it there; ``publish``,
    when set, is told of each file this process verifies (its name, memfd and size), to keep
    it for later runs if it will (the callee takes no ownership: it passes the memfd on)."""

    files: dict[str, int] = field(default_factory=dict)
    publish: Callable[[str, int, int], None] | None = None


VERIFIED = VerifiedFiles()


class ImageKeyError(UserError):
    """The image key does not fit the image: missing, wrong, or given for a plain image."""


class ImageInode(Inode):
    """An inode of the image: attributes straight from the verified table."""

    fs: ImageFs

    def __init__(self, fs: ImageFs, rec: InodeRecord) -> None:
        super().__init__(fs, rec.ino, rec.mode)
        self.rec = rec

    def getattr(self) -> Stat:
        r = self.rec
        return Stat(
            dev=self.fs.dev,
            ino=r.ino,
            mode=r.mode,
            nlink=r.nlink,
            uid=r.uid,
            gid=r.gid,
            size=r.size,
            blksize=BLOCK_SIZE,
            blocks=block_count(r.size) * (BLOCK_SIZE // 512) if self.is_regular else 0,
            atime_ns=r.mtime_ns,
            mtime_ns=r.mtime_ns,
            ctime_ns=r.mtime_ns,
        )

    def get_xattr(self, name: bytes) -> bytes:
        # the image records no extended attributes; setting one is EROFS (the default)
        raise SyscallError(errno.ENODATA, "the image keeps no extended attributes")


class ImageDir(ImageInode):
    def __init__(self, fs: ImageFs, rec: InodeRecord) -> None:
        super().__init__(fs, rec)
        self._listing: list[DirEntry] | None = None

    def lookup(self, name: bytes) -> Inode:
        ino = self.rec.entries.get(name)
        if ino is None:
            raise SyscallError(errno.ENOENT, "no such file or directory")
        return self.fs.inode(ino)

    def readdir(self) -> list[DirEntry]:
        if self._listing is None:
            recs = self.fs.records
            self._listing = [
                DirEntry(name, ino, dtype_of_mode(recs[ino - 1].mode))
                for name, ino in self.rec.entries.items()
            ]
        return list(self._listing)


class ImageSymlink(ImageInode):
    def readlink(self) -> bytes:
        return self.rec.target


class ImageFile(ImageInode):
    def open_host_fd(self, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise SyscallError(errno.EROFS, "write access on a read-only file system")
        memfd, cached = self.fs.page_cache_fd(self.rec)
        try:
            # a new open description (own offset) of the same verified, sealed pages
            return os.open(f"/proc/self/fd/{memfd}", (flags & HOST_OPEN_MASK) | os.O_CLOEXEC)
        finally:
            if not cached:
                os.close(memfd)


class ImageFs(FileSystem):
    """The image file at ``path`` whose measured root hash is ``root_hash`` (hex), read-only.

    ``key`` is the image key (16 or 32 bytes) of an encrypted image; an integrity-only image
    takes none.  Raises ``SyscallError(EIO)`` if the image does not match ``root_hash`` or is
    malformed, the open error if the image file cannot be read, and :class:`ImageKeyError`
    if the key does not fit the (verified) image.
    """

    fstype = "imagefs"

    def __init__(
        self,
        path: str | Path,
        root_hash: str,
        key: bytes | None = None,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        super().__init__(readonly=True)
        self.path = Path(path)
        self.cache_bytes = cache_bytes
        try:
            want = bytes.fromhex(root_hash)
        except ValueError:
            raise SyscallError(errno.EINVAL, f"root hash {root_hash!r} is not hex")
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO, f"image {self.path}: {e.strerror}")
        self.cipher: ImageCipher | None = None
        try:
            self.header, self.records = self._load(want, key)
        except BaseException:
            os.close(self.fd)
            raise
        st = os.fstat(self.fd)
        key_digest = hashlib.sha256(key).hexdigest()[:32] if key is not None else "-"
        # the name of this image's files in VERIFIED, but for the inode number
        self.verified_name = (
            f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:"
            f"{root_hash.lower()}:{key_digest}:"
        )
        self._inodes: list[ImageInode | None] = [None] * len(self.records)
        self.paths = self._first_paths()
        self.root = self.inode(1)
        # ino -> (memfd, size), least recently used first
        self._cache: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._cached_bytes = 0

    def _pread(self, length: int, offset: int) -> bytes:
        try:
            return os.pread(self.fd, length, offset)
        except OSError as e:
            raise _eio(f"image {self.path}: {e.strerror}")

    def _load(self, want: bytes, key: bytes | None) -> tuple[ImageHeader, list[InodeRecord]]:
        mismatch = _eio("image metadata does not match its measured root hash")
        raw = self._pread(HEADER_SIZE, 0)
        try:
            header = ImageHeader.unpack(raw)
        except ValueError:
            raise mismatch
        size = os.fstat(self.fd).st_size
        if header.table_off + header.table_len > size:
            raise mismatch
        table = self._pread(header.table_len, header.table_off)
        if not hmac.compare_digest(image_root(raw, table), want):
            raise mismatch
        if size != header.image_size:
            raise _eio(f"image {self.path}: {size} bytes, built as {header.image_size}")
        if header.encrypted:
            table = self._decrypt_table(header, table, key)
        elif key is not None:
            raise ImageKeyError(
                f"image {self.path} is not encrypted (integrity-only) but was given an image "
                "key: refusing it (build with `occlum build --image-key` to encrypt)"
            )
        try:
            return header, decode_inode_table(table, header)
        except ValueError as e:
            raise _eio(f"image metadata is malformed: {e}")

    def _decrypt_table(self, header: ImageHeader, table: bytes, key: bytes | None) -> bytes:
        if key is None:
            raise ImageKeyError(
                f"image {self.path} is encrypted: it cannot be mounted without its image key"
            )
        try:
            cipher = ImageCipher(key)
        except ValueError as e:
            raise ImageKeyError(f"image {self.path}: not an image key ({e})")
        if not hmac.compare_digest(cipher.key_check, header.key_check):
            raise ImageKeyError(f"wrong image key for the encrypted image {self.path}")
        try:
            plain = cipher.open_table(header.table_iv, table)
        except IntegrityError as e:
            raise _eio(f"image metadata is malformed: {e}")
        self.cipher = cipher
        return plain

    def _first_paths(self) -> dict[int, bytes]:
        """One path of every inode (the first found from the root), for error messages."""
        paths = {1: b"/"}
        todo = [1]
        while todo:
            ino = todo.pop()
            base = paths[ino].rstrip(b"/")
            for name, child in self.records[ino - 1].entries.items():
                if child not in paths:
                    paths[child] = base + b"/" + name
                    if self.records[child - 1].mode & S_IFMT == S_IFDIR:
                        todo.append(child)
        return paths

    def inode(self, ino: int) -> ImageInode:
        node = self._inodes[ino - 1]
        if node is None:
            rec = self.records[ino - 1]
            kind = rec.mode & S_IFMT
            if kind == S_IFDIR:
                node = ImageDir(self, rec)
            elif kind == S_IFLNK:
                node = ImageSymlink(self, rec)
            else:
                assert kind == S_IFREG
                node = ImageFile(self, rec)
            self._inodes[ino - 1] = node
        return node

    # --- the page cache ------------------------------------------------------------------

    def page_cache_fd(self, rec: InodeRecord) -> tuple[int, bool]:
        """A sealed memfd of ``rec``'s verified contents, and whether the cache keeps it.

        The caller closes a memfd the cache did not keep (a file bigger than the cache).
        """
        hit = self._cache.get(rec.ino)
        if hit is not None:
            self._cache.move_to_end(rec.ino)
            return hit[0], True
        memfd = self._kept_or_fill(rec)
        if rec.size > self.cache_bytes:
            return memfd, False
        while self._cached_bytes + rec.size > self.cache_bytes and self._cache:
            _ino, (old_fd, old_size) = self._cache.popitem(last=False)
            os.close(old_fd)
            self._cached_bytes -= old_size
        self._cache[rec.ino] = (memfd, rec.size)
        self._cached_bytes += rec.size
        return memfd, True

    def _kept_or_fill(self, rec: InodeRecord) -> int:
        """A memfd of our own of ``rec``'s verified contents: a copy of the descriptor an
        earlier run verified (VERIFIED), else a new one, filled from the image and verified."""
        name = f"{self.verified_name}{rec.ino}"
        kept = VERIFIED.files.get(name)
        if kept is not None:
            try:
                return lasting(fcntl.fcntl(kept, fcntl.F_DUPFD_CLOEXEC, 0))
            except OSError as e:
                raise SyscallError(e.errno or errno.EMFILE, "cannot copy a page-cache descriptor")
        memfd = self._fill(rec)
        if VERIFIED.publish is not None:
            VERIFIED.publish(name, memfd, rec.size)
        return memfd

    def _fill(self, rec: InodeRecord) -> int:
        path = os.fsdecode(self.paths.get(rec.ino, b"?"))
        n = block_count(rec.size)
        table = self._pread(n * HASH_SIZE, rec.hash_off) if n else b""
        expected = [table[i : i + HASH_SIZE] for i in range(0, len(table), HASH_SIZE)]
        if len(expected) != n or not hmac.compare_digest(root_of_leaves(expected), rec.root):
            raise _eio(f"{path}: block hash table fails verification")
        memfd = lasting(
            os.memfd_create(f"imagefs:{rec.ino}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        )
        try:
            self._copy_verified(rec, path, expected, memfd)
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
        except BaseException:
            os.close(memfd)
            raise
        return memfd

    def _copy_verified(
        self, rec: InodeRecord, path: str, expected: list[bytes], memfd: int
    ) -> None:
        buf = bytearray(min(_VERIFY_CHUNK, len(expected) * BLOCK_SIZE))
        view = memoryview(buf)
        left = rec.size
        first = 0
        while first < len(expected):
            count = min(len(buf) // BLOCK_SIZE, len(expected) - first)
            want = count * BLOCK_SIZE
            chunk = view[:want]
            try:
                got = os.preadv(self.fd, [chunk], rec.data_off + first * BLOCK_SIZE)
            except OSError as e:
                raise _eio(f"{path}: {e.strerror} reading the image")
            if got != want:
                raise _eio(f"{path}: block {first + got // BLOCK_SIZE} fails verification")
            leaves = leaves_of(chunk, first)
            if leaves != expected[first : first + count]:
                bad = next(
                    i for i, (a, b) in enumerate(zip(leaves, expected[first:], strict=False))
                    if a != b
                )  # fmt: skip
                raise _eio(f"{path}: block {first + bad} fails verification")
            if self.cipher is not None:
                # verified ciphertext: decrypted only now, so nothing unverified is decrypted
                stream = self.cipher.block_cipher(rec.iv, first)
                chunk = memoryview(stream.update(chunk))
            out = chunk[: min(want, left)]
            while out:
                out = out[os.write(memfd, out) :]
            left -= min(want, left)
            first += count

    # --- FileSystem ----------------------------------------------------------------------

    def statfs(self) -> StatFs:
        h = self.header
        return StatFs(
            f_type=IMAGEFS_MAGIC,
            bsize=BLOCK_SIZE,
            blocks=(h.image_size + BLOCK_SIZE - 1) // BLOCK_SIZE,
            files=h.inode_count,
            namelen=255,
            frsize=BLOCK_SIZE,
            flags=ST_RDONLY,
        )

    def close(self) -> None:
        """Drop the page cache and the image descriptor (donated descriptors stay valid)."""
        for memfd, _size in self._cache.values():
            os.close(memfd)
        self._cache.clear()
        self._cached_bytes = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
