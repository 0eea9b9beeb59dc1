"""``occlum build``'s image builder: a host directory tree (``image/``, ``initfs/``) written as
one read-only image file in the format of :mod:`occlum.fs.image_format`, deterministically, with
a cache of leaf hashes so that a rebuild reads only the files that changed. It runs on the host,
for the user: every problem is a ``UserError`` naming the file. (One module of about 500
lines: the tree walk, the leaf cache and the writer share the node records and the layout.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as pystat
import struct
import tempfile
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from occlum.abi.fsabi import S_IFDIR, S_IFLNK, S_IFREG
from occlum.crypto.image_cipher import IV_SIZE, KEY_CHECK_SIZE, ImageCipher
from occlum.crypto.merkle import BLOCK_SIZE, HASH_SIZE, block_count, leaves_of, root_of_leaves
from occlum.errors import UserError
from occlum.fs.image_format import (
    _COUNT,
    _ENC_FILE,
    _ENTRY,
    _FILE,
    _INODE,
    _READ_CHUNK,
    DIR_SIZE,
    HEADER_SIZE,
    VERSION,
    VERSION_ENCRYPTED,
    ImageHeader,
    image_root,
)

__all__ = ["LeafCache", "ProgressCallback", "build_image"]

# Called with (bytes of file contents done, bytes in all); for a progress bar.
ProgressCallback = Callable[[int, int], None]


@dataclass(slots=True)
class _Node:
    """One inode of the tree being built."""

    ino: int
    path: bytes  # on the host
    name: bytes  # in the image (the first path found, for a hard-linked file)
    st: os.stat_result
    nlink: int = 1
    entries: list[tuple[bytes, int]] = field(default_factory=list)
    target: bytes = b""
    data: bytes | None = None  # a file added at build time: its contents (no host file)
    # filled in while the data region is written
    data_off: int = 0
    hash_off: int = 0
    root: bytes = b""
    iv: bytes = b""


_KIND_NAMES = {
    pystat.S_IFIFO: "a FIFO",
    pystat.S_IFSOCK: "a socket",
    pystat.S_IFCHR: "a character device",
    pystat.S_IFBLK: "a block device",
}


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _added_stat(root: os.stat_result, size: int, executable: bool) -> os.stat_result:
    """What an added file is recorded with: mode 0600 (0700 if ``executable``), the tree
    root's owner, mtime 0."""
    times = {"st_atime_ns": 0, "st_mtime_ns": 0, "st_ctime_ns": 0}
    mode = pystat.S_IFREG | (0o700 if executable else 0o600)
    fields = (mode, 0, 0, 1, root.st_uid, root.st_gid, size, 0, 0, 0)
    return os.stat_result(fields, times)


def _collect(
    src: bytes, added: Mapping[bytes, bytes], executables: frozenset[bytes] = frozenset()
) -> list[_Node]:
    """Every inode under ``src`` plus the ``added`` files (image path -> contents), numbered
    breadth-first in name-byte order (root first)."""
    try:
        root_st = os.stat(src)
    except OSError as e:
        raise UserError(f"{_show(src)}: cannot build an image: {e.strerror}")
    if not pystat.S_ISDIR(root_st.st_mode):
        raise UserError(f"{_show(src)}: cannot build an image: not a directory")
    # image directory -> {name: contents}; an added file replaces what the tree has there
    to_add: dict[bytes, dict[bytes, bytes]] = {}
    for name, data in added.items():
        parent, _, base = name.rpartition(b"/")
        if not name.startswith(b"/") or base in (b"", b".", b".."):
            raise ValueError(f"not an absolute file path: {name!r}")
        to_add.setdefault(parent or b"/", {})[base] = data
    nodes = [_Node(1, src, b"/", root_st, nlink=2)]
    links: dict[tuple[int, int], _Node] = {}
    queue: deque[_Node] = deque(nodes)
    while queue:
        d = queue.popleft()
        try:
            names = os.listdir(d.path)
        except OSError as e:
            raise UserError(f"{_show(d.path)}: cannot read directory: {e.strerror}")
        extra = to_add.pop(d.name, {})
        for name in sorted({*names, *extra}):
            path = os.path.join(d.path, name)
            inner = d.name.rstrip(b"/") + b"/" + name
            if name in extra:
                data = extra[name]
                st = _added_stat(root_st, len(data), inner in executables)
                node = _Node(len(nodes) + 1, path, inner, st)
                node.data = data
                nodes.append(node)
                d.entries.append((name, node.ino))
                continue
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
            node = _Node(len(nodes) + 1, path, inner, st)
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
    if to_add:
        parent, files = next(iter(sorted(to_add.items())))
        raise UserError(
            f"{_show(src)}: cannot add {_show(parent.rstrip(b'/') + b'/' + min(files))} "
            f"to the image: {_show(parent)} is not a directory of the tree"
        )
    return nodes


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv) :]


