"""Path resolution, written once for every system call that names a file.

Owns :class:`Location` (a mount + inode + the parent it was reached from, so ``..`` crosses
mount points correctly and ``absolute_path()`` answers ``getcwd``) and :class:`Mount` (they
name each other; the table of mounts, ``vfs/mount.py``, is above and is seen here only as
:class:`Covering`), :class:`MagicLink` (a procfs link that jumps to a location), :class:`PathOp` (one path
a call names, with all its resolution depends on) and :func:`resolve` /
:func:`resolve_parent`: absolute and relative paths, ``..`` clamped at the process root,
symlinks with Linux's budget of 40, trailing slashes, ``PATH_MAX``/``NAME_MAX`` and the openat2
``RESOLVE_*`` flags.  File systems never see a path, only single names; what a call does with
the name it found is :mod:`occlum.vfs.ops`'s.
"""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    NAME_MAX,
    PATH_MAX,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    SYMLINK_BUDGET,
)
from occlum.vfs.cred import CAP_DAC_OVERRIDE
from occlum.vfs.inode import MAY_EXEC, Cred, FileSystem, Inode, check_access

__all__ = [
    "Covering",
    "Location",
    "MagicLink",
    "Mount",
    "ParentAndName",
    "PathOp",
    "resolve",
    "resolve_parent",
]


class Covering(Protocol):
    """What a walk needs of the table a mount belongs to (``vfs/mount.py``'s ``MountTable``):
    which mount is stacked on a directory."""

    def covering(self, mount: Mount, ino: int) -> Mount | None: ...


@dataclass(slots=True, eq=False)
class Mount:
    """One mounted file system; ``mountpoint`` is None only for the root mount."""

    table: Covering
    mount_id: int
    fs: FileSystem
    mountpoint: Location | None
    source: bytes
    target: bytes
    options: str

    def root_location(self) -> Location:
        return Location(self, self.fs.root, None, b"/")


@dataclass(slots=True, eq=False)
class Location:
    """Where a file was found: like Linux's ``struct path`` plus the way back up.

    ``parent`` is None at the root of ``mount``; going above it continues at
    ``mount.mountpoint``.  Parents are remembered as walked, so a later rename of an
    ancestor directory is not reflected in ``absolute_path()``.
    """

    mount: Mount
    inode: Inode
    parent: Location | None
    name: bytes

    def same(self, other: Location) -> bool:
        return self.mount is other.mount and self.inode.ino == other.inode.ino

    def up(self) -> Location:
        """The ``..`` of this location, crossing out of mounts; the global root stays put."""
        cur = self
        while cur.parent is None:
            mp = cur.mount.mountpoint
            if mp is None:
                return cur
            cur = mp
        return cur.parent

    def absolute_path(self, root: Location | None = None) -> bytes:
        """The path from ``root`` (default: the global root), as getcwd reports it."""
        names: list[bytes] = []
        cur = self
        while not (root is not None and cur.same(root)):
            if cur.parent is None:
                mp = cur.mount.mountpoint
                if mp is None:
                    break
                cur = mp
                continue
            names.append(cur.name)
            cur = cur.parent
        return b"/" + b"/".join(reversed(names))

    def child(self, name: bytes) -> Location:
        """Look ``name`` up in this directory and step onto whatever is mounted there."""
        loc = Location(self.mount, self.inode.lookup(name), self, name)
        return cross_mounts(loc)


def cross_mounts(loc: Location) -> Location:
    table = loc.mount.table
    while (m := table.covering(loc.mount, loc.inode.ino)) is not None:
        loc = m.root_location()
    return loc


class MagicLink(Inode):
    """A link whose target is an object, not a path (procfs's ``/proc/PID/cwd``, ``fd/N``):
    ``magic_target`` is where it jumps, or None to resolve its text instead. A file system
    sets ``is_magic_link`` on the ones that jump (openat2's ``RESOLVE_NO_MAGICLINKS``)."""

    def magic_target(self) -> Location | None:
        return None


@dataclass(slots=True)
class ParentAndName:
    """The directory that holds (or would hold) the final component, and that component."""

    parent: Location
    name: bytes
    trailing_slash: bool


def _split(path: bytes) -> list[bytes]:
    return [c for c in path.split(b"/") if c]


