"""devpts: the instance's pseudo-terminals, ``/dev/pts`` and what ``/dev/ptmx`` opens.

The terminals are the host kernel's own: each process tree of the instance gets a devpts
instance of its own (mounted by the launcher in the tree's namespaces and detached at once,
see ``platform/launch.py``), and the supervisor holds the descriptor of its root directory.
Opening ``/dev/ptmx`` opens that instance's ``ptmx`` (a new master, its slave numbered in the
instance only); ``/dev/pts/N`` opens slave N there. Everything after the open (reads, writes,
``TIOCGPTN``, ``TIOCSPTLCK``, ``TIOCGPTPEER``, termios, ``TIOCSCTTY``) is the kernel's, on
descriptors the program holds. Names, inode numbers and devices are the host instance's, so
``stat`` of a name and ``fstat`` of an open slave agree, as ``ttyname`` checks.

The terminal ``occlum run`` was started on (the supervisor's stdin, stdout or stderr, a slave
of the host's devpts) is the program's too: its descriptors 0-2 are that terminal. So that
``ttyname`` (``tty``, ``ps``, Python's ``os.ttyname``) finds it under the name
``/proc/self/fd/0`` gives, ``/dev/pts/N`` also shows that one terminal of the host's devpts
when the instance's own has no slave N: its host attributes, and an open is a new open of
the terminal the supervisor holds (the program holds it already). No other host terminal is
reachable by name.
"""

from __future__ import annotations

import errno
import os

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import DEVPTS_SUPER_MAGIC, S_IFDIR, S_IFMT, StatFs, dtype_of_mode
from occlum.vfs.inode import HOST_OPEN_MASK, DirEntry, Inode, SetAttr, Stat
from occlum.vfs.mount import FileSystem

__all__ = ["DevPtsFs"]

NOBODY = 65534


class DevPtsFs(FileSystem):
    """The devpts instance of the running process tree; ``attach`` gives it a new one."""

    fstype = "devpts"
    root: DevPtsDir

    def __init__(self) -> None:
        super().__init__()
        self.fd = -1
        self.root = DevPtsDir(self)
        # the host terminal occlum run was started on: (its name in /dev/pts, our descriptor)
        self.outer: tuple[bytes, int] | None = _outer_terminal()

    def attach(self, fd: int) -> None:
        """Serve the devpts instance whose root directory is ``fd`` (owned from now on), or
        none (-1): the terminals of an ended tree go with it."""
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        if fd >= 0:
            os.set_inheritable(fd, False)  # it came by SCM_RIGHTS: the next tree must not get it
            self.dev = os.fstat(fd).st_dev

    def _dir(self) -> int:
        if self.fd < 0:
            raise SyscallError(errno.ENODEV, "no devpts instance (the kernel refused the mount)")
        return self.fd

    def host_stat(self, name: bytes) -> os.stat_result:
        try:
            return os.stat(name, dir_fd=self._dir(), follow_symlinks=False)
        except OSError as exc:
            raise SyscallError(exc.errno or errno.ENOENT, "no such pseudo-terminal")

    def outer_stat(self, name: bytes) -> os.stat_result | None:
        """The attributes of the outer terminal if ``name`` is its name, else None."""
        outer = self.outer
        if outer is None or outer[0] != name:
            return None
        try:
            return os.fstat(outer[1])
        except OSError:
            return None

    def open_host(self, name: bytes, flags: int) -> int:
        """A new open of ``name`` (``ptmx``: a new master). ``O_NOCTTY``: the opener here is
        the supervisor, whose controlling terminal must not change."""
        try:
            return os.open(
                name, (flags & HOST_OPEN_MASK) | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=self._dir()
            )
        except OSError as exc:
            if exc.errno == errno.EIO:  # a slave still locked: no integrity failure to report
                raise SyscallError(errno.EIO)
            raise SyscallError(exc.errno or errno.EIO, f"pseudo-terminal {name.decode()}")

    def open_master(self, flags: int) -> int:
        return self.open_host(b"ptmx", flags)

    def statfs(self) -> StatFs:
        return StatFs(f_type=DEVPTS_SUPER_MAGIC, namelen=255, flags=2 | 8)  # nosuid, noexec


def _outer_terminal() -> tuple[bytes, int] | None:
    """The first of our descriptors 0-2 that is a slave of the host's devpts, with its name."""
    for fd in (0, 1, 2):
        try:
            if not os.isatty(fd):
                continue
            path = os.ttyname(fd)
        except OSError:
            continue
        head, _, name = path.rpartition("/")
        if head == "/dev/pts" and name.isdigit():
            return os.fsencode(name), fd
    return None