StatKey = tuple[int, int, int, int, int]


def _stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LeafCache:
    """Leaf hashes of files stored by an earlier build, so that an incremental build skips them.

    An entry is keyed by the file's path in the image.  For an integrity-only image it is used
    when what ``stat`` says of the host file (device, inode, size, mtime, ctime) is unchanged:
    such a file is taken to have unchanged contents, the rule of make and rsync.  ctime cannot
    be set back by a user, so even a rewrite in place that restores the old mtime is seen.

    An encrypted image stores ciphertext, and its leaves hash that.  Its entries also hold the
    file's IV, and are used only when the IV computed afresh from the contents is the same: the
    IV is a pseudo-random function of path and contents, so the same IV means the same
    ciphertext, hence the same leaves.  The stat rule is not trusted there, because a wrong
    hit would not merely break the image: it would encrypt new contents under an old IV.  So an
    incremental encrypted build still reads every file twice (IV, then encryption) and skips
    only the hashing of the ciphertext.

    ``scheme`` says how the stored bytes were made: empty for integrity-only, the key-check
    value of the key for an encrypted image.  A cache of another scheme is not used (a switch
    to or from encryption, or to another key, hashes everything again).  ``occlum build -f``
    builds without a cache.  A build leaves in the cache exactly the files of the tree it built.
    """

    _MAGIC = b"OCCLUMLEAVES1\n"  # integrity-only: records without an IV
    _MAGIC_ENC = b"OCCLUMLEAVES2\n"  # then the 32-byte scheme; records end with the IV
    _RECORD = struct.Struct("<I5QQ")  # path length, stat key, leaf bytes length

    def __init__(self, scheme: bytes = b"") -> None:
        self.scheme = scheme
        self.entries: dict[bytes, tuple[StatKey, bytes, bytes]] = {}  # name -> key, leaves, iv
        self.hits = 0  # files of the last build that were not hashed again

    def get(self, name: bytes, st: os.stat_result) -> bytes | None:
        """The leaves of ``name`` if the host file's stat is the one they were made from."""
        hit = self.entries.get(name)
        return hit[1] if hit is not None and hit[0] == _stat_key(st) else None

    def get_by_iv(self, name: bytes, iv: bytes) -> bytes | None:
        """The leaves of ``name`` if they were made under the IV ``iv``."""
        hit = self.entries.get(name)
        return hit[1] if hit is not None and hit[2] == iv else None

    @classmethod
    def load(cls, path: Path) -> LeafCache:
        """The cache saved at ``path``; an empty one if it is missing or unreadable."""
        cache = cls()
        try:
            raw = Path(path).read_bytes()
            if raw.startswith(cls._MAGIC):
                pos, iv_size = len(cls._MAGIC), 0
            elif raw.startswith(cls._MAGIC_ENC):
                pos, iv_size = len(cls._MAGIC_ENC) + KEY_CHECK_SIZE, IV_SIZE
                cache.scheme = raw[len(cls._MAGIC_ENC) : pos]
                if len(cache.scheme) != KEY_CHECK_SIZE:
                    return cls()
            else:
                return cache
            while pos < len(raw):
                plen, dev, ino, size, mtime, ctime, llen = cls._RECORD.unpack_from(raw, pos)
                pos += cls._RECORD.size
                name = raw[pos : pos + plen]
                leaves = raw[pos + plen : pos + plen + llen]
                iv = raw[pos + plen + llen : pos + plen + llen + iv_size]
                pos += plen + llen + iv_size
                if (
                    len(leaves) != llen
                    or len(iv) != iv_size
                    or llen != block_count(size) * HASH_SIZE
                ):
                    return cls()
                cache.entries[name] = ((dev, ino, size, mtime, ctime), leaves, iv)
        except (OSError, struct.error):
            return cls()
        return cache

    def save(self, path: Path) -> None:
        """Write the cache to ``path`` atomically."""
        parts = [self._MAGIC_ENC + self.scheme if self.scheme else self._MAGIC]
        for name, (key, leaves, iv) in sorted(self.entries.items()):
            parts.append(self._RECORD.pack(len(name), *key, len(leaves)))
            parts.append(name)
            parts.append(leaves)
            if self.scheme:
                parts.append(iv)
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


