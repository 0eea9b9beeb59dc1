"""unionfs: a writable file system over a read-only one, as Occlum's root file system is.

Owns the merged view of two file systems — ``upper`` (writable: SEFS for the root, ramfs in
tests) over ``lower`` (read-only: the integrity image) — and every rule that keeps it one file
system: lookup and ``readdir`` merging, copy-up before a change, whiteouts on removal, opaque
directories, and the inode numbers of the union.

The view, name by name, in a directory of the union:

- a name in the upper directory hides the same name in the lower one, except that two
  directories merge (their listing is the union of both) unless the upper one is *opaque*;
- a *whiteout* in the upper directory hides the lower entry of that name.

Whiteouts and opaque markers live in the upper layer itself, so a SEFS upper remembers
deletions across remounts.  Both are recognised by name only (as aufs does), by the prefix
:data:`WH_PREFIX`: ``.occlum.wh.<name>`` whites ``<name>`` out, and :data:`OPAQUE_MARKER`,
``.occlum.wh..occlum.wh.opq``, inside a directory makes it opaque (shaped as aufs's
``.wh..wh..opq``: the whiteout of a reserved name, so it never collides with a user name's).
The entries themselves are character devices 0/0 like overlayfs's whiteouts (no page cache
behind them), or empty regular files where the upper refuses ``mknod``.
Names with the prefix are invisible in the union: ``lookup`` says ENOENT and creating, linking
or renaming to one says EPERM (aufs's answer).  An upper layer must accept names 11 bytes longer
than NAME_MAX (ramfs and SEFS do).

Nothing in ``lower`` is ever changed.  A change to a lower file or directory first *copies it
up*: its parent directories (mode, owner, times), then the file itself — contents through the
lower's host descriptor into the upper's, symlinks as symlinks, devices as devices — and the
copy-up leaves no trace in the parent's times.  A copied-up directory holds only what changed;
its entries stay merged.  A read-only open of a lower file is served by the lower's descriptor.

Deviations from Linux overlayfs (without ``redirect_dir``/``index``, which it mirrors):

- renaming a lower or merged directory fails with EXDEV (``mv`` falls back to copy and delete);
- hard links of the lower layer are separated by copy-up (the other names keep the old data);
- a descriptor opened read-only before a copy-up keeps reading the lower contents (as
  overlayfs did before Linux 4.19);
- lower entries whose names carry the reserved prefix are hidden;
- a removed file or directory that is only in the lower layer cannot be changed through a
  descriptor still open on it (ENOENT): there is no name to copy it up to;
- merged directories report ``nlink`` = 2 + their subdirectories in the merged view; the inode
  number of a file survives its copy-up, but inode numbers last only as long as the mount;
- the union remembers every inode it handed out (one per name looked up) until unmount.

Every operation assumes its layers are changed only through the union, and the upper keeps
its inode objects across renames (ramfs and SEFS do; hostfs does not, so it is no upper).

About 660 lines, one room: each rule of the merged view (copy-up, whiteouts, opaque
directories, inode numbers) depends on the others.
"""

from __future__ import annotations

import errno
import itertools
import os

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    DT_DIR,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
    Stat,
    StatFs,
    dtype_of_mode,
    pack_stat,
)
from occlum.fs.ramfs import RamDir
from occlum.vfs.dirstream import DirStream
from occlum.vfs.inode import DirEntry, Inode, SetAttr
from occlum.vfs.mount import CommitRun, FileSystem
from occlum.vfs.xattr import XATTR_CREATE, XATTR_REPLACE

__all__ = ["OPAQUE_MARKER", "WH_PREFIX", "UnionFs", "is_reserved_name"]

WH_PREFIX = b".occlum.wh."
# the whiteout of a reserved name, so no user name's whiteout can collide with it (a file
# named ".opq" is whited out as ".occlum.wh..opq")
OPAQUE_MARKER = WH_PREFIX + WH_PREFIX + b"opq"
_COPY_CHUNK = 1 << 30  # bytes per sendfile call: the kernel caps one call near 2 GiB anyway


