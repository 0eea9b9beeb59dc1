"""The integrity-only image: its byte layout, its builder and its metadata parser.

Owns the file format that ``occlum build`` writes from ``image/`` (and ``initfs/``) and that
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
unreadable file stops the build with a :class:`~occlum.abi.errors.UserError` naming it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat as pystat
import struct
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from occlum.abi.errors import UserError
from occlum.abi.fsabi import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG
from occlum.crypto.merkle import BLOCK_SIZE, HASH_SIZE, block_count, leaves_of, root_of_leaves

__all__ = [
    "HEADER_SIZE",
    "IMAGEFS_MAGIC",
    "MAGIC",
    "VERSION",
    "ImageHeader",
    "InodeRecord",
    "LeafCache",
    "ProgressCallback",
    "build_image",
    "decode_inode_table",
    "image_root",
]

MAGIC = b"OCCLUMIMG1"
VERSION = 1
HEADER_SIZE = BLOCK_SIZE
# statfs f_type of a mounted image ("OCIM")
IMAGEFS_MAGIC = 0x4F43494D
DIR_SIZE = 4096  # what stat reports as a directory's size, as ext4 does for small ones

# Called with (bytes of file contents done, bytes in all); for a progress bar.
ProgressCallback = Callable[[int, int], None]

_HEADER = struct.Struct("<10sHIQQQQQQQQ")
_INODE = struct.Struct("<IIIIqQ")  # mode uid gid nlink mtime_ns size
_FILE = struct.Struct("<QQ32s")  # data offset, hash offset, Merkle root
_COUNT = struct.Struct("<I")
_ENTRY = struct.Struct("<QH")  # child ino, name length; the name follows
_READ_CHUNK = 1 << 20  # a multiple of BLOCK_SIZE


@dataclass(slots=True, frozen=True)
class ImageHeader:
    """Block 0 of an image: where each region is (absolute offsets, byte lengths)."""

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

    def pack(self) -> bytes:
        raw = _HEADER.pack(
            MAGIC, self.version, self.block_size, self.image_size, self.data_off,
            self.data_len, self.hash_off, self.hash_len, self.table_off, self.table_len,
            self.inode_count,
        )  # fmt: skip
        return raw + bytes(HEADER_SIZE - len(raw))

    @classmethod
    def unpack(cls, raw: bytes) -> ImageHeader:
        """Parse block 0; ValueError if it is not an image of a version we read."""
        if len(raw) < HEADER_SIZE:
            raise ValueError("shorter than its header")
        magic, version, bs, size, doff, dlen, hoff, hlen, toff, tlen, n = _HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise ValueError("not an Occlum image (bad magic)")
        if version != VERSION or bs != BLOCK_SIZE:
            raise ValueError(f"image version {version}, block size {bs} not supported")
        return cls(size, doff, dlen, hoff, hlen, toff, tlen, n, bs, version)


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


def decode_inode_table(table: bytes, header: ImageHeader) -> list[InodeRecord]:
    """Parse the inode table; ValueError on anything malformed (records index ``ino - 1``).

    A table whose hash matched the measured root was written by :func:`build_image`; the
    checks still keep a bad builder from becoming an exception or an out-of-range read.
    """
    mv = memoryview(table)
    out: list[InodeRecord] = []
    pos = 0
    count = header.inode_count
    data_end = header.data_off + header.data_len
    hash_end = header.hash_off + header.hash_len
    try:
        for ino in range(1, count + 1):
            mode, uid, gid, nlink, mtime, size = _INODE.unpack_from(mv, pos)
            pos += _INODE.size
            rec = InodeRecord(ino, mode, uid, gid, nlink, mtime, size)
            kind = mode & S_IFMT
            if kind == S_IFREG:
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


# --- the builder ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    """One inode of the tree being built."""

    ino: int
    path: bytes
    st: os.stat_result
    nlink: int = 1
    entries: list[tuple[bytes, int]] = field(default_factory=list)
    target: bytes = b""
    # filled in while the data region is written
    data_off: int = 0
    hash_off: int = 0
    root: bytes = b""


_KIND_NAMES = {
    pystat.S_IFIFO: "a FIFO",
    pystat.S_IFSOCK: "a socket",
    pystat.S_IFCHR: "a character device",
    pystat.S_IFBLK: "a block device",
}


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _collect(src: bytes) -> list[_Node]:
    """Every inode under ``src``, numbered breadth-first in name-byte order (root first)."""
    try:
        root_st = os.stat(src)
    except OSError as e:
        raise UserError(f"{_show(src)}: cannot build an image: {e.strerror}")
    if not pystat.S_ISDIR(root_st.st_mode):
        raise UserError(f"{_show(src)}: cannot build an image: not a directory")
    nodes = [_Node(1, src, root_st, nlink=2)]
    links: dict[tuple[int, int], _Node] = {}
    queue: deque[_Node] = deque(nodes)
    while queue:
        d = queue.popleft()
        try:
            names = sorted(os.listdir(d.path))
        except OSError as e:
            raise UserError(f"{_show(d.path)}: cannot read directory: {e.strerror}")
        for name in names:
            path = os.path.join(d.path, name)
            try:
                st = os.lstat(path)
            except OSError as e:
                raise UserError(f"{_show(path)}: cannot stat: {e.strerror}")
            fmt = pystat.S_IFMT(st.st_mode)
            if fmt not in (pystat.S_IFREG, pystat.S_IFDIR, pystat.S_IFLNK):
                raise UserError(
                    f"{_show(path)}: is {_KIND_NAMES.get(fmt, 'a special file')}; an image "
                    "holds only regular files, directories and symlinks"
                )
            key = (st.st_dev, st.st_ino)
            same = links.get(key) if fmt != pystat.S_IFDIR and st.st_nlink > 1 else None
            if same is not None:
                same.nlink += 1
                d.entries.append((name, same.ino))
                continue
            node = _Node(len(nodes) + 1, path, st)
            nodes.append(node)
            d.entries.append((name, node.ino))
            if fmt == pystat.S_IFDIR:
                node.nlink = 2
                d.nlink += 1
                queue.append(node)
            else:
                if st.st_nlink > 1:
                    links[key] = node
                if fmt == pystat.S_IFLNK:
                    try:
                        node.target = os.readlink(path)
                    except OSError as e:
                        raise UserError(f"{_show(path)}: cannot read symlink: {e.strerror}")
    return nodes


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv) :]


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LeafCache:
    """Leaf hashes of files hashed by an earlier build, so that an incremental build skips them.

    An entry is keyed by the file's path and what ``stat`` says of it (device, inode, size,
    mtime, ctime): a file whose stat is unchanged is taken to have unchanged contents, the rule
    of make and rsync.  ctime cannot be set back by a user, so even a rewrite in place that
    restores the old mtime is seen.  ``occlum build -f`` builds without a cache.  A build
    leaves in the cache exactly the files of the tree it built.
    """

    _MAGIC = b"OCCLUMLEAVES1\n"
    _RECORD = struct.Struct("<I5QQ")  # path length, stat key, leaf bytes length

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[tuple[int, int, int, int, int], bytes]] = {}
        self.hits = 0  # files of the last build that were not hashed again

    def get(self, path: bytes, st: os.stat_result) -> bytes | None:
        hit = self.entries.get(path)
        return hit[1] if hit is not None and hit[0] == _stat_key(st) else None

    @classmethod
    def load(cls, path: Path) -> LeafCache:
        """The cache saved at ``path``; an empty one if it is missing or unreadable."""
        cache = cls()
        try:
            raw = Path(path).read_bytes()
            if not raw.startswith(cls._MAGIC):
                return cache
            pos = len(cls._MAGIC)
            while pos < len(raw):
                plen, dev, ino, size, mtime, ctime, llen = cls._RECORD.unpack_from(raw, pos)
                pos += cls._RECORD.size
                name = raw[pos : pos + plen]
                leaves = raw[pos + plen : pos + plen + llen]
                pos += plen + llen
                if len(leaves) != llen or llen != block_count(size) * HASH_SIZE:
                    return cls()
                cache.entries[name] = ((dev, ino, size, mtime, ctime), leaves)
        except (OSError, struct.error):
            return cls()
        return cache

    def save(self, path: Path) -> None:
        """Write the cache to ``path`` atomically."""
        parts = [self._MAGIC]
        for name, (key, leaves) in sorted(self.entries.items()):
            parts.append(self._RECORD.pack(len(name), *key, len(leaves)))
            parts.append(name)
            parts.append(leaves)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(b"".join(parts))
            os.replace(tmp, path)
        except OSError as e:
            raise UserError(f"{path}: cannot write the build cache: {e.strerror}")


def _kernel_copy(src: int, out: int, size: int) -> int:
    """Copy ``size`` bytes from ``src`` (at 0) to ``out`` (at its offset) in the kernel."""
    done = 0
    use_cfr = True
    while done < size:
        n = 0
        if use_cfr:
            try:
                n = os.copy_file_range(src, out, size - done, done)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                use_cfr = False  # across file systems: sendfile still avoids user space
        if not use_cfr:
            n = os.sendfile(out, src, done, size - done)
        if n == 0:
            break
        done += n
    return done


def _copy_file(
    node: _Node, out: int, buf: bytearray, cache: LeafCache | None, fresh: LeafCache | None
) -> bytes:
    """Append ``node``'s padded blocks to ``out``; return its leaves, joined.

    With a cache entry for an unchanged file, the blocks are copied by the kernel and the
    cached leaves used; otherwise every block is read and hashed.
    """
    path, size = node.path, node.st.st_size
    changed = UserError(f"{_show(path)}: changed while the image was being built")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise UserError(f"{_show(path)}: cannot read: {e.strerror}")
    try:
        st = os.fstat(fd)
        key = _stat_key(st)
        if key[:3] != (node.st.st_dev, node.st.st_ino, size):
            raise changed
        joined = cache.get(path, st) if cache is not None else None
        if cache is not None and joined is not None:
            if _kernel_copy(fd, out, size) != size:
                raise changed
            cache.hits += 1
        else:
            leaves: list[bytes] = []
            view = memoryview(buf)
            done = 0
            while done < size:
                want = min(len(buf), size - done)
                got = 0
                while got < want:
                    n = os.readv(fd, [view[got:want]])
                    if n == 0:
                        raise changed
                    got += n
                chunk = view[:want]
                leaves.extend(leaves_of(chunk, done // BLOCK_SIZE))
                _write_all(out, chunk)
                done += want
            joined = b"".join(leaves)
        # a write while we copied moves mtime/ctime (and maybe the size)
        if os.pread(fd, 1, size) or _stat_key(os.fstat(fd)) != key:
            raise changed
    except OSError as e:
        raise UserError(f"{_show(path)}: cannot read: {e.strerror}")
    finally:
        os.close(fd)
    pad = -size % BLOCK_SIZE
    if pad:
        _write_all(out, bytes(pad))
    if fresh is not None:
        fresh.entries[path] = (key, joined)
    return joined


def _encode_inode(node: _Node) -> bytes:
    st = node.st
    fmt = pystat.S_IFMT(st.st_mode)
    mode = fmt | pystat.S_IMODE(st.st_mode)
    if fmt == S_IFDIR:
        size = DIR_SIZE
    elif fmt == S_IFLNK:
        size = len(node.target)
    else:
        size = st.st_size
    head = _INODE.pack(mode, st.st_uid, st.st_gid, node.nlink, st.st_mtime_ns, size)
    if fmt == S_IFREG:
        return head + _FILE.pack(node.data_off, node.hash_off, node.root)
    if fmt == S_IFLNK:
        return head + node.target
    parts = [head, _COUNT.pack(len(node.entries))]
    for name, ino in node.entries:
        parts.append(_ENTRY.pack(ino, len(name)))
        parts.append(name)
    return b"".join(parts)


def build_image(
    src_dir: Path,
    out_path: Path,
    *,
    progress: ProgressCallback | None = None,
    cache: LeafCache | None = None,
) -> str:
    """Write the image of the tree at ``src_dir`` to ``out_path``; return its hex root hash.

    The image appears atomically (a temporary file in the same directory, then a rename), so
    a failed build leaves any previous image untouched.  Contents are streamed: one chunk of a
    file is in memory at a time, plus 32 bytes of leaf hash per block of the whole tree.
    With ``cache``, files unchanged since the build that filled it are not hashed again, and
    after a successful build the cache holds this build's files (for the caller to save).
    """
    nodes = _collect(os.fsencode(src_dir))
    files = [n for n in nodes if pystat.S_ISREG(n.st.st_mode)]
    total = sum(n.st.st_size for n in files)
    fresh = LeafCache() if cache is not None else None
    if cache is not None:
        cache.hits = 0
    out_path = Path(out_path)
    try:
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"{out_path}: cannot write the image: {e.strerror}")
    try:
        os.fchmod(fd, 0o644)
        os.lseek(fd, HEADER_SIZE, os.SEEK_SET)
        # the data region, collecting each file's leaves for the hash table behind it
        buf = bytearray(_READ_CHUNK)
        offset = HEADER_SIZE
        all_leaves: list[bytes] = []
        done = 0
        for node in files:
            node.data_off = offset
            joined = _copy_file(node, fd, buf, cache, fresh)
            offset += block_count(node.st.st_size) * BLOCK_SIZE
            node.root = root_of_leaves(
                [joined[i : i + HASH_SIZE] for i in range(0, len(joined), HASH_SIZE)]
            )
            all_leaves.append(joined)
            done += node.st.st_size
            if progress is not None:
                progress(done, total)
        data_len = offset - HEADER_SIZE
        hash_off = offset
        for node, joined in zip(files, all_leaves, strict=True):
            node.hash_off = offset
            _write_all(fd, joined)
            offset += len(joined)
        hash_len = offset - hash_off
        del all_leaves
        table = b"".join(_encode_inode(n) for n in nodes)
        _write_all(fd, table)
        header = ImageHeader(
            image_size=offset + len(table), data_off=HEADER_SIZE, data_len=data_len,
            hash_off=hash_off, hash_len=hash_len, table_off=offset, table_len=len(table),
            inode_count=len(nodes),
        ).pack()  # fmt: skip
        os.pwrite(fd, header, 0)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, out_path)
    except OSError as e:
        raise UserError(f"{out_path}: cannot write the image: {e.strerror}")
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # gone after a successful rename
    if cache is not None and fresh is not None:
        cache.entries = fresh.entries
    if progress is not None and not files:
        progress(0, 0)
    return image_root(header, table).hex()
