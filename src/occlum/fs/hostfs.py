"""hostfs: a host directory shown inside the LibOS, confined below its source directory.

Owns every access to host files.  An inode is a path *relative to the source* made of names
already checked to be real directories; every operation walks it again from a held descriptor
of the source, one component at a time with ``O_PATH | O_NOFOLLOW`` opens relative to the
parent (an openat2 ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` done by hand, since Python's ``os``
has no openat2).  Host symlinks are never followed here: they are shown to the VFS as symlinks,
and the VFS resolves them inside the LibOS namespace, so a link to ``/etc/passwd`` means the
LibOS's ``/etc/passwd``.  If a directory of the walk is swapped for a symlink on the host, the
walk fails rather than escaping.
"""

from __future__ import annotations

import errno
import os
import stat as pystat
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    DT_DIR,
    DT_LNK,
    DT_REG,
    EXT4_SUPER_MAGIC,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFIFO,
    S_IFMT,
    S_IFREG,
    S_ISGID,
    S_ISUID,
    ST_RDONLY,
    StatFs,
    dtype_of_mode,
)
from occlum.vfs.inode import HOST_OPEN_MASK, DirEntry, Inode, SetAttr, Stat
from occlum.vfs.mount import FileSystem

__all__ = ["HostFs"]

_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
# hostfs is a nosuid mount with squashed owners: the LibOS (root on the host) never leaves a
# set-id file on the host, nor gives a host file to another user. A directory keeps S_ISGID:
# there it only makes new entries take the directory's group, one the host already gave it.
_NOSUID_FILE = 0o7777 & ~(S_ISUID | S_ISGID)
_NOSUID_DIR = 0o7777 & ~S_ISUID
_MISSING = object()
DIR_FD_CACHE = 512


@contextmanager
def _host(what: str) -> Iterator[None]:
    """Turn a host OSError into the one error channel, keeping its errno."""
    try:
        yield
    except OSError as e:
        raise SyscallError(e.errno or errno.EIO, f"hostfs {what}: {e.strerror}")


def _dtype(e: os.DirEntry[str]) -> int:
    """The entry's type from the directory itself (d_type): no stat per entry."""
    if e.is_symlink():
        return DT_LNK
    if e.is_dir(follow_symlinks=False):
        return DT_DIR
    if e.is_file(follow_symlinks=False):
        return DT_REG
    return dtype_of_mode(e.stat(follow_symlinks=False).st_mode)


def _check_name(name: bytes) -> None:
    if not name or b"/" in name or name in (b".", b"..") or b"\0" in name:
        raise SyscallError(errno.EINVAL, "hostfs: bad name")