def is_reserved_name(name: bytes) -> bool:
    """True for names the union keeps for its own whiteouts and markers."""
    return name.startswith(WH_PREFIX)


def _lookup_or_none(d: Inode, name: bytes) -> Inode | None:
    try:
        return d.lookup(name)
    except SyscallError as e:
        if e.errno != errno.ENOENT:
            raise
        return None


def _make_marker(d: Inode, name: bytes) -> None:
    """A whiteout or opaque marker named ``name`` in the upper directory ``d``."""
    try:
        d.mknod(name, S_IFCHR, 0, 0, 0)
    except SyscallError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        d.create(name, 0, 0, 0)


def _purge_markers(d: Inode) -> None:
    """Drop the whiteouts and opaque marker of upper directory ``d`` (before removing it)."""
    for e in d.readdir():
        if is_reserved_name(e.name):
            d.unlink(e.name)


class UnionInode(Inode):
    """One name of the union: the upper and/or lower inode behind it.

    Non-directories have exactly one visible layer; ``lower`` is kept after a copy-up only as
    the origin.  ``parent``/``name`` say where the inode is now (renames update them), which is
    where a copy-up puts it.
    """

    fs: UnionFs

    def __init__(
        self,
        fs: UnionFs,
        ino: int,
        ftype: int,
        parent: UnionDir | None,
        name: bytes,
        upper: Inode | None,
        lower: Inode | None,
    ) -> None:
        super().__init__(fs, ino, ftype)
        self.parent = parent
        self.name = name
        self.upper = upper
        self.lower = lower
        self.removed = False

    def _layer(self) -> Inode:
        if self.upper is not None:
            return self.upper
        assert self.lower is not None
        return self.lower

    def getattr(self) -> Stat:
        # a fresh Stat: layers may hand out their own
        return self._layer().getattr().relabeled(self.fs.dev, self.ino)

    _packed: bytes | None = None

    def packed_stat(self) -> bytes:
        # a name only the lower layer has, when that layer is the image: its attributes are
        # fixed (the union never writes the lower layer), so the stat is packed once (an
        # interpreter stats each module's source twice, and fstats what it opens); a copy-up
        # gives the name an upper layer, which is asked every time
        lower = self.lower
        if self.upper is None and lower is not None and lower.fs.fixed_attributes:
            packed = self._packed
            if packed is None:
                packed = self._packed = pack_stat(self.getattr())
            return packed
        return pack_stat(self.getattr())

    def packed_fstat(self, host: os.stat_result) -> bytes:
        lower = self.lower
        if self.upper is None and lower is not None and lower.fs.fixed_attributes:
            return self.packed_stat()  # what its descriptors show too
        return pack_stat(self.fgetattr(host))

    def fgetattr(self, host: os.stat_result) -> Stat:
        if not self.is_regular:
            return self.getattr()  # a directory's merged link count
        return self._layer().fgetattr(host).relabeled(self.fs.dev, self.ino)

    def readlink(self) -> bytes:
        return self._layer().readlink()

    def setattr(self, attrs: SetAttr) -> None:
        if attrs.size is not None:
            # refuse before copying anything up
            if self.is_dir:
                raise SyscallError(errno.EISDIR, "truncate of a directory")
            if not self.is_regular:
                raise SyscallError(errno.EINVAL, "truncate of a non-regular file")
            if attrs.size < 0:
                raise SyscallError(errno.EINVAL, "negative size")
        # a truncation copies only the bytes that survive it
        upper = self.fs.copy_up(self, keep=attrs.size)
        upper.setattr(attrs)

    def get_xattr(self, name: bytes) -> bytes:
        return self._layer().get_xattr(name)

    def list_xattr(self) -> list[bytes]:
        return self._layer().list_xattr()

    def set_xattr(self, name: bytes, value: bytes, flags: int) -> None:
        if self.upper is None and flags & (XATTR_CREATE | XATTR_REPLACE):
            self._check_flags(name, flags)  # no copy-up for a call bound to fail
        self.fs.copy_up(self).set_xattr(name, value, flags)

    def remove_xattr(self, name: bytes) -> None:
        if self.upper is None:
            self._layer().get_xattr(name)  # ENODATA: nothing to copy up for
        self.fs.copy_up(self).remove_xattr(name)

    def _check_flags(self, name: bytes, flags: int) -> None:
        try:
            self._layer().get_xattr(name)
        except SyscallError as e:
            if e.errno == errno.ENODATA and flags & XATTR_REPLACE:
                raise
            return
        if flags & XATTR_CREATE:
            raise SyscallError(errno.EEXIST, "attribute exists")

    def immutable_content(self) -> Inode | None:
        # not copied up: still the lower layer's file
        if self.upper is None and self.lower is not None:
            return self.lower.immutable_content()
        return None

    def open_host_fd(self, flags: int) -> int:
        if self.is_dir:
            raise SyscallError(errno.EISDIR, "directories have no host descriptor")
        if self.is_regular and (flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC):
            return self.fs.copy_up(self).open_host_fd(flags)
        # reads, and devices whatever the access mode, change nothing in the file system
        return self._layer().open_host_fd(flags)