Chunks = Callable[[], Iterator[memoryview]]


def _chunks_of(fd: int, size: int, buf: bytearray, changed: UserError) -> Chunks:
    """A re-startable reader of the file's ``size`` bytes, ``len(buf)`` at a time, into ``buf``."""

    def chunks() -> Iterator[memoryview]:
        view = memoryview(buf)
        done = 0
        while done < size:
            want = min(len(buf), size - done)
            got = 0
            while got < want:
                n = os.preadv(fd, [view[got:want]], done + got)
                if n == 0:
                    raise changed
                got += n
            yield view[:want]
            done += want

    return chunks


def _store_contents(
    name: bytes,
    chunks: Chunks,
    out: int,
    cipher: ImageCipher | None,
    cache: LeafCache | None,
) -> tuple[bytes, bytes, bool]:
    """Append one file's stored blocks to ``out``: (its leaves joined, its IV, cache hit).

    Integrity-only: the contents, zero-padded.  Encrypted: the IV from a first pass over the
    contents, then the padded contents encrypted in a second; the leaves are taken from
    ``cache`` if it has them for this IV (see :class:`LeafCache`).
    """
    leaves: list[bytes] = []
    index = 0
    size = 0
    if cipher is None:
        for chunk in chunks():
            leaves.extend(leaves_of(chunk, index))
            _write_all(out, chunk)
            index += block_count(len(chunk))
            size += len(chunk)
        pad = -size % BLOCK_SIZE
        if pad:
            _write_all(out, bytes(pad))
        return b"".join(leaves), b"", False
    hasher = cipher.file_iv(name)
    for chunk in chunks():
        hasher.update(chunk)
    iv = hasher.iv()
    cached = cache.get_by_iv(name, iv) if cache is not None else None
    stream = cipher.block_cipher(iv, 0)
    for chunk in chunks():
        pad = -len(chunk) % BLOCK_SIZE  # only the last chunk can be short
        stored = stream.update(bytes(chunk) + bytes(pad) if pad else chunk)
        if cached is None:
            leaves.extend(leaves_of(stored, index))
        _write_all(out, stored)
        index += len(stored) // BLOCK_SIZE
    if cached is not None:
        return cached, iv, True
    return b"".join(leaves), iv, False


