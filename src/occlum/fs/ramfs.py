"""ramfs: the in-memory file system of ``/tmp`` and ``/dev/shm``.

Owns directories, symlinks, hard links, FIFOs and device nodes held in Python objects, and
regular-file contents held in a memfd per file in use: the page cache.  Every open gets a fresh
open file description of that memfd (reopened through ``/proc/self/fd``), so offsets are per
open while all openers, in every process, share the same pages and ``MAP_SHARED`` stays
coherent.

A file no program holds (no descriptor, no mapping) need not keep its memfd: past
:data:`.filecache.CACHED_FILES` files, the least recently used unheld ones are let go
(:meth:`RamFile.evict`).  A memfd's contents move into the supervisor as the bytes of its data
extents (found with SEEK_DATA/SEEK_HOLE: holes stay holes and cost nothing); a file of a tmpfs
instance's host file system gets a name there and its descriptor is closed.  The next use
makes the memfd again, or reopens the name, with the same size, times, holes and pages, so
the number of files is not bounded by the supervisor's descriptors.

About 820 lines, one room: the inode kinds and the file system share the memfd page cache
and its accounting.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    RAMFS_MAGIC,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    TMPFS_MAGIC,
    StatFs,
    dtype_of_mode,
)
from occlum.fs.filecache import FileCache
from occlum.platform.fdbudget import opened_besides, opened_elsewhere
from occlum.platform.holes import data_ranges
from occlum.vfs.dirstream import DirStream
from occlum.vfs.inode import HOST_OPEN_MASK, DirEntry, Inode, SetAttr, Stat
from occlum.vfs.mount import FileSystem
from occlum.vfs.path import names_changed
from occlum.vfs.xattr import XattrStore

__all__ = ["RamFs"]


class CloseWatcher(Protocol):
    """What a nameless file asks of the last-close watch (``fs/sefs/closes.py``'s
    ``CloseWatch``, which imports this module): a word when a description of it is closed."""

    def watch(self, f: RamFile, memfd: int, *, every_close: bool = False) -> None: ...


# Character devices a ramfs/devfs node may stand for, and the harmless host device behind
# each: opening the node opens the host device, never anything else.
HOST_CHAR_DEVICES: dict[int, str] = {
    os.makedev(1, 3): "/dev/null",
    os.makedev(1, 5): "/dev/zero",
    os.makedev(1, 7): "/dev/full",
    os.makedev(1, 8): "/dev/random",
    os.makedev(1, 9): "/dev/urandom",
    os.makedev(5, 0): "/dev/tty",
}


def open_host_device(rdev: int, flags: int) -> int:
    path = HOST_CHAR_DEVICES.get(rdev)
    if path is None:
        raise SyscallError(errno.ENXIO, "no such device")
    try:
        return os.open(path, (flags & HOST_OPEN_MASK) | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise SyscallError(e.errno or errno.EIO, f"host {path}: {e.strerror}")


class RamInode(Inode):
    """Metadata common to every ramfs inode."""

    fs: RamFs

    def __init__(self, fs: RamFs, mode: int, uid: int, gid: int, rdev: int = 0) -> None:
        fs.claim_inode()
        super().__init__(fs, next(fs.inos), mode)
        now = time.time_ns()
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.nlink = 1
        self.atime_ns = self.mtime_ns = self.ctime_ns = now

    def _size(self) -> int:
        return 0

    def getattr(self) -> Stat:
        size = self._size()
        return Stat(
            dev=self.fs.dev,
            ino=self.ino,
            mode=self.mode,
            nlink=self.nlink,
            uid=self.uid,
            gid=self.gid,
            rdev=self.rdev,
            size=size,
            blksize=4096,
            blocks=(size + 511) // 512,
            atime_ns=self.atime_ns,
            mtime_ns=self.mtime_ns,
            ctime_ns=self.ctime_ns,
        )

    def setattr(self, attrs: SetAttr) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        if attrs.size is not None:
            self._truncate(attrs.size)
            self.mtime_ns = time.time_ns()
        if attrs.mode is not None or attrs.uid is not None or attrs.gid is not None:
            names_changed()  # who may search a directory
        if attrs.mode is not None:
            self.mode = (self.mode & S_IFMT) | (attrs.mode & 0o7777)
        if attrs.uid is not None:
            self.uid = attrs.uid
        if attrs.gid is not None:
            self.gid = attrs.gid
        if attrs.atime_ns is not None:
            self.atime_ns = attrs.atime_ns
        if attrs.mtime_ns is not None:
            self.mtime_ns = attrs.mtime_ns
        self.ctime_ns = time.time_ns()
        self.fs.changed(self)

    # extended attributes: kept with the inode (a SEFS volume stores them in its metadata)
    xattrs: XattrStore | None = None

    def get_xattr(self, name: bytes) -> bytes:
        if self.xattrs is None:
            XattrStore().get(name)  # the errno an empty store gives
        assert self.xattrs is not None
        return self.xattrs.get(name)

    def set_xattr(self, name: bytes, value: bytes, flags: int) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        if self.xattrs is None:
            self.xattrs = XattrStore()
        self.xattrs.set(name, value, flags)
        self.ctime_ns = time.time_ns()
        self.fs.changed(self)

    def remove_xattr(self, name: bytes) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        if self.xattrs is None:
            XattrStore().remove(name)
        assert self.xattrs is not None
        self.xattrs.remove(name)
        self.ctime_ns = time.time_ns()
        self.fs.changed(self)

    def list_xattr(self) -> list[bytes]:
        return self.xattrs.names() if self.xattrs is not None else []

    def _truncate(self, size: int) -> None:
        if self.is_dir:
            raise SyscallError(errno.EISDIR, "truncate of a directory")
        raise SyscallError(errno.EINVAL, "truncate of a non-regular file")

    def dropped(self) -> None:
        """Called when the last name goes away."""

    # an O_TMPFILE file not yet named (and not opened with O_EXCL): link() may name it
    linkable = False

    def open_host_fd(self, flags: int) -> int:
        if self.ftype == S_IFCHR:
            return open_host_device(self.rdev, flags)
        return super().open_host_fd(flags)


# A memfd's data extents are kept as pieces of at most this many bytes while it is let go
_PIECE = 4 << 20
# The data of files let go that the supervisor keeps, per file system, at most
LET_GO_MAX = 256 << 20


@dataclass(slots=True)
class _LetGo:
    """What a file let go of its descriptor keeps (:meth:`RamFile.evict`): what that
    descriptor said, and a memfd's data extents (offset, bytes) in file order (a file of a
    host tmpfs instance keeps its contents there, by name)."""

    size: int
    blocks: int
    extents: list[tuple[int, bytes]]
    kept: int  # bytes of data in extents


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """The data of ``fd``'s first ``size`` bytes, in pieces of at most :data:`_PIECE` bytes,
    found with SEEK_DATA/SEEK_HOLE: a hole (never written, truncated up, punched) is read
    never and kept not at all.  A memfd answers per page, so writing the pieces back gives
    the same pages, and the same holes."""
    for start, end in data_ranges(fd, size):
        while start < end:
            piece = os.pread(fd, min(end - start, _PIECE), start)
            if not piece:  # truncated meanwhile: cannot happen, nobody holds the file
                return
            yield start, piece
            start += len(piece)


def _pages(st: os.stat_result) -> int:
    """The bytes of the pages that hold a memfd's ``st_size`` bytes (its block size is a
    page)."""
    return -(-st.st_size // st.st_blksize) * st.st_blksize


def _data_of(fd: int, st: os.stat_result) -> list[tuple[int, bytes]]:
    """:func:`_data_extents` of the memfd ``fd`` whose stat is ``st``; a file whose every
    page holds data (a small file written once, the common case) or none is read at once."""
    if st.st_blocks == 0:
        return []
    if st.st_blocks * 512 == _pages(st) and st.st_size <= _PIECE:
        data = os.pread(fd, st.st_size, 0)
        return [(0, data)] if data else []
    return list(_data_extents(fd, st.st_size))


class RamFile(RamInode):
    """A regular file whose pages live in a memfd owned by this inode while it is used."""

    # (st_dev, st_ino) of the memfd, kept after it is closed: descriptors donated from it
    # still show this file
    memfd_id: tuple[int, int] | None = None
    # while the memfd is let go: what it held (None: loaded, or freed)
    _let_go: _LetGo | None = None
    # of a file of a host tmpfs instance let go once: its name in that instance's root
    _host_name: str | None = None
    # (st_ctime_ns, st_mtime_ns) of the memfd just after it was made again: a change time
    # still equal to it is the remaking's, not a change of the file's
    _remade: tuple[int, int] | None = None

    def __init__(self, fs: RamFs, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        self.memfd: int | None = None
        cache = fs.cache
        assert cache is not None  # a RamFs's files (SEFS makes its own)
        if fs.backing is None:
            self._adopt(
                cache.descriptor(lambda: os.memfd_create(f"ramfs:{self.ino}", os.MFD_CLOEXEC))
            )
        else:
            # a nameless file of the mount's own host tmpfs instance: the host kernel counts
            # its pages against size= and answers a native write past it with ENOSPC
            backing = fs.backing
            try:
                made = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=backing)
            except OSError as e:
                raise SyscallError(e.errno or errno.ENOSPC, f"tmpfs: {e.strerror}")
            try:
                # kept read-only: a writable description of our own would hide whether a
                # program holds one (see evictable)
                self._adopt(cache.descriptor(lambda: _reopen_readonly(made)))
            finally:
                os.close(made)
        cache.used(self)

    def _adopt(self, memfd: int) -> None:
        self.memfd = memfd
        st = os.fstat(memfd)
        self.memfd_id = (st.st_dev, st.st_ino)

    def _fd(self) -> int:
        fd = self.memfd
        if fd is None:
            if self._let_go is None:
                raise SyscallError(errno.ESTALE, "file contents already freed")
            fd = self._remake()
        cache = self.fs.cache
        if cache is not None and self.nlink:  # a nameless file's memfd is all it has
            cache.used(self)
        return fd

    def _size(self) -> int:
        if self.memfd is not None:
            return os.fstat(self.memfd).st_size
        return self._let_go.size if self._let_go is not None else 0

    def getattr(self) -> Stat:
        st = super().getattr()
        if self.memfd is not None:
            self._with_contents(st, os.fstat(self.memfd))
        elif self._let_go is not None:
            st.blocks = self._let_go.blocks  # the pages its memfd held: holes take none
        return st

    def fgetattr(self, host: os.stat_result) -> Stat:
        if (host.st_dev, host.st_ino) == self.memfd_id:
            return self._with_contents(RamInode.getattr(self), host)
        return self.getattr()  # a descriptor of some other object (an O_PATH handle)

    def _with_contents(self, st: Stat, host: os.stat_result) -> Stat:
        """``st`` with what native writes through donated descriptors change: the memfd's
        own size and modification time are the true ones; the change time is the later of
        the inode's (chmod, link, ...) and the memfd's (writes, truncation)."""
        st.size = host.st_size
        st.blocks = host.st_blocks  # the pages it holds: a sparse file's holes take none
        st.mtime_ns = host.st_mtime_ns
        if (host.st_ctime_ns, host.st_mtime_ns) != self._remade:
            st.ctime_ns = max(self.ctime_ns, host.st_ctime_ns)
        return st

    def setattr(self, attrs: SetAttr) -> None:
        super().setattr(attrs)
        if attrs.mtime_ns is not None and self.memfd is not None:
            # set the memfd's own times, so later native writes move them forward as on Linux
            host = os.fstat(self.memfd)
            os.utime(self.memfd, ns=(host.st_atime_ns, attrs.mtime_ns))

    def _truncate(self, size: int) -> None:
        if size < 0:
            raise SyscallError(errno.EINVAL, "negative size")
        fd = self._fd()
        if self.fs.backing is None:
            os.ftruncate(fd, size)
        else:  # our descriptor of a host tmpfs file is read-only
            os.truncate(f"/proc/self/fd/{fd}", size)

    def open_host_fd(self, flags: int) -> int:
        fd = self._fd()
        self.atime_ns = time.time_ns()
        self.fs.changed(self)
        # reopening through /proc gives a new open description (own offset), same pages
        host_fd = os.open(f"/proc/self/fd/{fd}", (flags & HOST_OPEN_MASK) | os.O_CLOEXEC)
        if self._nameless():
            watch = self.fs.close_watch
            try:
                if watch is not None:
                    watch.watch(self, fd, every_close=True)
                    self.descriptions += 1
            except OSError:
                pass  # unwatched, it stays allocated until the instance ends, as before
        return host_fd

    # --- letting the memfd go, and making it again ---------------------------------------

    def evictable(self) -> bool:
        """Whether the memfd may be let go now: the file has a name (a nameless O_TMPFILE
        file is its memfd) and no program holds it, by a descriptor or a mapping."""
        fd = self.memfd
        if fd is None or self.nlink == 0:
            return False
        fs = self.fs
        if fs.backing is not None:
            return not opened_besides(fd)
        st = os.fstat(fd)
        held = st.st_blocks * 512
        if held > _pages(st):
            return False  # pages past the end (fallocate KEEP_SIZE), which SEEK_DATA misses
        # the supervisor's memory is not the programs': it keeps only so much of theirs
        if fs.let_go_bytes + held > fs.let_go_max:
            return False
        return not opened_elsewhere(fd)

    def evict(self) -> None:
        """Let the memfd of an :meth:`evictable` file go: its times go into the inode, its
        data extents into :class:`_LetGo` (a host tmpfs file instead gets a name in its
        instance, keeping its pages, and the instance's count of them, where they are)."""
        fd = self.memfd
        assert fd is not None
        host = os.fstat(fd)
        backing = self.fs.backing
        if backing is None:
            extents = _data_of(fd, host)
        else:
            extents = []
            if self._host_name is None:
                # linking the nameless host file (made without O_EXCL, so linkable); it
                # keeps the name while the file lives: once unnamed again, Linux would not
                # let it be linked a second time
                name = f"{self.ino}"
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=backing, follow_symlinks=True)
                self._host_name = name
        self.mtime_ns = host.st_mtime_ns
        if (host.st_ctime_ns, host.st_mtime_ns) != self._remade:
            self.ctime_ns = max(self.ctime_ns, host.st_ctime_ns)
        kept = 0
        for _, data in extents:
            kept += len(data)
        self.fs.let_go_bytes += kept
        self._let_go = _LetGo(host.st_size, host.st_blocks, extents, kept)
        self.close_memfd()
        self._release = None

    def _remake(self) -> int:
        """The memfd of a file let go, made again with the same size, times and pages."""
        let_go = self._let_go
        assert let_go is not None
        cache = self.fs.cache
        assert cache is not None
        backing = self.fs.backing
        try:
            if backing is not None:
                assert self._host_name is not None
                name = self._host_name
                fd = cache.descriptor(
                    lambda: os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=backing)
                )
                try:  # the times a setattr gave while it was let go (for a memfd: below)
                    os.utime(fd, ns=(self.atime_ns, self.mtime_ns))
                except BaseException:
                    os.close(fd)
                    raise
            else:
                fd = cache.descriptor(lambda: os.memfd_create(f"ramfs:{self.ino}", os.MFD_CLOEXEC))
                try:
                    os.ftruncate(fd, let_go.size)
                    for off, data in let_go.extents:
                        view = memoryview(data)
                        while view:
                            n = os.pwrite(fd, view, off)
                            view, off = view[n:], off + n
                    os.utime(fd, ns=(self.atime_ns, self.mtime_ns))
                except BaseException:
                    os.close(fd)
                    raise
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO, f"ramfs: contents: {e.strerror}")
        host = os.fstat(fd)
        self._remade = (host.st_ctime_ns, host.st_mtime_ns)
        self._adopt(fd)
        self._forget_let_go()
        return fd

    def _forget_let_go(self) -> None:
        if self._let_go is not None:
            self.fs.let_go_bytes -= self._let_go.kept
            self._let_go = None

    def dropped(self) -> None:
        # descriptors already donated keep the memfd's file alive in the host kernel
        self.close_memfd()
        self._forget_let_go()
        if self._host_name is not None and self.fs.backing is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._host_name, dir_fd=self.fs.backing)
            self._host_name = None
        if self.fs.cache is not None:
            self.fs.cache.discard(self)

    # frees an O_TMPFILE file never named (its memfd, its inode) when the inode is freed
    _release: weakref.finalize[[int, RamFs], RamFile] | None = None
    # of a nameless file: the open file descriptions handed out and not yet closed
    descriptions = 0

    def _nameless(self) -> bool:
        """An O_TMPFILE file never named, still allocated."""
        return self.nlink == 0 and self._release is not None and self._release.alive

    def closed(self, wrote: bool) -> bool:
        """The kernel reported that an open file description of this file went away (its last
        descriptor, dup, fork copy and mapping; ``wrote``: a writable one; see
        :mod:`occlum.fs.sefs.closes`). A nameless file whose descriptions are all gone can
        never be reached again: it is freed now, as Linux frees it at its last close, instead
        of when this inode object is (the object registry keeps it while its memfd lives, and
        the memfd lives until it is freed). True when the file system should commit."""
        if self.descriptions > 0:
            self.descriptions -= 1
            if not self.descriptions and self._nameless():
                assert self._release is not None
                self._release.detach()
                self.fs.release_inode()
                self.dropped()
        return False

    def close_memfd(self) -> None:
        if self.memfd is None:
            return
        if self._release is not None:
            self._release.detach()  # named, then unlinked: the unlink freed the inode
        os.close(self.memfd)
        self.memfd = None

    def made_unnamed(self, linkable: bool) -> None:
        """This new file is an O_TMPFILE one: no name yet, its contents kept (a later link
        opens it again) until it is named and unlinked, or until nothing holds the inode."""
        self.nlink = 0
        self.linkable = linkable
        if self.fs.cache is not None:
            self.fs.cache.discard(self)  # its memfd is all it has, and the cache would keep it
        fd = self._fd()
        self._release = weakref.finalize(self, _free_unnamed, fd, self.fs)