class HostInode(Inode):
    """A host file known by its path relative to the mount source (``()`` is the root)."""

    fs: HostFs

    def __init__(self, fs: HostFs, rel: tuple[bytes, ...], st: os.stat_result) -> None:
        super().__init__(fs, st.st_ino, st.st_mode)
        self.rel = rel
        self._seen = st  # the stat the lookup made; reused as is on a read-only source

    # --- walking ------------------------------------------------------------------------

    @contextmanager
    def _dirfd(self, rel: tuple[bytes, ...] | None = None) -> Iterator[int]:
        """An O_PATH descriptor of directory ``rel`` (default: this inode), walked safely;
        borrowed from the file system's cache, never to be closed by the caller."""
        with _host("walk"):
            yield self.fs.dir_fd(self.rel if rel is None else rel)

    @contextmanager
    def _parent(self) -> Iterator[tuple[int, bytes]]:
        if not self.rel:
            raise SyscallError(errno.EBUSY, "hostfs: operation on the mount root")
        with self._dirfd(self.rel[:-1]) as d:
            yield d, self.rel[-1]

    def _ro(self) -> None:
        if self.fs.readonly:
            raise SyscallError(errno.EROFS, "read-only file system")

    def _stat(self) -> os.stat_result:
        # plain try/except rather than the _host/_parent context managers: this is the path
        # of every stat, and contextlib costs more than the system call
        try:
            if not self.rel:
                return os.fstat(self.fs.root_fd)
            return os.stat(
                self.rel[-1], dir_fd=self.fs.dir_fd(self.rel[:-1]), follow_symlinks=False
            )
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO, f"hostfs stat: {e.strerror}")

    def getattr(self) -> Stat:
        st = self._seen if self.fs.readonly else None  # an image file never changes
        if st is None:
            st = self._stat()
        return self._from_host(st)

    def fgetattr(self, host: os.stat_result) -> Stat:
        # a descriptor of this very host file (it may have no name any more)
        seen = self._seen
        if not self.fs.readonly and (host.st_dev, host.st_ino) == (seen.st_dev, seen.st_ino):
            return self._from_host(host)
        return self.getattr()

    def _from_host(self, st: os.stat_result) -> Stat:
        # the mount's own device number, so st_dev is consistent inside the LibOS
        return Stat(
            dev=self.fs.dev, ino=st.st_ino, mode=st.st_mode, nlink=st.st_nlink, uid=st.st_uid,
            gid=st.st_gid, rdev=st.st_rdev, size=st.st_size, blksize=st.st_blksize,
            blocks=st.st_blocks, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
        )  # fmt: skip

    # --- directory operations -------------------------------------------------------------

    def _child(self, d: int, name: bytes) -> HostInode:
        with _host("lookup"):
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
        return HostInode(self.fs, (*self.rel, name), st)

    def lookup(self, name: bytes) -> Inode:
        if not self.is_dir:
            raise SyscallError(errno.ENOTDIR, "lookup in a non-directory")
        _check_name(name)
        cache = self.fs.lookups
        if cache is not None:
            key = (self.rel, name)
            hit = cache.get(key, _MISSING)
            if hit is None:
                raise SyscallError(errno.ENOENT, "hostfs lookup: no such file")
            if hit is not _MISSING:
                return hit  # type: ignore[return-value]
            try:
                with self._dirfd() as d:
                    child = self._child(d, name)
            except SyscallError as exc:
                if exc.errno == errno.ENOENT:
                    cache[key] = None
                raise
            cache[key] = child
            return child
        with self._dirfd() as d:
            return self._child(d, name)

    def readdir(self) -> list[DirEntry]:
        if not self.is_dir:
            raise SyscallError(errno.ENOTDIR, "readdir of a non-directory")
        if self._listing is not None:
            return self._listing
        out: list[DirEntry] = []
        with self._dirfd() as d, _host("readdir"):
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d)
            try:
                with os.scandir(fd) as it:
                    for e in it:
                        out.append(DirEntry(os.fsencode(e.name), e.inode(), _dtype(e)))
            finally:
                os.close(fd)
        if self.fs.readonly:
            self._listing = out  # the image never changes
        return out

    _listing: list[DirEntry] | None = None

    def _mutate_dir(self, name: bytes) -> None:
        if not self.is_dir:
            raise SyscallError(errno.ENOTDIR, "not a directory")
        self._ro()
        _check_name(name)

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._mutate_dir(name)
        with self._dirfd() as d:
            with _host("create"):
                # O_EXCL: never creates through a symlink planted on the host
                fd = os.open(
                    name,
                    os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    mode & _NOSUID_FILE,
                    dir_fd=d,
                )
                os.close(fd)
            return self._child(d, name)

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._mutate_dir(name)
        with self._dirfd() as d:
            with _host("mkdir"):
                os.mkdir(name, mode & _NOSUID_DIR, dir_fd=d)
            return self._child(d, name)

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        kind = mode & S_IFMT
        if kind in (0, S_IFREG):
            return self.create(name, mode, uid, gid)
        if kind != S_IFIFO:
            # device nodes on the host would be a way out of the sandbox
            raise SyscallError(errno.EPERM, "hostfs: only FIFOs and regular files")
        self._mutate_dir(name)
        with self._dirfd() as d:
            with _host("mkfifo"):
                os.mkfifo(name, mode & _NOSUID_FILE, dir_fd=d)
            return self._child(d, name)

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        self._mutate_dir(name)
        with self._dirfd() as d:
            with _host("symlink"):
                os.symlink(target, name, dir_fd=d)
            return self._child(d, name)

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, HostInode) or target.fs is not self.fs:
            raise SyscallError(errno.EXDEV, "hard link across file systems")
        self._mutate_dir(name)
        with target._parent() as (sd, sname), self._dirfd() as d, _host("link"):
            os.link(sname, name, src_dir_fd=sd, dst_dir_fd=d, follow_symlinks=False)

    def unlink(self, name: bytes) -> None:
        self._mutate_dir(name)
        with self._dirfd() as d, _host("unlink"):
            os.unlink(name, dir_fd=d)

    def rmdir(self, name: bytes) -> None:
        self._mutate_dir(name)
        with self._dirfd() as d, _host("rmdir"):
            os.rmdir(name, dir_fd=d)
        self.fs.forget_dirs()

    def rename(self, oldname: bytes, new_dir: Inode, newname: bytes, flags: int) -> None:
        if not isinstance(new_dir, HostInode) or new_dir.fs is not self.fs:
            raise SyscallError(errno.EXDEV, "rename across file systems")
        self._mutate_dir(oldname)
        new_dir._mutate_dir(newname)
        if (
            flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)
            or flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        ):
            raise SyscallError(errno.EINVAL, "bad rename flags")
        self.fs.forget_dirs()
        with self._dirfd() as sd, new_dir._dirfd() as dd, _host("rename"):
            os.stat(oldname, dir_fd=sd, follow_symlinks=False)
            exists = _exists(newname, dd)
            # Python has no renameat2: both flags are emulated (not atomic against the host)
            if flags & RENAME_NOREPLACE:
                if exists:
                    raise SyscallError(errno.EEXIST, "target exists")
            elif flags & RENAME_EXCHANGE:
                if not exists:
                    raise SyscallError(errno.ENOENT, "exchange target does not exist")
                tmp = b".occlum-exchange-%d" % os.getpid()
                os.rename(oldname, tmp, src_dir_fd=sd, dst_dir_fd=sd)
                os.rename(newname, oldname, src_dir_fd=dd, dst_dir_fd=sd)
                os.rename(tmp, newname, src_dir_fd=sd, dst_dir_fd=dd)
                return
            os.rename(oldname, newname, src_dir_fd=sd, dst_dir_fd=dd)

    def readlink(self) -> bytes:
        if not self.is_symlink:
            raise SyscallError(errno.EINVAL, "not a symbolic link")
        with self._parent() as (d, name), _host("readlink"):
            return os.readlink(name, dir_fd=d)

    @contextmanager
    def _opath(self) -> Iterator[int]:
        if not self.rel:
            yield self.fs.root_fd
            return
        with self._parent() as (d, name), _host("open"):
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
        try:
            yield fd
        finally:
            os.close(fd)

    def setattr(self, attrs: SetAttr) -> None:
        self._ro()
        if self.is_symlink:
            raise SyscallError(errno.EPERM, "hostfs: attributes of a symlink")
        with self._opath() as fd, _host("setattr"):
            # /proc/self/fd/N of an O_PATH descriptor names exactly the file we walked to
            proc = f"/proc/self/fd/{fd}"
            if attrs.owner:
                # squashed owners, as an NFS root_squash or a FUSE mount gives root: giving a
                # file away is refused (and the ids it already has are no change)
                st = os.stat(proc)
                if attrs.uid not in (None, st.st_uid) or attrs.gid not in (None, st.st_gid):
                    raise SyscallError(errno.EPERM, "hostfs: host files keep their owners")
            if attrs.size is not None:
                if self.is_dir:
                    raise SyscallError(errno.EISDIR, "truncate of a directory")
                if not self.is_regular:
                    raise SyscallError(errno.EINVAL, "truncate of a non-regular file")
                os.truncate(proc, attrs.size)
            if attrs.mode is not None:
                os.chmod(proc, attrs.mode & (_NOSUID_DIR if self.is_dir else _NOSUID_FILE))
            if attrs.atime_ns is not None or attrs.mtime_ns is not None:
                st = os.stat(proc)
                os.utime(proc, ns=(
                    st.st_atime_ns if attrs.atime_ns is None else attrs.atime_ns,
                    st.st_mtime_ns if attrs.mtime_ns is None else attrs.mtime_ns,
                ))  # fmt: skip

    # Extended attributes: user.* ones are the host file's own, read and written through;
    # no other namespace reaches the host (security.capability would be a set-id bit by
    # another name, trusted.* and ACLs are the host administrator's).
    def _xattr_ok(self, name: bytes) -> bool:
        if not name.startswith(b"user."):
            raise SyscallError(errno.EOPNOTSUPP, "hostfs: only user.* extended attributes")
        return self.is_dir or self.is_regular  # the only files Linux gives user.* to

    def get_xattr(self, name: bytes) -> bytes:
        if not self._xattr_ok(name):
            raise SyscallError(errno.ENODATA, "no such attribute")
        with self._opath() as fd, _host("getxattr"):
            return os.getxattr(f"/proc/self/fd/{fd}", name)

    def set_xattr(self, name: bytes, value: bytes, flags: int) -> None:
        self._ro()
        if not self._xattr_ok(name):
            raise SyscallError(errno.EPERM, "user attributes only on files and directories")
        with self._opath() as fd, _host("setxattr"):
            os.setxattr(f"/proc/self/fd/{fd}", name, value, flags)

    def remove_xattr(self, name: bytes) -> None:
        self._ro()
        if not self._xattr_ok(name):
            raise SyscallError(errno.EPERM, "user attributes only on files and directories")
        with self._opath() as fd, _host("removexattr"):
            os.removexattr(f"/proc/self/fd/{fd}", name)

    def list_xattr(self) -> list[bytes]:
        if not (self.is_dir or self.is_regular):
            return []
        with self._opath() as fd, _host("listxattr"):
            names = os.listxattr(f"/proc/self/fd/{fd}")
        return [os.fsencode(n) for n in names if n.startswith("user.")]

    def open_host_fd(self, flags: int) -> int:
        if self.is_dir:
            raise SyscallError(errno.EISDIR, "directories have no host descriptor")
        if flags & os.O_ACCMODE != os.O_RDONLY:
            self._ro()
        with self._opath() as fd:
            with _host("open"):
                st = os.fstat(fd)
            if not pystat.S_ISREG(st.st_mode):
                # host devices, FIFOs and sockets stay out of reach
                raise SyscallError(errno.ENXIO, "hostfs: only regular files are opened")
            with _host("open"):
                return os.open(
                    f"/proc/self/fd/{fd}", (flags & HOST_OPEN_MASK) | os.O_CLOEXEC | os.O_NOCTTY
                )


