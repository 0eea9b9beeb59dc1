"""The interfaces every LibOS file system implements, with errno-correct defaults.

Owns :class:`Inode` (the per-file operations the VFS calls) and :class:`FileSystem` (one
instance of a type: its root, statfs, write-back); they name each other, so they live together,
below the paths and mounts that use them (``vfs/path.py``, ``vfs/mount.py``), and import neither.
The credentials and permission rules it re-exports live in :mod:`occlum.vfs.cred`.  A file system overrides only what it supports;
everything else raises what Linux would raise for that kind of file.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Iterator
from typing import NamedTuple

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    SetAttr,
    Stat,
    StatFs,
    pack_stat,
)
from occlum.vfs.cred import MAY_EXEC, MAY_READ, MAY_WRITE, ROOT, Cred, check_access
from occlum.vfs.dirstream import DirStream

__all__ = [
    "HOST_OPEN_MASK",
    "MAY_EXEC",
    "MAY_READ",
    "MAY_WRITE",
    "ROOT",
    "CommitRun",
    "Cred",
    "DirEntry",
    "FileSystem",
    "Inode",
    "SetAttr",
    "Stat",
    "StatFs",
    "allocate_dev",
    "check_access",
]

# The file-status flags an independent host open description carries over from open(2).
HOST_OPEN_MASK = os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK


class DirEntry(NamedTuple):
    """One name in a directory as a file system reports it (never ``.`` or ``..``). A tuple:
    a listing of 100 000 names makes 100 000 of them, and a frozen dataclass costs several
    times as much to build."""

    name: bytes
    ino: int
    dtype: int


class Inode:
    """A file of some file system; the type bits (``ftype``) never change for an inode.

    ``ino`` and ``ftype`` are plain attributes so that path resolution does not need a
    ``getattr`` per component.
    """

    fs: FileSystem
    ino: int
    ftype: int
    # procfs-style links whose target is an object, not a path (openat2 RESOLVE_NO_MAGICLINKS)
    is_magic_link: bool = False
    # an open gives another host object, not one of this inode (/dev/tty: the caller's own
    # terminal, whose other descriptors must not be named after this inode)
    opens_other_object: bool = False

    def __init__(self, fs: FileSystem, ino: int, ftype: int) -> None:
        self.fs = fs
        self.ino = ino
        self.ftype = ftype & S_IFMT

    @property
    def is_dir(self) -> bool:
        return self.ftype == S_IFDIR

    @property
    def is_symlink(self) -> bool:
        return self.ftype == S_IFLNK

    @property
    def is_regular(self) -> bool:
        return self.ftype == S_IFREG

    # --- the defaults: what Linux says when a file system lacks an operation --------------

    def _dir_op(self, what: str) -> SyscallError:
        if not self.is_dir:
            return SyscallError(errno.ENOTDIR, f"{what}: not a directory")
        if self.fs.readonly:
            return SyscallError(errno.EROFS, f"{what}: read-only file system")
        return SyscallError(errno.EPERM, f"{what}: not supported by {self.fs.fstype}")

    def getattr(self) -> Stat:
        raise NotImplementedError

    def packed_stat(self) -> bytes:
        """:meth:`getattr` as ``struct stat`` (a file system whose attributes never change may
        keep it)."""
        return pack_stat(self.getattr())

    def packed_fstat(self, host: os.stat_result) -> bytes:
        """:meth:`fgetattr` as ``struct stat``."""
        return pack_stat(self.fgetattr(host))

    def fgetattr(self, host: os.stat_result) -> Stat:
        """The stat seen through an open descriptor of this file, whose host object (a
        page-cache memfd, a host file, a handle) reports ``host``. It must agree with
        :meth:`getattr` field for field (programs compare ``fstat`` with ``stat``: fish spins
        when they differ); a file system whose descriptors outlive what ``getattr`` reads
        (an unlinked file's memfd) takes the sizes and times from ``host`` then."""
        return self.getattr()

    def lookup(self, name: bytes) -> Inode:
        if not self.is_dir:
            raise SyscallError(errno.ENOTDIR, "lookup in a non-directory")
        raise SyscallError(errno.ENOENT, "no such entry")

    def readdir(self) -> list[DirEntry]:
        raise SyscallError(errno.ENOTDIR, "readdir of a non-directory")

    def dirents(self) -> DirStream:
        """:meth:`readdir` packed for ``getdents64``.  A file system may keep the stream and
        hand it out again: it then appends a name made, and makes a new stream after any
        other change (:mod:`occlum.vfs.dirstream`)."""
        return DirStream.of(self.readdir())

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        raise self._dir_op("create")

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        raise self._dir_op("mkdir")

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        raise self._dir_op("mknod")

    def tmpfile(self, mode: int, uid: int, gid: int, *, linkable: bool = True) -> Inode:
        """A regular file with no name on this directory's file system (``O_TMPFILE``);
        :meth:`link` may give it one later if ``linkable`` (no ``O_EXCL``)."""
        if not self.is_dir:
            raise SyscallError(errno.ENOTDIR, "O_TMPFILE: not a directory")
        raise SyscallError(errno.EOPNOTSUPP, f"O_TMPFILE: not supported by {self.fs.fstype}")

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        raise self._dir_op("symlink")

    def link(self, name: bytes, target: Inode) -> None:
        raise self._dir_op("link")

    def unlink(self, name: bytes) -> None:
        raise self._dir_op("unlink")

    def rmdir(self, name: bytes) -> None:
        raise self._dir_op("rmdir")

    def rename(self, oldname: bytes, new_dir: Inode, newname: bytes, flags: int) -> None:
        raise self._dir_op("rename")

    def readlink(self) -> bytes:
        raise SyscallError(errno.EINVAL, "not a symbolic link")

    def setattr(self, attrs: SetAttr) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "setattr on a read-only file system")
        raise SyscallError(errno.EPERM, f"setattr not supported by {self.fs.fstype}")

    # Extended attributes: the name is already checked (occlum.vfs.xattr); a file system
    # without them answers as Linux's procfs does.
    def get_xattr(self, name: bytes) -> bytes:
        raise SyscallError(errno.EOPNOTSUPP, f"no extended attributes on {self.fs.fstype}")

    def set_xattr(self, name: bytes, value: bytes, flags: int) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        raise SyscallError(errno.EOPNOTSUPP, f"no extended attributes on {self.fs.fstype}")

    def remove_xattr(self, name: bytes) -> None:
        self.set_xattr(name, b"", 0)

    def list_xattr(self) -> list[bytes]:
        return []

    def open_host_fd(self, flags: int) -> int:
        """A NEW host descriptor with its own open file description, owned by the caller."""
        if self.is_dir:
            raise SyscallError(errno.EISDIR, "directories have no host descriptor")
        raise SyscallError(errno.ENXIO, "no host object behind this file")

    def directory_handle(self) -> int | None:
        """A NEW host directory descriptor to stand for this directory when it is opened, or
        None for the LibOS's own kind (an empty, removed directory)."""
        return None

    def immutable_content(self) -> Inode | None:
        """The inode whose contents can never change while mounted (a read-only file system's),
        if this file is one or is served unchanged from one; caches may key on it."""
        return self if self.fs.readonly else None