class Walker:
    """One resolution: its root, its scope (for RESOLVE_BENEATH/IN_ROOT) and symlink budget."""

    __slots__ = ("budget", "cred", "flags", "root", "scope")

    def __init__(self, root: Location, scope: Location | None, flags: int, cred: Cred | None):
        self.root = root
        # RESOLVE_BENEATH/IN_ROOT confine the walk to the starting directory
        self.scope = scope
        self.flags = flags
        self.cred = cred
        self.budget = SYMLINK_BUDGET

    def start(self, base: Location, path: bytes) -> Location:
        if not path.startswith(b"/"):
            return base
        if self.flags & RESOLVE_BENEATH:
            raise SyscallError(errno.EXDEV, "absolute path escapes RESOLVE_BENEATH")
        if self.flags & RESOLVE_IN_ROOT and self.scope is not None:
            return self.scope
        if self.flags & RESOLVE_NO_XDEV and self.root.mount is not base.mount:
            raise SyscallError(errno.EXDEV, "absolute path crosses a mount")
        return self.root

    def dotdot(self, cur: Location) -> Location:
        if self.scope is not None and cur.same(self.scope):
            if self.flags & RESOLVE_BENEATH:
                raise SyscallError(errno.EXDEV, "'..' escapes RESOLVE_BENEATH")
            return cur
        if cur.same(self.root):
            return cur
        up = cur.up()
        if self.flags & RESOLVE_NO_XDEV and up.mount is not cur.mount:
            raise SyscallError(errno.EXDEV, "'..' crosses a mount")
        return up

    def search(self, cur: Location) -> None:
        if not cur.inode.is_dir:
            raise SyscallError(errno.ENOTDIR, "path component is not a directory")
        if self.cred is not None and not self.cred.capable(CAP_DAC_OVERRIDE):
            check_access(cur.inode.getattr(), self.cred, MAY_EXEC)

    def step(self, cur: Location, name: bytes) -> Location:
        if len(name) > NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG, "file name longer than NAME_MAX")
        self.search(cur)
        nxt = cur.child(name)
        if self.flags & RESOLVE_NO_XDEV and nxt.mount is not cur.mount:
            raise SyscallError(errno.EXDEV, "path crosses a mount")
        return nxt

    def follow(self, cur: Location, link: Location, queue: deque[bytes]) -> Location:
        """Replace the symlink ``link`` (found in ``cur``) by its target; returns the new base."""
        if self.flags & RESOLVE_NO_SYMLINKS:
            raise SyscallError(errno.ELOOP, "symlink with RESOLVE_NO_SYMLINKS")
        self.budget -= 1
        if self.budget < 0:
            raise SyscallError(errno.ELOOP, "too many levels of symbolic links")
        inode = link.inode
        if inode.is_magic_link:
            if self.flags & RESOLVE_NO_MAGICLINKS:
                raise SyscallError(errno.ELOOP, "magic link with RESOLVE_NO_MAGICLINKS")
            if self.scope is not None:
                raise SyscallError(errno.EXDEV, "magic link in a scoped lookup")
            target_loc = inode.magic_target() if isinstance(inode, MagicLink) else None
            if target_loc is not None:
                if self.flags & RESOLVE_NO_XDEV and target_loc.mount is not cur.mount:
                    raise SyscallError(errno.EXDEV, "magic link crosses a mount")
                return target_loc
        target = inode.readlink()
        if not target:
            raise SyscallError(errno.ENOENT, "empty symlink")
        queue.extendleft(reversed(_split(target)))
        return self.start(cur, target)

    def walk(
        self, cur: Location, queue: deque[bytes], *, follow_final: bool, dir_final: bool
    ) -> Location:
        """Walk all of ``queue``; the last name is followed if a symlink only when asked."""
        while queue:
            name = queue.popleft()
            if name == b".":
                self.search(cur)
                continue
            if name == b"..":
                self.search(cur)
                cur = self.dotdot(cur)
                continue
            nxt = self.step(cur, name)
            if nxt.inode.is_symlink and (queue or follow_final or dir_final):
                cur = self.follow(cur, nxt, queue)
                continue
            cur = nxt
        return cur


@dataclass(slots=True, frozen=True)
class PathOp:
    """One path a system call names, with everything its resolution depends on (gVisor's
    ``PathOperation``): the process root that ``..`` and absolute paths stop at, the
    directory a relative path starts from (the cwd, or an ``*at`` call's dirfd), whether a
    final symlink is followed, the openat2 ``RESOLVE_*`` flags (RESOLVE_BENEATH and
    RESOLVE_IN_ROOT confine the walk to ``start``) and whose search permission every directory
    walked needs (None: nobody's, for the LibOS's own lookups)."""

    root: Location
    start: Location
    path: bytes
    follow: bool = True
    resolve_flags: int = 0
    cred: Cred | None = None

    def walker(self) -> Walker:
        _check_path(self.path)
        scope = self.start if self.resolve_flags & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) else None
        return Walker(self.root, scope, self.resolve_flags, self.cred)


def _check_path(path: bytes) -> None:
    if not path:
        raise SyscallError(errno.ENOENT, "empty path")
    if len(path) >= PATH_MAX:
        raise SyscallError(errno.ENAMETOOLONG, "path longer than PATH_MAX")


def resolve(op: PathOp) -> Location:
    """The file ``op`` names. An empty path is ENOENT: the caller handles ``AT_EMPTY_PATH``
    by using the dirfd's own location."""
    w = op.walker()
    path = op.path
    trailing = path.endswith(b"/")
    loc = w.walk(
        w.start(op.start, path), deque(_split(path)), follow_final=op.follow, dir_final=trailing
    )
    if trailing and not loc.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "trailing slash on a non-directory")
    return loc


def resolve_parent(op: PathOp) -> ParentAndName:
    """Resolve all but the last component of ``op``'s path, for create/unlink/rename/mkdir/link.

    The final name may be ``.`` or ``..`` (the caller decides: EEXIST, EINVAL or EBUSY as the
    call requires); for ``/`` the name is ``.`` with the root as parent.
    """
    return walk_to_parent(op)[1]


def walk_to_parent(op: PathOp) -> tuple[Walker, ParentAndName]:
    """:func:`resolve_parent`, with the walker that went there (for a caller that goes on:
    ``O_CREAT`` through a dangling symlink)."""
    w = op.walker()
    path = op.path
    parts = _split(path)
    name = parts.pop() if parts else b"."
    if len(name) > NAME_MAX:
        raise SyscallError(errno.ENAMETOOLONG, "file name longer than NAME_MAX")
    parent = w.walk(w.start(op.start, path), deque(parts), follow_final=True, dir_final=True)
    w.search(parent)
    return w, ParentAndName(parent, name, path.endswith(b"/"))
