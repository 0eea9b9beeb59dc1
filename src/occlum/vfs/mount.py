"""File systems as mounted objects: the :class:`FileSystem` base and the :class:`MountTable`.

Owns which file system is visible where: the root file system, the mounts over it (``/tmp``,
``/proc``, ``/dev``, ``/host``...), which directories they cover, and the listing behind
``/proc/mounts``.  Path resolution (``vfs/path.py``) asks the table when it crosses a mount.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import StatFs
from occlum.vfs.path import Location, PathOp, resolve

if TYPE_CHECKING:
    from occlum.vfs.inode import Inode

# Anonymous devices use major 0 like Linux's tmpfs/proc; minors are unique per instance.
_next_minor = itertools.count(16)


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


def allocate_dev() -> int:
    """A fresh ``st_dev`` value for a new file-system instance."""
    return os.makedev(0, next(_next_minor))


class FileSystem:
    """One instance of a file system type; subclasses set ``root`` in ``__init__``."""

    fstype: str = "none"
    root: Inode

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

    def unstored(self, inode: Inode | None = None) -> list[str]:
        """Why the latest contents of files (of ``inode`` only, if given) could not be stored
        by the last :meth:`sync` (a full host disk): they are kept in memory and stored by a
        later sync when they fit.  Empty when everything is stored."""
        return []


@dataclass(slots=True, eq=False)
class Mount:
    """One mounted file system; ``mountpoint`` is None only for the root mount."""

    table: MountTable
    mount_id: int
    fs: FileSystem
    mountpoint: Location | None
    source: bytes
    target: bytes
    options: str

    def root_location(self) -> Location:
        return Location(self, self.fs.root, None, b"/")


@dataclass(slots=True, frozen=True)
class MountInfo:
    """One line of ``/proc/mounts``."""

    source: bytes
    target: bytes
    fstype: str
    options: str
    mount_id: int = 0
    parent_id: int = 0
    dev: int = 0

    def line(self) -> bytes:
        return b"%s %s %s %s 0 0\n" % (
            self.source,
            self.target,
            self.fstype.encode(),
            self.options.encode(),
        )

    def mountinfo_line(self) -> bytes:
        """One line of ``/proc/<pid>/mountinfo`` (proc(5))."""
        return b"%d %d %d:%d / %s %s - %s %s %s\n" % (
            self.mount_id,
            self.parent_id,
            os.major(self.dev),
            os.minor(self.dev),
            self.target,
            self.options.encode(),
            self.fstype.encode(),
            self.source,
            self.options.encode(),
        )


class MountTable:
    """All mounts of one LibOS instance; the root file system is given at construction."""

    def __init__(
        self, root_fs: FileSystem, *, source: bytes = b"rootfs", options: str = ""
    ) -> None:
        self._ids = itertools.count(1)
        self._covering: dict[tuple[int, int], Mount] = {}
        self.root_mount = Mount(
            self, next(self._ids), root_fs, None, source, b"/", options or _opts(root_fs)
        )
        self._mounts: list[Mount] = [self.root_mount]

    def root(self) -> Location:
        return self.root_mount.root_location()

    def mount(
        self, fs: FileSystem, target: bytes, *, source: bytes = b"none", options: str = ""
    ) -> Mount:
        """Mount ``fs`` on the directory at absolute path ``target`` (resolved from the root)."""
        root = self.root()
        where = resolve(PathOp(root, root, target))
        return self.mount_at(where, fs, source=source, options=options)

    def mount_at(
        self, where: Location, fs: FileSystem, *, source: bytes = b"none", options: str = ""
    ) -> Mount:
        if not where.inode.is_dir:
            raise SyscallError(errno.ENOTDIR, "mount point is not a directory")
        m = Mount(
            self, next(self._ids), fs, where, source, where.absolute_path(), options or _opts(fs)
        )
        self._covering[(where.mount.mount_id, where.inode.ino)] = m
        self._mounts.append(m)
        return m

    def umount(self, target: Location) -> None:
        """Unmount the file system whose root is ``target``."""
        m = target.mount
        if target.parent is not None or m.mountpoint is None:
            raise SyscallError(errno.EINVAL, "not a mount point")
        if any(o.mountpoint is not None and o.mountpoint.mount is m for o in self._mounts):
            raise SyscallError(errno.EBUSY, "other file systems are mounted below")
        mp = m.mountpoint
        del self._covering[(mp.mount.mount_id, mp.inode.ino)]
        self._mounts.remove(m)
        m.fs.sync()

    def covering(self, mount: Mount, ino: int) -> Mount | None:
        """The mount stacked on directory ``ino`` of ``mount``, if any."""
        return self._covering.get((mount.mount_id, ino))

    def all_mounts(self) -> list[Mount]:
        return list(self._mounts)

    def mounts(self) -> list[MountInfo]:
        out = []
        for m in self._mounts:
            parent = m.mountpoint.mount.mount_id if m.mountpoint is not None else m.mount_id
            out.append(
                MountInfo(m.source, m.target, m.fs.fstype, m.options, m.mount_id, parent, m.fs.dev)
            )
        return out

    def sync_all(self) -> None:
        for m in self._mounts:
            m.fs.sync()


def _opts(fs: FileSystem) -> str:
    return "ro" if fs.readonly else "rw"
