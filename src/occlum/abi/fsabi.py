"""File-system ABI data for x86-64 Linux: constants and struct layouts, pure data.

Owns the byte layouts a program sees (``struct stat``, ``struct statx``, ``struct statfs``,
``linux_dirent64``) and the flag values of ``openat2``, ``renameat2`` and the ``*at`` family.
Layouts were checked against glibc/Linux headers with ``offsetof``/``sizeof`` on x86-64.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

# --- file types (mode bits) and dirent types -------------------------------------------
S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000
S_ISUID = 0o4000
S_ISGID = 0o2000
S_ISVTX = 0o1000

DT_UNKNOWN = 0
DT_FIFO = 1
DT_CHR = 2
DT_DIR = 4
DT_BLK = 6
DT_REG = 8
DT_LNK = 10
DT_SOCK = 12


def dtype_of_mode(mode: int) -> int:
    """The ``d_type`` of a directory entry for an inode of ``mode`` (``S_IFMT >> 12``)."""
    return (mode & S_IFMT) >> 12


# --- *at flags ---------------------------------------------------------------------------
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EACCESS = 0x200
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
AT_STATX_SYNC_TYPE = 0x6000

# --- openat2 resolve flags (linux/openat2.h) --------------------------------------------
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20
RESOLVE_ALL = 0x3F

# --- renameat2 flags ---------------------------------------------------------------------
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4

# --- limits ------------------------------------------------------------------------------
PATH_MAX = 4096
NAME_MAX = 255
SYMLINK_BUDGET = 40  # Linux's MAXSYMLINKS

# --- statx mask bits -----------------------------------------------------------------------
STATX_TYPE = 0x001
STATX_MODE = 0x002
STATX_NLINK = 0x004
STATX_UID = 0x008
STATX_GID = 0x010
STATX_ATIME = 0x020
STATX_MTIME = 0x040
STATX_CTIME = 0x080
STATX_INO = 0x100
STATX_SIZE = 0x200
STATX_BLOCKS = 0x400
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
STATX_MNT_ID = 0x1000

STAT_SIZE = 144
STATX_SIZE_BYTES = 256
STATFS_SIZE = 120


@dataclass(slots=True)
class Stat:
    """What ``stat`` reports about one inode; ``dev``/``rdev`` are encoded ``dev_t`` values."""

    dev: int
    ino: int
    mode: int
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    rdev: int = 0
    size: int = 0
    blksize: int = 4096
    blocks: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0

    def relabeled(self, dev: int, ino: int) -> Stat:
        """A copy with another device and inode number (a stacked file system's view of a
        layer's file): several times cheaper than ``dataclasses.replace``, on a hot path."""
        return Stat(dev, ino, self.mode, self.nlink, self.uid, self.gid, self.rdev, self.size,
                    self.blksize, self.blocks, self.atime_ns, self.mtime_ns, self.ctime_ns)  # fmt: skip


@dataclass(slots=True, frozen=True)
class SetAttr:
    """The attributes one ``setattr`` changes (Linux's ``struct iattr``): a field left None
    stays as it is. The permission rules (who may chmod, chown, set times or truncate) are
    the VFS's; a file system only stores what it is given."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None

    @property
    def owner(self) -> bool:
        return self.uid is not None or self.gid is not None

    @property
    def times(self) -> bool:
        return self.atime_ns is not None or self.mtime_ns is not None


@dataclass(slots=True)
class StatFs:
    """What ``statfs(2)`` reports for one file system."""

    f_type: int
    bsize: int = 4096
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    fsid: tuple[int, int] = (0, 0)
    namelen: int = NAME_MAX
    frsize: int = 4096
    flags: int = 0

    @classmethod
    def of_host(
        cls, f_type: int, v: os.statvfs_result, flags: int = 0, namelen: int = NAME_MAX
    ) -> StatFs:
        """The host file system's counts (``os.statvfs``) under a type of the LibOS's."""
        return cls(
            f_type=f_type, bsize=v.f_bsize, blocks=v.f_blocks, bfree=v.f_bfree,
            bavail=v.f_bavail, files=v.f_files, ffree=v.f_ffree, namelen=namelen,
            frsize=v.f_frsize, flags=flags,
        )  # fmt: skip


# Magic numbers of statfs.f_type, so programs (e.g. coreutils' stat -f) recognise them.
TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
PROC_SUPER_MAGIC = 0x9FA0
DEVPTS_SUPER_MAGIC = 0x1CD1
EXT4_SUPER_MAGIC = 0xEF53
ST_RDONLY = 0x0001
ST_NOSUID = 0x0002
ST_NODEV = 0x0004
ST_NOEXEC = 0x0008

_STAT = struct.Struct("<QQQIIIiQqqqqQqQqQ24x")
_STATX = struct.Struct("<IIQIIIH2xQQQQqI4xqI4xqI4xqI4xIIIIQ104x")
_STATFS = struct.Struct("<qqQQQQQiiqqq32x")
_DIRENT_HEAD = struct.Struct("<QqHB")

assert _STAT.size == STAT_SIZE
assert _STATX.size == STATX_SIZE_BYTES
assert _STATFS.size == STATFS_SIZE


def pack_stat(s: Stat) -> bytes:
    """``struct stat`` (144 bytes)."""
    a, m, c = s.atime_ns, s.mtime_ns, s.ctime_ns
    return _STAT.pack(
        s.dev,
        s.ino,
        s.nlink,
        s.mode,
        s.uid & 0xFFFFFFFF,  # unsigned: a volume written before ids were decoded so holds
        s.gid & 0xFFFFFFFF,  # negative ones
        0,
        s.rdev,
        s.size,
        s.blksize,
        s.blocks,
        a // 1_000_000_000,
        a % 1_000_000_000,
        m // 1_000_000_000,
        m % 1_000_000_000,
        c // 1_000_000_000,
        c % 1_000_000_000,
    )


def pack_statx(s: Stat, mask: int, mnt_id: int = 0) -> bytes:
    """``struct statx`` (256 bytes); we always fill the basic stats, whatever ``mask`` asks.

    Linux may return more than asked; we report ``STATX_BASIC_STATS`` (plus ``STATX_MNT_ID``)
    and never ``STATX_BTIME`` because no file system here keeps a birth time.
    """
    del mask  # every basic field is cheap for us, so the answer does not depend on the request
    a, m, c = s.atime_ns, s.mtime_ns, s.ctime_ns
    dev, rdev = s.dev, s.rdev
    return _STATX.pack(
        STATX_BASIC_STATS | STATX_MNT_ID,
        s.blksize,
        0,
        s.nlink,
        s.uid & 0xFFFFFFFF,
        s.gid & 0xFFFFFFFF,
        s.mode & 0xFFFF,
        s.ino,
        s.size,
        s.blocks,
        0,
        a // 1_000_000_000,
        a % 1_000_000_000,
        0,
        0,
        c // 1_000_000_000,
        c % 1_000_000_000,
        m // 1_000_000_000,
        m % 1_000_000_000,
        os.major(rdev),
        os.minor(rdev),
        os.major(dev),
        os.minor(dev),
        mnt_id,
    )


def pack_statfs(sf: StatFs) -> bytes:
    """``struct statfs`` (120 bytes)."""
    return _STATFS.pack(
        sf.f_type,
        sf.bsize,
        sf.blocks,
        sf.bfree,
        sf.bavail,
        sf.files,
        sf.ffree,
        sf.fsid[0],
        sf.fsid[1],
        sf.namelen,
        sf.frsize,
        sf.flags,
    )


def dirent64_reclen(name_len: int) -> int:
    """Record length of a ``linux_dirent64`` with a name of ``name_len`` bytes (8-aligned)."""
    return (_DIRENT_HEAD.size + name_len + 1 + 7) & ~7


def pack_dirent64(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    """One ``linux_dirent64``: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, name, NUL, pad."""
    reclen = dirent64_reclen(len(name))
    head = _DIRENT_HEAD.pack(ino, off, reclen, dtype)
    return head + name + b"\0" * (reclen - len(head) - len(name))


def parse_dirents64(buf: bytes) -> list[tuple[int, int, int, bytes]]:
    """Inverse of :func:`pack_dirent64` over a buffer: ``(ino, off, dtype, name)`` per entry."""
    out: list[tuple[int, int, int, bytes]] = []
    pos = 0
    while pos < len(buf):
        ino, off, reclen, dtype = _DIRENT_HEAD.unpack_from(buf, pos)
        raw = buf[pos + _DIRENT_HEAD.size : pos + reclen]
        out.append((ino, off, dtype, raw[: raw.index(b"\0")]))
        pos += reclen
    return out
