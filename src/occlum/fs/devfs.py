"""devfs: the LibOS ``/dev``.

Owns the standard device nodes and links.  It is a ramfs populated at mount time, so programs
may add nodes and FIFOs as on a devtmpfs; a character node opens the matching harmless host
device (``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/random``, ``/dev/urandom``,
``/dev/tty``) and nothing else.  The kernel mounts a separate ramfs on ``/dev/shm``.
"""

from __future__ import annotations

import os

from occlum.abi.fsabi import S_IFCHR
from occlum.fs.ramfs import RamDir, RamFs

__all__ = ["DevFs"]

DEVICES: tuple[tuple[bytes, int, int, int], ...] = (
    (b"null", 1, 3, 0o666),
    (b"zero", 1, 5, 0o666),
    (b"full", 1, 7, 0o666),
    (b"random", 1, 8, 0o666),
    (b"urandom", 1, 9, 0o666),
    (b"tty", 5, 0, 0o666),
)

LINKS: tuple[tuple[bytes, bytes], ...] = (
    (b"stdin", b"/proc/self/fd/0"),
    (b"stdout", b"/proc/self/fd/1"),
    (b"stderr", b"/proc/self/fd/2"),
    (b"fd", b"/proc/self/fd"),
)


class DevFs(RamFs):
    """``/dev``: device nodes, the stdio links, and empty ``shm/`` and ``pts/`` directories."""

    fstype = "devtmpfs"

    def __init__(self) -> None:
        super().__init__(mode=0o755)
        root: RamDir = self.root
        for name, major, minor, perm in DEVICES:
            root.mknod(name, S_IFCHR | perm, os.makedev(major, minor), 0, 0)
        for name, target in LINKS:
            root.symlink(name, target, 0, 0)
        root.mkdir(b"shm", 0o1777, 0, 0)  # the kernel mounts a ramfs here
        root.mkdir(b"pts", 0o755, 0, 0)