def _store_file(
    node: _Node,
    out: int,
    buf: bytearray,
    cipher: ImageCipher | None,
    cache: LeafCache | None,
    fresh: LeafCache | None,
) -> bytes:
    """Append ``node``'s stored blocks to ``out``, set its IV; return its leaves, joined.

    An integrity-only file with a cache entry for its unchanged stat is copied by the kernel
    and the cached leaves used; otherwise every block is read and hashed.
    """
    if node.data is not None:  # added at build time: never cached, it is no host file
        data = node.data
        joined, node.iv, _hit = _store_contents(
            node.name, lambda: iter((memoryview(data),)) if data else iter(()), out, cipher, None
        )
        return joined
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
        same = cache.get(node.name, st) if cache is not None and cipher is None else None
        if cache is not None and same is not None:
            joined = same
            if _kernel_copy(fd, out, size) != size:
                raise changed
            pad = -size % BLOCK_SIZE
            if pad:
                _write_all(out, bytes(pad))
            cache.hits += 1
        else:
            chunks = _chunks_of(fd, size, buf, changed)
            joined, node.iv, hit = _store_contents(node.name, chunks, out, cipher, cache)
            if hit and cache is not None:
                cache.hits += 1
        # a write while we copied moves mtime/ctime (and maybe the size)
        if os.pread(fd, 1, size) or _stat_key(os.fstat(fd)) != key:
            raise changed
    except OSError as e:
        raise UserError(f"{_show(path)}: cannot read: {e.strerror}")
    finally:
        os.close(fd)
    if fresh is not None:
        fresh.entries[node.name] = (key, joined, node.iv)
    return joined


def _encode_inode(node: _Node, encrypted: bool) -> bytes:
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
        if encrypted:
            return head + _ENC_FILE.pack(node.data_off, node.hash_off, node.root, node.iv)
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
    key: bytes | None = None,
    add_files: Mapping[str, bytes] | None = None,
    executables: Collection[str] = (),
) -> str:
    """Write the image of the tree at ``src_dir`` to ``out_path``; return its hex root hash.

    The image appears atomically (a temporary file in the same directory, then a rename), so
    a failed build leaves any previous image untouched.  Contents are streamed: one chunk of a
    file is in memory at a time, plus 32 bytes of leaf hash per block of the whole tree.
    With ``cache``, files unchanged since the build that filled it are not hashed again, and
    after a successful build the cache holds this build's files (for the caller to save).

    With ``key`` (an image key, 16 or 32 bytes) the image is encrypted (version 2), else
    integrity-only.  ``add_files`` maps absolute paths in the image (``"/etc/image_key"``) to
    contents: each becomes a regular file of mode 0600 owned as the tree's root and with mtime
    0, in place of whatever the tree has there; its directory must be in the tree.  Those of
    them named in ``executables`` get mode 0700 (an init program).  Nothing is written to
    ``src_dir``.
    """
    cipher = ImageCipher(key) if key is not None else None
    scheme = cipher.key_check if cipher is not None else b""
    added = {os.fsencode(name): data for name, data in (add_files or {}).items()}
    nodes = _collect(
        os.fsencode(src_dir), added, frozenset(os.fsencode(name) for name in executables)
    )
    files = [n for n in nodes if pystat.S_ISREG(n.st.st_mode)]
    total = sum(n.st.st_size for n in files)
    fresh = LeafCache(scheme) if cache is not None else None
    usable = cache if cache is not None and cache.scheme == scheme else None
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
            joined = _store_file(node, fd, buf, cipher, usable, fresh)
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
        table = b"".join(_encode_inode(n, cipher is not None) for n in nodes)
        version, table_iv = VERSION, b""
        if cipher is not None:
            version = VERSION_ENCRYPTED
            table_iv, table = cipher.seal_table(table)
        _write_all(fd, table)
        header = ImageHeader(
            image_size=offset + len(table), data_off=HEADER_SIZE, data_len=data_len,
            hash_off=hash_off, hash_len=hash_len, table_off=offset, table_len=len(table),
            inode_count=len(nodes), version=version, key_check=scheme, table_iv=table_iv,
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
        cache.scheme = scheme
    if progress is not None and not files:
        progress(0, 0)
    return image_root(header, table).hex()