def _reopen_readonly(fd: int) -> int:
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def _free_unnamed(memfd: int, fs: RamFs) -> None:
    os.close(memfd)
    fs.release_inode()


class RamSymlink(RamInode):
    def __init__(self, fs: RamFs, target: bytes, uid: int, gid: int) -> None:
        super().__init__(fs, S_IFLNK | 0o777, uid, gid)
        self.target = target

    def _size(self) -> int:
        return len(self.target)

    def readlink(self) -> bytes:
        return self.target


class RamDir(RamInode):
    """A directory: a dict from name to inode; ``parent`` gives nlink bookkeeping."""

    def __init__(self, fs: RamFs, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, S_IFDIR | (mode & 0o7777), uid, gid)
        self.children: dict[bytes, RamInode] = {}
        self.nlink = 2

    def _size(self) -> int:
        return 4096

    def _touch(self) -> None:
        self.mtime_ns = self.ctime_ns = time.time_ns()
        self.changes += 1
        self.fs.changed(self)

    # the listing as getdents64 hands it out, once a program listed the directory: a name
    # made is appended, any other change of the entries drops it (see vfs/dirstream.py)
    _stream: DirStream | None = None

    def _set_entry(self, name: bytes, inode: RamInode) -> None:
        stream = self._stream
        if stream is not None:
            if name in self.children:
                self._stream = None  # a name now naming another inode: listed anew
            else:
                stream.add(name, inode.ino, dtype_of_mode(inode.mode))
        self.children[name] = inode
        self.fs.entry_changed(self, name, inode)
        names_changed()

    def _del_entry(self, name: bytes) -> None:
        del self.children[name]
        self._stream = None
        self.fs.entry_changed(self, name, None)
        names_changed()

    changes = 0  # bumped at every change of the entries (stacked file systems cache on it)

    def lookup(self, name: bytes) -> Inode:
        try:
            return self.children[name]
        except KeyError:
            raise SyscallError(errno.ENOENT, "no such file or directory")

    def readdir(self) -> list[DirEntry]:
        make = DirEntry._make  # builds the tuple in C; the class call costs twice as much
        return [make((n, i.ino, dtype_of_mode(i.mode))) for n, i in self.children.items()]

    def dirents(self) -> DirStream:
        stream = self._stream
        if stream is None:
            stream = self._stream = DirStream.of(
                (n, i.ino, dtype_of_mode(i.mode)) for n, i in self.children.items()
            )
        return stream

    def _writable(self, name: bytes) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        if self.nlink == 0:
            raise SyscallError(errno.ENOENT, "directory was removed")
        if name in self.children:
            raise SyscallError(errno.EEXIST, "file exists")

    def _add(self, name: bytes, inode: RamInode) -> RamInode:
        self._set_entry(name, inode)
        self._touch()
        self.fs.changed(inode)
        return inode

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._writable(name)
        return self._add(name, self._new_file(mode, uid, gid))

    def _new_file(self, mode: int, uid: int, gid: int) -> RamFile:
        return RamFile(self.fs, S_IFREG | (mode & 0o7777), uid, gid)

    def tmpfile(self, mode: int, uid: int, gid: int, *, linkable: bool = True) -> Inode:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        if self.nlink == 0:
            raise SyscallError(errno.ENOENT, "directory was removed")
        f = self._new_file(mode, uid, gid)
        f.made_unnamed(linkable)
        return f

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._writable(name)
        d = RamDir(self.fs, mode, uid, gid)
        self.nlink += 1
        return self._add(name, d)

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        kind = mode & S_IFMT
        if kind in (0, S_IFREG):
            return self.create(name, mode, uid, gid)
        if kind not in (S_IFIFO, S_IFCHR, S_IFSOCK, 0o060000):
            raise SyscallError(errno.EINVAL, "bad file type for mknod")
        self._writable(name)
        node = RamInode(self.fs, kind | (mode & 0o7777), uid, gid, rdev if kind != S_IFIFO else 0)
        return self._add(name, node)

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        self._writable(name)
        return self._add(name, RamSymlink(self.fs, target, uid, gid))

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, RamInode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV, "hard link across file systems")
        self._writable(name)
        if target.is_dir:
            raise SyscallError(errno.EPERM, "hard link to a directory")
        if target.nlink == 0 and not target.linkable:
            raise SyscallError(errno.ENOENT, "linking a removed file")
        if target.nlink:
            self.fs.claim_inode()  # as Linux's tmpfs, each further name costs an inode
        target.linkable = False  # as Linux's I_LINKABLE: named once, an O_TMPFILE is a file
        target.nlink += 1
        cache = self.fs.cache
        if cache is not None and isinstance(target, RamFile) and target.memfd is not None:
            cache.used(target)  # named, a former O_TMPFILE file may be let go too
        target.ctime_ns = time.time_ns()
        self._add(name, target)

    def _get(self, name: bytes) -> RamInode:
        try:
            return self.children[name]
        except KeyError:
            raise SyscallError(errno.ENOENT, "no such file or directory")

    def _drop(self, inode: RamInode) -> None:
        # a further name's inode, or the file's own (Linux's keeps it until the last close)
        self.fs.release_inode()
        inode.nlink -= 1
        inode.ctime_ns = time.time_ns()
        self.fs.changed(inode)
        if inode.nlink == 0:
            inode.dropped()

    def unlink(self, name: bytes) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        inode = self._get(name)
        if inode.is_dir:
            raise SyscallError(errno.EISDIR, "unlink of a directory")
        self._del_entry(name)
        self._touch()
        self._drop(inode)

    def rmdir(self, name: bytes) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        inode = self._get(name)
        if not isinstance(inode, RamDir):
            raise SyscallError(errno.ENOTDIR, "rmdir of a non-directory")
        if inode.children:
            raise SyscallError(errno.ENOTEMPTY, "directory not empty")
        self._del_entry(name)
        self.nlink -= 1
        self._touch()
        inode.nlink = 0
        inode.ctime_ns = time.time_ns()
        self.fs.changed(inode)
        self.fs.release_inode()

    def _is_ancestor_of(self, d: RamDir) -> bool:
        """True if ``self`` is ``d`` or contains it: moving ``self`` below ``d`` is a loop."""
        stack: list[RamDir] = [self]
        while stack:
            cur = stack.pop()
            if cur is d:
                return True
            stack.extend(c for c in cur.children.values() if isinstance(c, RamDir))
        return False

    def rename(self, oldname: bytes, new_dir: Inode, newname: bytes, flags: int) -> None:
        if not isinstance(new_dir, RamDir) or new_dir.fs is not self.fs:
            raise SyscallError(errno.EXDEV, "rename across file systems")
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")
        if (
            flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)
            or flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        ):
            raise SyscallError(errno.EINVAL, "bad rename flags")
        src = self._get(oldname)
        dst = new_dir.children.get(newname)
        if isinstance(src, RamDir) and src._is_ancestor_of(new_dir):
            raise SyscallError(errno.EINVAL, "moving a directory below itself")
        if not flags & RENAME_EXCHANGE and isinstance(dst, RamDir) and dst._is_ancestor_of(self):
            # Linux looks for this before the kinds of source and target (lock_rename's trap)
            raise SyscallError(errno.ENOTEMPTY, "target is a directory above the source")
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise SyscallError(errno.ENOENT, "exchange target does not exist")
            if isinstance(dst, RamDir) and dst._is_ancestor_of(self):
                raise SyscallError(errno.EINVAL, "moving a directory below itself")
            self._set_entry(oldname, dst)
            new_dir._set_entry(newname, src)
            if src.is_dir != dst.is_dir and self is not new_dir:
                delta = 1 if src.is_dir else -1
                self.nlink -= delta
                new_dir.nlink += delta
            self._touch()
            new_dir._touch()
            return
        if dst is src:
            return  # same inode under both names: rename(2) does nothing
        if dst is not None:
            if flags & RENAME_NOREPLACE:
                raise SyscallError(errno.EEXIST, "target exists")
            if src.is_dir and not dst.is_dir:
                raise SyscallError(errno.ENOTDIR, "directory over a non-directory")
            if not src.is_dir and dst.is_dir:
                raise SyscallError(errno.EISDIR, "non-directory over a directory")
            if isinstance(dst, RamDir):
                if dst.children:
                    raise SyscallError(errno.ENOTEMPTY, "target directory not empty")
                new_dir.nlink -= 1
                dst.nlink = 0
                self.fs.changed(dst)
                self.fs.release_inode()
            else:
                self._drop(dst)
        self._del_entry(oldname)
        new_dir._set_entry(newname, src)
        if src.is_dir:
            self.nlink -= 1
            new_dir.nlink += 1
        src.ctime_ns = time.time_ns()
        self.fs.changed(src)
        self._touch()
        new_dir._touch()