class UnionDir(UnionInode):
    """A directory of the union: upper-only, lower-only, or merged (``lower`` set and the
    upper directory, if any, not opaque).  ``children`` caches the inodes handed out, so that
    every holder of a name sees its copy-up and rename."""

    def __init__(
        self,
        fs: UnionFs,
        ino: int,
        parent: UnionDir | None,
        name: bytes,
        upper: Inode | None,
        lower: Inode | None,
    ) -> None:
        super().__init__(fs, ino, S_IFDIR, parent, name, upper, lower)
        self.children: dict[bytes, UnionInode] = {}

    # --- the merged view ---------------------------------------------------------------------

    def _whited_out(self, name: bytes) -> bool:
        return self.upper is not None and _lookup_or_none(self.upper, WH_PREFIX + name) is not None

    def _lower_entry(self, name: bytes) -> Inode | None:
        """The lower entry at ``name``, visible or not: what a removal there must white out."""
        if self.lower is None:
            return None
        return _lookup_or_none(self.lower, name)

    def lookup(self, name: bytes) -> Inode:
        return self.child(name)

    def child_or_none(self, name: bytes) -> UnionInode | None:
        try:
            return self.child(name)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
            return None

    def child(self, name: bytes) -> UnionInode:
        """The union inode at ``name`` (ENOENT if none), made once and then remembered."""
        node = self.children.get(name)
        if node is not None:
            return node
        if self.removed or is_reserved_name(name):
            raise SyscallError(errno.ENOENT, "no such file or directory")
        upper = _lookup_or_none(self.upper, name) if self.upper is not None else None
        lower: Inode | None = None
        if upper is None:
            if self.lower is None or self._whited_out(name):
                raise SyscallError(errno.ENOENT, "no such file or directory")
            lower = self.lower.lookup(name)
        elif upper.is_dir and self.lower is not None:
            below = _lookup_or_none(self.lower, name)
            if below is not None and below.is_dir and _lookup_or_none(upper, OPAQUE_MARKER) is None:
                lower = below
        return self._attach(name, upper, lower)

    def _attach(self, name: bytes, upper: Inode | None, lower: Inode | None) -> UnionInode:
        node = self.fs.make_inode(self, name, upper, lower)
        self.children[name] = node
        return node

    # --- the listing getdents64 hands out --------------------------------------------------
    # Kept with the upper directory's change count it is true for (the lower layer never
    # changes): a name the union makes is appended to it; any other change of the upper
    # directory (a removal, a rename, a whiteout, a copy-up's new upper directory) makes the
    # counts differ, and the next listing merges the layers again.

    _stream: DirStream | None = None
    _stream_key: tuple[object, int] | None = None

    def _listing_key(self) -> tuple[object, int] | None:
        """What the listing depends on besides the lower layer; None: not known (an upper
        layer that counts no changes, or a lower one whose names may change behind the
        union's back, as a host directory's), so never kept."""
        if self.lower is not None and not self.lower.fs.changed_by_calls_only:
            return None
        upper = self.upper
        if upper is None:
            return (None, 0)
        return (upper, upper.changes) if isinstance(upper, RamDir) else None

    def dirents(self) -> DirStream:
        if self.removed:
            return DirStream()
        key = self._listing_key()
        stream = self._stream
        if stream is None or key is None or key != self._stream_key:
            stream = DirStream.of(self.readdir())
            self._stream, self._stream_key = (stream, key) if key is not None else (None, None)
        return stream

    def _listed(self, name: bytes, node: UnionInode, before: tuple[object, int] | None) -> None:
        """The union made ``name`` (``node``); ``before``: the listing key when it began."""
        if self._stream is None or before is None or before != self._stream_key:
            self._stream = None
            return
        self._stream.add(name, node.ino, dtype_of_mode(node.ftype))
        self._stream_key = self._listing_key()

    def readdir(self) -> list[DirEntry]:
        if self.removed:
            return []
        fs = self.fs
        if self.upper is None and self.lower is not None:
            return self._lower_readdir(self.lower)
        out: dict[bytes, DirEntry] = {}
        hidden: set[bytes] = set()
        if self.upper is not None:
            for e in self.upper.readdir():
                if is_reserved_name(e.name):
                    hidden.add(e.name[len(WH_PREFIX) :])
                    continue
                cached = self.children.get(e.name)
                ino = cached.ino if cached is not None else fs.ino_for(e.ino, None)
                out[e.name] = e if e.ino == ino else e._replace(ino=ino)
        if self.lower is not None:
            for e in self.lower.readdir():
                if e.name in out or e.name in hidden or is_reserved_name(e.name):
                    continue
                cached = self.children.get(e.name)
                ino = cached.ino if cached is not None else fs.ino_for(None, e.ino)
                out[e.name] = e if e.ino == ino else e._replace(ino=ino)
        return list(out.values())

    def _lower_readdir(self, lower: Inode) -> list[DirEntry]:
        """The listing of a directory only the lower layer has (most of an image: a
        program's libraries, an interpreter's modules). It has no whiteouts, and none of its
        entries has an upper inode (a name made or copied up here would have made the
        directory's first), so each one's union number is its lower inode's, as ``ino_for``
        gives it: looked up directly, and the entry built as a tuple, not ``_replace``d (a
        directory of 200 names: a few microseconds a name less)."""
        fs = self.fs
        by_lower = fs._by_lower
        out: list[DirEntry] = []
        for e in lower.readdir():
            name, lower_ino, dtype = e
            if name.startswith(WH_PREFIX):
                continue
            ino = by_lower.get(lower_ino)
            if ino is None:
                ino = fs.ino_for(None, lower_ino)
            out.append(e if ino == lower_ino else DirEntry(name, ino, dtype))
        return out

    def getattr(self) -> Stat:
        st = super().getattr()
        if self.upper is not None and self.lower is not None:
            # neither layer's count is right for the merged listing; counting reads the whole
            # listing, so the count is kept until it may change: a subdirectory made or
            # removed in the upper directory (its own link count), a lower entry hidden or
            # uncovered (a removal or a rename of a name the lower layer has: the union's
            # epoch), a copy-up (a new upper directory).  A file created or removed that the
            # lower layer does not have changes none of them, so making many files in a merged
            # directory does not recount it each time.
            upper = self.upper
            # (a ramfs or SEFS directory keeps its link count; others are asked)
            nlink = upper.nlink if isinstance(upper, RamDir) else upper.getattr().nlink
            key = (upper, nlink, self.fs.shadow_epoch)
            cached = self._nlink
            if cached is None or cached[0] != key:
                cached = self._nlink = (
                    key,
                    2 + sum(1 for e in self.readdir() if e.dtype == DT_DIR),
                )
            st.nlink = cached[1]
        return st

    _nlink: tuple[tuple[object, int, int], int] | None = None

    # --- changes -----------------------------------------------------------------------------

    def _check_free(self, name: bytes) -> None:
        if is_reserved_name(name):
            raise SyscallError(errno.EPERM, f"names starting with {WH_PREFIX!r} are reserved")
        if self.removed:
            raise SyscallError(errno.ENOENT, "directory was removed")
        if self.child_or_none(name) is not None:
            raise SyscallError(errno.EEXIST, "file exists")

    def _unwhiteout(self, upper: Inode, name: bytes) -> None:
        # only after the new entry exists: a failed create must not uncover the lower one
        if _lookup_or_none(upper, WH_PREFIX + name) is not None:
            upper.unlink(WH_PREFIX + name)

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._check_free(name)
        before = self._listing_key()
        up = self.fs.copy_up(self)
        inode = up.create(name, mode, uid, gid)
        self._unwhiteout(up, name)
        node = self._attach(name, inode, None)
        self._listed(name, node, before)
        return node

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        self._check_free(name)
        before = self._listing_key()
        up = self.fs.copy_up(self)
        inode = up.mknod(name, mode, rdev, uid, gid)
        self._unwhiteout(up, name)
        node = self._attach(name, inode, None)
        self._listed(name, node, before)
        return node

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        self._check_free(name)
        before = self._listing_key()
        up = self.fs.copy_up(self)
        inode = up.symlink(name, target, uid, gid)
        self._unwhiteout(up, name)
        node = self._attach(name, inode, None)
        self._listed(name, node, before)
        return node

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._check_free(name)
        before = self._listing_key()
        up = self.fs.copy_up(self)
        inode = up.mkdir(name, mode, uid, gid)
        if self._lower_entry(name) is not None:
            # the name is free, so the lower entry is whited out: it must stay hidden
            _make_marker(inode, OPAQUE_MARKER)
        self._unwhiteout(up, name)
        node = self._attach(name, inode, None)
        self._listed(name, node, before)
        assert isinstance(node, UnionDir)
        # a new directory lists nothing yet (its marker, if any, is hidden): its listing is
        # kept from the start, and grows name by name
        node._stream, node._stream_key = DirStream(), node._listing_key()
        return node

    def tmpfile(self, mode: int, uid: int, gid: int, *, linkable: bool = True) -> Inode:
        if self.removed:
            raise SyscallError(errno.ENOENT, "directory was removed")
        # made in the upper layer, where a link will name it
        inode = self.fs.copy_up(self).tmpfile(mode, uid, gid, linkable=linkable)
        return self.fs.make_inode(self, b"#%d" % inode.ino, inode, None)

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, UnionInode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV, "hard link across file systems")
        self._check_free(name)
        if target.is_dir:
            raise SyscallError(errno.EPERM, "hard link to a directory")
        if target.removed and target.upper is None:
            raise SyscallError(errno.ENOENT, "linking a removed file")
        before = self._listing_key()
        src = self.fs.copy_up(target)
        up = self.fs.copy_up(self)
        up.link(name, src)
        self._unwhiteout(up, name)
        self._listed(name, self._attach(name, src, None), before)

    def unlink(self, name: bytes) -> None:
        node = self.child(name)
        if node.is_dir:
            raise SyscallError(errno.EISDIR, "unlink of a directory")
        self._remove(name, node)

    def rmdir(self, name: bytes) -> None:
        node = self.child(name)
        if not isinstance(node, UnionDir):
            raise SyscallError(errno.ENOTDIR, "rmdir of a non-directory")
        if node.readdir():
            raise SyscallError(errno.ENOTEMPTY, "directory not empty")
        self._remove(name, node)

    def _remove(self, name: bytes, node: UnionInode) -> None:
        below = self._lower_entry(name) is not None
        if below:
            self.fs.shadow_epoch += 1  # a lower entry is hidden: merged link counts may change
        up = self.fs.copy_up(self) if below or node.upper is not None else None
        if node.upper is not None:
            assert up is not None
            if node.is_dir:
                _purge_markers(node.upper)
                up.rmdir(name)
            else:
                up.unlink(name)
        if below:
            assert up is not None
            _make_marker(up, WH_PREFIX + name)
        self._forget(name)

    def _forget(self, name: bytes) -> None:
        node = self.children.pop(name)
        node.removed = True
        if isinstance(node, UnionDir):
            node.lower = None
            node.children.clear()

    def _is_below(self, d: UnionDir) -> bool:
        """True if ``self`` is ``d`` or inside it: moving ``d`` into ``self`` makes a loop."""
        cur: UnionDir | None = self
        while cur is not None:
            if cur is d:
                return True
            cur = cur.parent
        return False

    def rename(self, oldname: bytes, new_dir: Inode, newname: bytes, flags: int) -> None:
        if not isinstance(new_dir, UnionDir) or new_dir.fs is not self.fs:
            raise SyscallError(errno.EXDEV, "rename across file systems")
        if (
            flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)
            or flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        ):
            raise SyscallError(errno.EINVAL, "bad rename flags")
        self.fs.shadow_epoch += 1  # may hide or move what the lower layer shows
        src = self.child(oldname)
        if is_reserved_name(newname):
            raise SyscallError(errno.EPERM, f"names starting with {WH_PREFIX!r} are reserved")
        if new_dir.removed:
            raise SyscallError(errno.ENOENT, "directory was removed")
        dst = new_dir.child_or_none(newname)
        # the checks in the order Linux's do_renameat2 makes them, so errors match
        if dst is not None and flags & RENAME_NOREPLACE:
            raise SyscallError(errno.EEXIST, "target exists")
        if dst is None and flags & RENAME_EXCHANGE:
            raise SyscallError(errno.ENOENT, "exchange target does not exist")
        if isinstance(src, UnionDir) and new_dir._is_below(src):
            raise SyscallError(errno.EINVAL, "moving a directory below itself")
        if isinstance(dst, UnionDir) and self._is_below(dst):
            err = errno.EINVAL if flags & RENAME_EXCHANGE else errno.ENOTEMPTY
            raise SyscallError(err, "the target is an ancestor of the source")
        if dst is src:
            return
        if flags & RENAME_EXCHANGE:
            assert dst is not None
            self._exchange(oldname, src, new_dir, newname, dst)
            return
        if dst is not None:
            if dst.ino == src.ino:
                return  # two names of one inode: rename(2) does nothing
            if src.is_dir and not dst.is_dir:
                raise SyscallError(errno.ENOTDIR, "directory over a non-directory")
            if not src.is_dir and dst.is_dir:
                raise SyscallError(errno.EISDIR, "non-directory over a directory")
        _check_movable(src)
        if dst is not None and dst.is_dir and dst.readdir():
            raise SyscallError(errno.ENOTEMPTY, "target directory not empty")
        fs = self.fs
        moving = fs.copy_up(src)
        old_up = fs.copy_up(self)
        new_up = fs.copy_up(new_dir)
        if dst is not None and dst.is_dir and dst.upper is not None:
            _purge_markers(dst.upper)
        old_up.rename(oldname, new_up, newname, 0)
        new_dir._unwhiteout(new_up, newname)
        if src.is_dir and new_dir._lower_entry(newname) is not None:
            _mark_opaque(moving)
        if self._lower_entry(oldname) is not None:
            _make_marker(old_up, WH_PREFIX + oldname)
        del self.children[oldname]
        if dst is not None:
            new_dir._forget(newname)
        src.parent, src.name = new_dir, newname
        new_dir.children[newname] = src

    def _exchange(
        self, oldname: bytes, src: UnionInode, new_dir: UnionDir, newname: bytes, dst: UnionInode
    ) -> None:
        _check_movable(src)
        _check_movable(dst)
        fs = self.fs
        a = fs.copy_up(src)
        b = fs.copy_up(dst)
        old_up = fs.copy_up(self)
        new_up = fs.copy_up(new_dir)
        old_up.rename(oldname, new_up, newname, RENAME_EXCHANGE)
        # both names stay taken, so no whiteout changes; a directory landing on a name the
        # lower layer has must not start merging with it
        if src.is_dir and new_dir._lower_entry(newname) is not None:
            _mark_opaque(a)
        if dst.is_dir and self._lower_entry(oldname) is not None:
            _mark_opaque(b)
        self.children[oldname], new_dir.children[newname] = dst, src
        src.parent, src.name = new_dir, newname
        dst.parent, dst.name = self, oldname


