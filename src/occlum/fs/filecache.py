"""The page cache's descriptors: which files keep their contents in a host descriptor now.

A LibOS file whose contents a program reads, writes or maps natively lives in a host file the
supervisor holds a descriptor for (a memfd, a file of a host tmpfs instance).  Descriptors are
few (``platform/fdbudget.py``), files are not: a :class:`FileCache` keeps the files that hold a
descriptor, least recently used first, and past a budget lets the least recently used ones go
(``evict``), skipping those a program still holds (a descriptor, a mapping: only the file
knows, see :func:`occlum.platform.fdbudget.opened_elsewhere`).  A file let go keeps its
contents where it costs no descriptor and takes a fresh one at its next use.

The same pattern as SEFS's volume cache (``SefsFs.evict``), with the file deciding how it is
let go: a ramfs file keeps its bytes in the supervisor, a tmpfs file its host file by name.
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from occlum.abi.errors import SyscallError
from occlum.platform.fdbudget import lasting

__all__ = ["CACHED_FILES", "Evictable", "FileCache"]

# Files whose contents keep a descriptor before the least recently used unheld ones are let go
CACHED_FILES = 1024


class Evictable(Protocol):
    def evictable(self) -> bool:
        """Whether the descriptor may be let go now (no program holds the file)."""
        ...

    def evict(self) -> None:
        """Let the descriptor go; the next use takes a new one with the same contents."""
        ...


F = TypeVar("F", bound=Evictable)


class FileCache(Generic[F]):
    """The files holding a descriptor, least recently used first; ``budget`` of them are kept
    (fewer once a pass lets some go), more only while programs hold them."""

    __slots__ = ("_evict_at", "_files", "budget")

    def __init__(self, budget: int = CACHED_FILES) -> None:
        self.budget = budget
        self._files: OrderedDict[F, None] = OrderedDict()
        self._evict_at = budget

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, f: object) -> bool:
        return f in self._files

    def used(self, f: F) -> None:
        """``f`` holds a descriptor and was just used."""
        files = self._files
        if f in files:
            files.move_to_end(f)
            return
        files[f] = None
        if len(files) > self._evict_at:
            self.evict(self.budget * 3 // 4, keep=f)

    def discard(self, f: F) -> None:
        """``f`` holds no descriptor any more (it was freed)."""
        self._files.pop(f, None)

    def evict(self, target: int, keep: F | None = None) -> None:
        """Let the least recently used files go, down to ``target`` holding a descriptor; the
        ones a program holds stay, as recently used.  The next pass waits until twice as many
        files as stayed hold one, so that a program holding many files open does not make
        every new file scan them."""
        files = self._files
        for f in list(files):
            if len(files) <= target:
                break
            if f is keep:
                continue
            if f.evictable():
                f.evict()
                del files[f]
            else:
                files.move_to_end(f)
        self._evict_at = max(self.budget, 2 * len(files))

    def descriptor(self, make: Callable[[], int]) -> int:
        """A new descriptor from ``make`` that lives as long as a file's contents
        (:func:`.fdbudget.lasting`); when the supervisor's descriptors run short, every file
        nobody holds is let go first."""
        try:
            return lasting(make())
        except SyscallError as e:
            if e.errno != errno.EMFILE:
                raise
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE):
                raise
        self.evict(0)
        return lasting(make())