# Anonymous devices use major 0 like Linux's tmpfs/proc; minors are unique per instance.
_next_minor = itertools.count(16)


def allocate_dev() -> int:
    """A fresh ``st_dev`` value for a new file-system instance."""
    return os.makedev(0, next(_next_minor))


class CommitRun:
    """A commit made in bounded steps: each :meth:`step` does a slice of it (a file system that
    writes its state back, SEFS, sizes a slice to a few milliseconds of work), so that the
    serving loop can serve other calls between slices.  The steps come from a generator that
    yields between slices; what it raises is the commit's outcome, kept in :attr:`error`."""

    __slots__ = ("_steps", "done", "error")

    def __init__(self, steps: Iterator[None]) -> None:
        self._steps = steps
        self.done = False
        self.error: SyscallError | None = None

    def step(self) -> bool:
        """Do the next slice; True once the commit is over (durable, or failed: ``error``)."""
        if self.done:
            return True
        try:
            next(self._steps)
            return False
        except StopIteration:
            pass
        except SyscallError as exc:
            self.error = exc
        except OSError as exc:  # a host operation the file system did not name
            self.error = SyscallError(exc.errno or errno.EIO, f"host: {exc.strerror}")
        except Exception as exc:  # a LibOS bug: the commit fails, the serving loop lives on
            self.error = SyscallError(errno.EIO, f"internal error in a commit: {exc!r}")
        self.done = True
        return True

    def finish(self) -> None:
        """Do every slice left now."""
        while not self.step():
            pass


def _whole(run: Callable[[], None]) -> Iterator[None]:
    """A commit of one slice: ``run()`` commits everything at once."""
    run()
    yield from ()


class FileSystem:
    """One instance of a file system type; subclasses set ``root`` in ``__init__``."""

    fstype: str = "none"
    root: Inode
    # Its names, and the attributes a path walk looks at, change only through the LibOS's
    # own calls, the same for every caller: no host program changes it (hostfs), no name
    # means something else for each caller (procfs's self, devfs's tty). A resolution that
    # stays in such file systems is remembered until a call may change something (resolve).
    changed_by_calls_only: bool = False
    # Its inodes' attributes never change, through a name or a descriptor alike (the image:
    # read-only, verified, and its descriptors show the inode's attributes): a stacked file
    # system may keep them packed.
    fixed_attributes: bool = False

    def __init__(self, *, readonly: bool = False) -> None:
        self.readonly = readonly
        self.dev = allocate_dev()

    def statfs(self) -> StatFs:
        return StatFs(f_type=0, flags=1 if self.readonly else 0)

    def sync(self) -> None:
        """Write back dirty state; nothing to do for file systems without backing storage."""

    def sync_file(self, inode: Inode) -> None:
        """fsync of ``inode``: write back at least its contents and the tree (a file system
        may leave other files' contents to a later sync, as Linux does)."""
        self.sync()

    def start_commit(self, inode: Inode | None) -> CommitRun:
        """Begin what :meth:`sync_file` (of ``inode``) or :meth:`sync` (``None``) does, to be
        done in steps; one slice by default."""
        if inode is None:
            return CommitRun(_whole(self.sync))
        return CommitRun(_whole(lambda: self.sync_file(inode)))

    def start_writeback(self) -> CommitRun:
        """A commit of everything that nobody waits for (after last closes), which may leave
        its durability to the next durable commit (:meth:`start_commit`, :meth:`sync`, the
        periodic write-back); by default the same as ``start_commit(None)``."""
        return self.start_commit(None)

    def unstored(self, inode: Inode | None = None) -> list[str]:
        """Why the latest contents of files (of ``inode`` only, if given) could not be stored
        by the last :meth:`sync` (a full host disk): they are kept in memory and stored by a
        later sync when they fit.  Empty when everything is stored."""
        return []
