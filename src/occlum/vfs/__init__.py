"""The LibOS virtual file system: mounts, path resolution, open, directory handles.

The public surface the syscall layer uses; file systems live in ``occlum.fs``.
"""

from __future__ import annotations

from occlum.vfs.dirfile import OpenDirectory
from occlum.vfs.inode import ROOT, Cred, DirEntry, Inode, Stat, StatFs, check_access
from occlum.vfs.mount import FileSystem, Mount, MountInfo, MountTable
from occlum.vfs.open import OpenResult, open_path
from occlum.vfs.ops import check_rename
from occlum.vfs.path import Location, ParentAndName, PathOp, resolve, resolve_parent

__all__ = [
    "ROOT",
    "Cred",
    "DirEntry",
    "FileSystem",
    "Inode",
    "Location",
    "Mount",
    "MountInfo",
    "MountTable",
    "OpenDirectory",
    "OpenResult",
    "ParentAndName",
    "PathOp",
    "Stat",
    "StatFs",
    "check_access",
    "check_rename",
    "open_path",
    "resolve",
    "resolve_parent",
]
