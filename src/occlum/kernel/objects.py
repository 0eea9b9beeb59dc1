"""What the descriptors a program holds refer to, on the LibOS side.

A donated descriptor is a real host descriptor (a memfd of the page cache, a confined host
file, a directory handle); the program may dup, pass or close it natively. The LibOS therefore
finds its object by the *identity of the host object* behind a descriptor — ``(st_dev, st_ino)``
of ``/proc/PID/fd/N`` — which the program cannot forge, instead of by descriptor number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from occlum.vfs.dirfile import OpenDirectory
from occlum.vfs.path import Location


@dataclass(slots=True, eq=False)
class FileRef:
    location: Location
    directory: OpenDirectory | None = None  # set for directory handles
    path_only: bool = False  # an O_PATH handle


class ObjectRegistry:
    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int], FileRef] = {}

    def register(self, host_fd: int, ref: FileRef) -> None:
        st = os.fstat(host_fd)
        self._by_key[(st.st_dev, st.st_ino)] = ref

    def lookup(self, host_pid: int, fd: int) -> FileRef | None:
        """The LibOS object behind descriptor ``fd`` of a process, or None for host-only objects
        (pipes, sockets, eventfds). Raises FileNotFoundError if ``fd`` is not open."""
        st = os.stat(f"/proc/{host_pid}/fd/{fd}")
        return self._by_key.get((st.st_dev, st.st_ino))

    def make_handle(self, name: str) -> int:
        """A fresh host object to stand for a directory or O_PATH descriptor."""
        return os.memfd_create(name, os.MFD_CLOEXEC)