class RamFs(FileSystem):
    """An in-memory file system instance; ``mode`` is the root directory's permission bits.

    ``kind`` is what it calls itself ("tmpfs" or "ramfs": the name in /proc/mounts and the
    statfs magic). ``backing``, if given, is the root directory descriptor of a host tmpfs
    instance mounted nowhere (``native.detached_mount``) that holds the regular files'
    contents and so enforces its ``size=``; the file system owns it. Without it,
    contents are memfds, limited only by the instance's memory."""

    fstype = "tmpfs"
    root: RamDir
    changed_by_calls_only = True  # its names live in the LibOS's memory only (names_changed)
    backing: int | None = None
    # the LibOS's watch of closes: nameless files are freed at their last close (without it,
    # when their inode object is)
    close_watch: CloseWatcher | None = None
    max_inodes = 0  # nr_inodes=: 0 is no limit
    used_inodes = 0
    # the files whose contents hold a descriptor now (None: a subclass keeps its own)
    cache: FileCache[RamFile] | None = None
    # bytes of the files let go that the supervisor keeps (files of a host tmpfs instance
    # keep theirs there), and how many it may: past that, files keep their memfd, whose pages
    # stay charged to the programs that wrote them (see docs/internals.md)
    let_go_bytes = 0
    let_go_max = LET_GO_MAX

    def claim_inode(self) -> None:
        if self.max_inodes and self.used_inodes >= self.max_inodes:
            raise SyscallError(errno.ENOSPC, "no inode left (nr_inodes=)")
        self.used_inodes += 1

    def release_inode(self) -> None:
        self.used_inodes -= 1

    # What changed, for a file system that stores itself (SEFS commits only what changed).
    # Every change of an inode's attributes or of a directory's entries is reported here.
    def changed(self, inode: RamInode) -> None:
        """``inode``'s attributes (or its link count) may have changed."""

    def entry_changed(self, d: RamDir, name: bytes, inode: RamInode | None) -> None:
        """``d``'s entry ``name`` now names ``inode`` (None: removed)."""

    def __init__(
        self,
        *,
        mode: int = 0o1777,
        uid: int = 0,
        gid: int = 0,
        readonly: bool = False,
        kind: str = "tmpfs",
        backing: int | None = None,
    ):
        super().__init__(readonly=readonly)
        self.fstype = kind
        self.backing = backing
        if backing is not None:
            # kept while anything (a cwd, an open directory) may still create files in it,
            # after an unmount too, as on Linux; files already open hold the instance anyway
            weakref.finalize(self, os.close, backing)
        self.inos = itertools.count(1)
        self.cache = FileCache()
        self.root = RamDir(self, mode, uid, gid)

    def statfs(self) -> StatFs:
        magic = RAMFS_MAGIC if self.fstype == "ramfs" else TMPFS_MAGIC
        flags = 1 if self.readonly else 0
        if self.backing is None:
            st = StatFs(f_type=magic, flags=flags, namelen=255)
        else:
            st = self._host_statfs(magic, flags)
        if self.max_inodes:
            st.files, st.ffree = self.max_inodes, max(self.max_inodes - self.used_inodes, 0)
        return st

    def _host_statfs(self, magic: int, flags: int) -> StatFs:
        assert self.backing is not None
        # the pages of the contents, as the host counts them
        return StatFs.of_host(magic, os.fstatvfs(self.backing), flags)
