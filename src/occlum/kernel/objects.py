"""What the descriptors a program holds refer to, on the LibOS side.

A donated descriptor is a real host descriptor (a memfd of the page cache, a confined host
file, a directory handle); the program may dup, pass or close it natively. The LibOS therefore
finds its object by the *identity of the host object* behind a descriptor — ``(st_dev, st_ino)``
of ``/proc/PID/fd/N`` — which the program cannot forge, instead of by descriptor number.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from occlum.vfs.dirfile import OpenDirectory
from occlum.vfs.path import Location


@dataclass(slots=True, eq=False)
class FileRef:
    location: Location
    directory: OpenDirectory | None = None  # set for directory handles
    path_only: bool = False  # an O_PATH handle


PRUNE_AT = 8192


class ObjectRegistry:
    __slots__ = ("_by_key", "_counter", "live_keys", "namer", "prune_at", "scratch_fd")

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int], FileRef] = {}
        self.prune_at = PRUNE_AT
        # identities of every host object the instance's processes hold now (set by the kernel)
        self.live_keys: Callable[[], set[tuple[int, int]]] | None = None
        # names host objects the LibOS did not hand out but knows (a pseudo-terminal slave a
        # program opened natively with TIOCGPTPEER), from their host stat; set by the kernel
        self.namer: Callable[[os.stat_result], FileRef | None] | None = None
        self._counter = 0
        self.scratch_fd = -1  # a directory on a private tmpfs, for directory handles

    def register(self, host_fd: int, ref: FileRef) -> None:
        st = os.fstat(host_fd)
        self._by_key[(st.st_dev, st.st_ino)] = ref
        if len(self._by_key) > self.prune_at and self.live_keys is not None:
            self.prune(self.live_keys())

    def prune(self, live: set[tuple[int, int]]) -> None:
        """Forget objects no process holds any more (an entry outlives its descriptors, since
        the programs close them natively); the next pruning waits for twice as many."""
        self._by_key = {k: v for k, v in self._by_key.items() if k in live}
        self.prune_at = max(PRUNE_AT, 2 * len(self._by_key))

    def lookup(self, host_pid: int, fd: int) -> FileRef | None:
        """The LibOS object behind descriptor ``fd`` of a process, or None for host-only objects
        (pipes, sockets, eventfds). Raises OSError if ``fd`` is not open."""
        return self.lookup_stat(host_pid, fd)[0]

    def lookup_stat(self, host_pid: int, fd: int) -> tuple[FileRef | None, os.stat_result]:
        """Like :meth:`lookup`, also giving the host object's own stat (sizes and times of
        page-cache memfds and hostfs files change by native writes)."""
        st = os.stat(f"/proc/{host_pid}/fd/{fd}")
        key = (st.st_dev, st.st_ino)
        ref = self._by_key.get(key)
        if ref is None and self.namer is not None:
            ref = self.namer(st)
            if ref is not None:
                self._by_key[key] = ref
        return ref, st

    def make_dir_handle(self) -> int:
        """A directory descriptor for a LibOS directory: an empty, already removed directory of
        a private tmpfs, so that native read/write/mmap/ftruncate fail as on a directory
        (EISDIR, ENODEV, EINVAL) while its identity leads back here."""
        self._counter += 1
        name = f"d{self._counter}"
        os.mkdir(name, 0o500, dir_fd=self.scratch_fd)
        try:
            return os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.scratch_fd
            )
        finally:
            os.rmdir(name, dir_fd=self.scratch_fd)

    def make_path_handle(self) -> int:
        """A descriptor for an O_PATH open: a fresh anonymous inode opened with neither read nor
        write access (access mode 3), so read and write fail with EBADF as on O_PATH
        descriptors. (A real O_PATH descriptor cannot be installed by SECCOMP_ADDFD.)"""
        mfd = os.memfd_create("occlum-path", os.MFD_CLOEXEC)
        try:
            return os.open(f"/proc/self/fd/{mfd}", os.O_ACCMODE | os.O_CLOEXEC)
        finally:
            os.close(mfd)
