"""The :class:`MountTable`: which file system is visible where.

Owns the root file system, the mounts over it (``/tmp``, ``/proc``, ``/dev``, ``/host``...),
which directories they cover, and the listing behind ``/proc/mounts``. Path resolution
(``vfs/path.py``, which holds :class:`Mount` beside :class:`Location`) asks the table when it
crosses a mount; the table resolves its mount points with it. :class:`FileSystem` lives with
the inode interface (``vfs/inode.py``) and is re-exported here.
"""

from __future__ import annotations

import errno
import itertools
import os
from dataclasses import dataclass

from occlum.abi.errors import SyscallError
from occlum.vfs.inode import FileSystem, allocate_dev
from occlum.vfs.path import Location, Mount, PathOp, resolve

__all__ = ["FileSystem", "Mount", "MountInfo", "MountTable", "allocate_dev"]


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