def _exists(name: bytes, d: int) -> bool:
    try:
        os.stat(name, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


class HostFs(FileSystem):
    """The host directory ``source`` mounted in the LibOS; ``readonly`` for the built image."""

    fstype = "hostfs"
    root: HostInode

    def __init__(self, source: str | bytes, *, readonly: bool = False) -> None:
        super().__init__(readonly=readonly)
        with _host(f"mount {os.fsdecode(source)}"):
            self.root_fd = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            st = os.fstat(self.root_fd)
        self.source = os.fsencode(source)
        self.root = HostInode(self, (), st)
        # O_PATH descriptors of walked directories, most recently used last. Walking from the
        # root one O_NOFOLLOW component at a time confines every access below the source; the
        # cache keeps that walk from costing an open per component on every call.
        self._dir_fds: OrderedDict[tuple[bytes, ...], int] = OrderedDict()
        # a read-only source (the built image) never changes: lookups, misses included, cached
        self.lookups: dict[tuple[tuple[bytes, ...], bytes], HostInode | None] | None = (
            {} if readonly else None
        )

    def dir_fd(self, rel: tuple[bytes, ...]) -> int:
        if not rel:
            return self.root_fd
        cache = self._dir_fds
        fd = cache.get(rel)
        if fd is not None:
            cache.move_to_end(rel)
            return fd
        parent = self.dir_fd(rel[:-1])
        fd = os.open(rel[-1], _WALK, dir_fd=parent)
        cache[rel] = fd
        if len(cache) > DIR_FD_CACHE:
            _old, old_fd = cache.popitem(last=False)
            os.close(old_fd)
        return fd

    def forget_dirs(self) -> None:
        """After a rename or rmdir through the LibOS, cached walks may name the wrong thing."""
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    def statfs(self) -> StatFs:
        with _host("statfs"):
            v = os.fstatvfs(self.root_fd)
        flags = ST_RDONLY if self.readonly else 0
        return StatFs.of_host(EXT4_SUPER_MAGIC, v, flags, namelen=v.f_namemax)

    def close(self) -> None:
        self.forget_dirs()
        os.close(self.root_fd)