def _stat(st: os.stat_result) -> Stat:
    """The host's stat as the instance's programs see it: the supervisor's user and group are
    the instance's root, as the kernel maps them for the programs' own ``fstat``."""
    uid, gid = st.st_uid, st.st_gid
    if os.geteuid() != 0:  # the instance runs in a user namespace mapping us to root
        uid = 0 if uid == os.geteuid() else NOBODY
        gid = 0 if gid == os.getegid() else NOBODY
    return Stat(dev=st.st_dev, ino=st.st_ino, mode=st.st_mode, nlink=st.st_nlink, uid=uid,
                gid=gid, rdev=st.st_rdev, size=st.st_size, blksize=st.st_blksize,
                blocks=st.st_blocks, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_ctime_ns)  # fmt: skip


class DevPtsDir(Inode):
    """The root of devpts: ``ptmx`` and one name per pseudo-terminal in use."""

    fs: DevPtsFs

    def __init__(self, fs: DevPtsFs) -> None:
        super().__init__(fs, 1, S_IFDIR)

    def getattr(self) -> Stat:
        if self.fs.fd < 0:
            return Stat(dev=self.fs.dev, ino=1, mode=S_IFDIR | 0o755, nlink=2)
        return _stat(os.fstat(self.fs.fd))

    def lookup(self, name: bytes) -> Inode:
        try:
            st = self.fs.host_stat(name)
        except SyscallError as exc:
            outer = self.fs.outer_stat(name) if exc.errno == errno.ENOENT else None
            if outer is None:
                raise
            return OuterPtsNode(self.fs, name, outer)
        if (st.st_mode & S_IFMT) == S_IFDIR:  # "." and ".." never get here; nothing else is one
            raise SyscallError(errno.ENOENT, "no such pseudo-terminal")
        return DevPtsNode(self.fs, name, st)

    def readdir(self) -> list[DirEntry]:
        out = []
        with os.scandir(self.fs._dir()) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                out.append(DirEntry(os.fsencode(e.name), st.st_ino, dtype_of_mode(st.st_mode)))
        outer = self.fs.outer
        if outer is not None and all(e.name != outer[0] for e in out):
            ost = self.fs.outer_stat(outer[0])
            if ost is not None:
                out.append(DirEntry(outer[0], ost.st_ino, dtype_of_mode(ost.st_mode)))
        return out

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        raise SyscallError(errno.EACCES, "devpts: names are made by opening /dev/ptmx")


class DevPtsNode(Inode):
    """``ptmx`` or slave N of the instance's devpts."""

    fs: DevPtsFs

    def __init__(self, fs: DevPtsFs, name: bytes, st: os.stat_result) -> None:
        super().__init__(fs, st.st_ino, st.st_mode)
        self.name = name
        self.last = st

    def getattr(self) -> Stat:
        try:
            self.last = self.fs.host_stat(self.name)
        except SyscallError:
            pass  # gone with its last descriptor; what it was is still right for a handle
        return _stat(self.last)

    def setattr(self, attrs: SetAttr) -> None:
        """chmod and utimes, as a terminal's owner does (``mesg``, login programs); owners
        other than the instance's root do not exist on the host side."""
        if attrs.size is not None:
            raise SyscallError(errno.EINVAL, "truncate of a terminal")
        if (attrs.uid not in (None, 0)) or (attrs.gid not in (None, 0)):
            raise SyscallError(errno.EPERM, "a pseudo-terminal belongs to the instance's root")
        fd = self.fs._dir()
        try:
            if attrs.mode is not None:
                os.chmod(self.name, attrs.mode & 0o7777, dir_fd=fd, follow_symlinks=False)
            if attrs.atime_ns is not None or attrs.mtime_ns is not None:
                st = self.fs.host_stat(self.name)
                times = (
                    st.st_atime_ns if attrs.atime_ns is None else attrs.atime_ns,
                    st.st_mtime_ns if attrs.mtime_ns is None else attrs.mtime_ns,
                )
                os.utime(self.name, ns=times, dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EPERM, "pseudo-terminal attributes")

    def open_host_fd(self, flags: int) -> int:
        return self.fs.open_host(self.name, flags)


class OuterPtsNode(DevPtsNode):
    """The host terminal ``occlum run`` was started on, under its host name (see above)."""

    def getattr(self) -> Stat:
        st = self.fs.outer_stat(self.name)
        if st is not None:
            self.last = st
        return _stat(self.last)

    def setattr(self, attrs: SetAttr) -> None:
        raise SyscallError(errno.EPERM, "the terminal of occlum run belongs to the host")

    def open_host_fd(self, flags: int) -> int:
        outer = self.fs.outer
        if outer is None or outer[0] != self.name:
            raise SyscallError(errno.ENOENT, "no such pseudo-terminal")
        try:
            return os.open(
                f"/proc/self/fd/{outer[1]}",
                (flags & HOST_OPEN_MASK) | os.O_CLOEXEC | os.O_NOCTTY,
            )
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EIO, "the terminal of occlum run")