def _check_movable(node: UnionInode) -> None:
    if node.is_dir and node.lower is not None:
        # overlayfs without redirect_dir: the lower half of a directory cannot follow it
        raise SyscallError(errno.EXDEV, "renaming a directory of the lower layer")


def _mark_opaque(upper_dir: Inode) -> None:
    if _lookup_or_none(upper_dir, OPAQUE_MARKER) is None:
        _make_marker(upper_dir, OPAQUE_MARKER)


class UnionFs(FileSystem):
    """``upper`` (writable) over ``lower`` (never written); see the module docstring.

    ``statfs`` and ``sync`` are the upper's: everything the union stores is there.
    """

    fstype = "unionfs"
    root: UnionDir
    shadow_epoch = 0  # bumped when a lower entry may be hidden or uncovered (UnionDir.getattr)

    def __init__(self, upper: FileSystem, lower: FileSystem) -> None:
        if upper.readonly:
            raise SyscallError(errno.EINVAL, "unionfs: the upper layer must be writable")
        super().__init__(readonly=False)
        self.upper = upper
        self.lower = lower
        self.changed_by_calls_only = upper.changed_by_calls_only and lower.changed_by_calls_only
        self._inos = itertools.count(1)
        # the union's inode number for each layer inode handed out, so that hard links share
        # one and a copy-up keeps its original's
        self._by_upper: dict[int, int] = {}
        self._by_lower: dict[int, int] = {}
        opaque = _lookup_or_none(upper.root, OPAQUE_MARKER) is not None
        lower_root = None if opaque else lower.root
        ino = self.ino_for(upper.root.ino, None if lower_root is None else lower_root.ino)
        self.root = UnionDir(self, ino, None, b"", upper.root, lower_root)

    def ino_for(self, upper_ino: int | None, lower_ino: int | None) -> int:
        """The union inode number of the entry backed by these layer inodes."""
        ino: int | None = None
        if upper_ino is not None:
            ino = self._by_upper.get(upper_ino)
        if ino is None and lower_ino is not None:
            ino = self._by_lower.get(lower_ino)
        if ino is None:
            ino = next(self._inos)
        if upper_ino is not None:
            self._by_upper.setdefault(upper_ino, ino)
        if lower_ino is not None:
            self._by_lower.setdefault(lower_ino, ino)
        return ino

    def make_inode(
        self, parent: UnionDir, name: bytes, upper: Inode | None, lower: Inode | None
    ) -> UnionInode:
        ino = self.ino_for(
            None if upper is None else upper.ino, None if lower is None else lower.ino
        )
        if upper is not None:
            ftype = upper.ftype
        else:
            assert lower is not None
            ftype = lower.ftype
        if ftype == S_IFDIR:
            return UnionDir(self, ino, parent, name, upper, lower)
        return UnionInode(self, ino, ftype, parent, name, upper, lower)

    def copy_up(self, node: UnionInode, keep: int | None = None) -> Inode:
        """``node``'s upper inode, copying it (and its parents) up first if it has none.

        ``keep`` limits the bytes of a regular file copied (a truncation is coming).
        """
        if node.upper is not None:
            return node.upper
        if node.removed:
            raise SyscallError(errno.ENOENT, "the file was removed")
        parent, lower = node.parent, node.lower
        assert parent is not None and lower is not None  # the root always has an upper
        pup = self.copy_up(parent)
        saved = pup.getattr()
        st = lower.getattr()
        name, kind, perms = node.name, node.ftype, st.mode & 0o7777
        new: Inode
        if kind == S_IFDIR:
            new = pup.mkdir(name, perms, st.uid, st.gid)
        elif kind == S_IFREG:
            new = pup.create(name, perms, st.uid, st.gid)
            try:
                _copy_contents(lower, new, st.size if keep is None else min(keep, st.size))
            except BaseException:
                pup.unlink(name)
                raise
        elif kind == S_IFLNK:
            new = pup.symlink(name, lower.readlink(), st.uid, st.gid)
        else:
            new = pup.mknod(name, st.mode, st.rdev, st.uid, st.gid)
        for xname in lower.list_xattr():
            new.set_xattr(xname, lower.get_xattr(xname), 0)
        new.setattr(
            SetAttr(
                mode=None if kind == S_IFLNK else perms, atime_ns=st.atime_ns, mtime_ns=st.mtime_ns
            )
        )
        # a copy-up is not a change of the directory a program could see
        pup.setattr(SetAttr(atime_ns=saved.atime_ns, mtime_ns=saved.mtime_ns))
        self._by_upper[new.ino] = node.ino
        node.upper = new
        return new

    def statfs(self) -> StatFs:
        return self.upper.statfs()

    def sync(self) -> None:
        self.upper.sync()

    def sync_file(self, inode: Inode) -> None:
        upper = inode.upper if isinstance(inode, UnionInode) else None
        if upper is None:
            self.upper.sync()
        else:
            self.upper.sync_file(upper)

    def start_commit(self, inode: Inode | None) -> CommitRun:
        upper = inode.upper if isinstance(inode, UnionInode) else None
        return self.upper.start_commit(upper)  # no upper inode: the whole layer, as sync

    def start_writeback(self) -> CommitRun:
        return self.upper.start_writeback()

    def unstored(self, inode: Inode | None = None) -> list[str]:
        if inode is None:
            return self.upper.unstored()
        upper = inode.upper if isinstance(inode, UnionInode) else None
        return [] if upper is None else self.upper.unstored(upper)


def _copy_contents(src: Inode, dst: Inode, length: int) -> None:
    """The first ``length`` bytes of ``src`` into the empty regular file ``dst``."""
    rfd = src.open_host_fd(os.O_RDONLY)
    try:
        wfd = dst.open_host_fd(os.O_WRONLY)
        try:
            _copy_fds(rfd, wfd, length)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO, f"copy-up: {e.strerror}")
        finally:
            os.close(wfd)
    finally:
        os.close(rfd)


def _copy_fds(rfd: int, wfd: int, length: int) -> None:
    off = 0
    try:
        # in the kernel, page cache to page cache: both layers' files are memfds or host files
        while off < length:
            n = os.sendfile(wfd, rfd, off, min(length - off, _COPY_CHUNK))
            if n == 0:
                return  # the lower file is shorter than it said
            off += n
        return
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
    # descriptors sendfile cannot join: plain reads and writes
    while off < length:
        data = os.pread(rfd, min(length - off, 1 << 20), off)
        if not data:
            return
        view = memoryview(data)
        while view:
            n = os.pwrite(wfd, view, off)
            view, off = view[n:], off + n
