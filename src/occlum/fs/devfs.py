"""devfs: the LibOS ``/dev``.

Owns the standard device nodes and links.  It is a ramfs populated at mount time, so programs
may add nodes and FIFOs as on a devtmpfs; a character node opens the matching harmless host
device (``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/random``, ``/dev/urandom``,
``/dev/tty``) and nothing else; ``/dev/ptmx`` opens a new master of the instance's own
pseudo-terminals (``fs/devpts.py``); ``/dev/sgx`` is Occlum's SGX device (its ioctls are
served in ``syscalls/sgx.py``).  The kernel mounts a separate ramfs on ``/dev/shm`` and
the devpts on ``/dev/pts``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFCHR
from occlum.fs.devpts import DevPtsFs
from occlum.fs.ramfs import RamDir, RamFs, RamInode

__all__ = ["DevFs", "SgxNode"]

DEVICES: tuple[tuple[bytes, int, int, int], ...] = (
    (b"null", 1, 3, 0o666),
    (b"zero", 1, 5, 0o666),
    (b"full", 1, 7, 0o666),
    (b"random", 1, 8, 0o666),
    (b"urandom", 1, 9, 0o666),
)

LINKS: tuple[tuple[bytes, bytes], ...] = (
    (b"stdin", b"/proc/self/fd/0"),
    (b"stdout", b"/proc/self/fd/1"),
    (b"stderr", b"/proc/self/fd/2"),
    (b"fd", b"/proc/self/fd"),
)


PTMX = os.makedev(5, 2)
TTY = os.makedev(5, 0)


class TtyNode(RamInode):
    """``/dev/tty``: the caller's controlling terminal, found by ``ctty`` (given the open
    flags); without it, the supervisor's own terminal."""

    opens_other_object = True

    def __init__(self, fs: DevFs, ctty: Callable[[int], int] | None) -> None:
        super().__init__(fs, S_IFCHR | 0o666, 0, 0, TTY)
        self.ctty = ctty

    def open_host_fd(self, flags: int) -> int:
        if self.ctty is None:
            return super().open_host_fd(flags)
        return self.ctty(flags)


class PtmxNode(RamInode):
    """``/dev/ptmx``: each open is a new master of the instance's pseudo-terminals."""

    def __init__(self, fs: DevFs, ptys: DevPtsFs | None) -> None:
        super().__init__(fs, S_IFCHR | 0o666, 0, 0, PTMX)
        self.ptys = ptys

    def open_host_fd(self, flags: int) -> int:
        if self.ptys is None:
            raise SyscallError(errno.ENODEV, "no pseudo-terminals in this /dev")
        return self.ptys.open_master(flags)


class SgxNode(RamInode):
    """``/dev/sgx``: Occlum's SGX device. Its ioctls are served by ``syscalls/sgx.py`` (the
    filter sends the ``'s'`` requests to the supervisor); an open gives an ioctl-only handle
    (access mode 3), so ``read`` and ``write`` fail (EBADF) as Occlum's device refuses them."""

    def __init__(self, fs: DevFs) -> None:
        super().__init__(fs, S_IFCHR | 0o666, 0, 0, 0)  # Occlum's device has rdev 0

    def open_host_fd(self, flags: int) -> int:
        mfd = os.memfd_create("occlum-dev-sgx", os.MFD_CLOEXEC)
        try:
            return os.open(f"/proc/self/fd/{mfd}", os.O_ACCMODE | os.O_CLOEXEC)
        finally:
            os.close(mfd)


class DevFs(RamFs):
    """``/dev``: device nodes, the stdio links, and empty ``shm/`` and ``pts/`` directories;
    ``ptys`` is the instance's devpts, which ``/dev/ptmx`` opens; ``ctty`` opens the caller's
    controlling terminal for ``/dev/tty``."""

    fstype = "devtmpfs"
    changed_by_calls_only = False  # links into /proc/self, the caller's terminal

    def __init__(
        self, ptys: DevPtsFs | None = None, ctty: Callable[[int], int] | None = None
    ) -> None:
        super().__init__(mode=0o755)
        root: RamDir = self.root
        for name, major, minor, perm in DEVICES:
            root.mknod(name, S_IFCHR | perm, os.makedev(major, minor), 0, 0)
        root._add(b"tty", TtyNode(self, ctty))
        root._add(b"ptmx", PtmxNode(self, ptys))
        root._add(b"sgx", SgxNode(self))
        for name, target in LINKS:
            root.symlink(name, target, 0, 0)
        root.mkdir(b"shm", 0o1777, 0, 0)  # the kernel mounts a ramfs here
        root.mkdir(b"pts", 0o755, 0, 0)
