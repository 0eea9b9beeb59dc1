"""The page cache of a SEFS volume: which files' contents are loaded in memfds, and letting go.

A SEFS file has a memfd only while it is used.  Past :data:`CACHED_FILES` loaded files, and
whenever a memfd would take one of the supervisor's reserved descriptors, the least recently
used files are let go if their contents are committed and no program holds them
(:meth:`SefsFile.evictable <occlum.fs.sefs.files.SefsFile.evictable>`), so that the files a
volume holds or a program touches are not bounded by host descriptors.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.platform.fdbudget import lasting

if TYPE_CHECKING:
    from occlum.fs.sefs.files import SefsFile

__all__ = ["CACHED_FILES", "FileCache"]

# Loaded file contents (memfds) kept before the least recently used unheld ones are let go
CACHED_FILES = 1024


class FileCache:
    """The loaded files of one volume, least recently used first."""

    def __init__(self) -> None:
        self._files: OrderedDict[SefsFile, None] = OrderedDict()
        self._evict_at = CACHED_FILES

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[SefsFile]:
        return iter(list(self._files))

    def new_memfd(self, name: str) -> int:
        """A memfd for a file's contents; when the supervisor's descriptors run short, the
        files nobody holds are let go first."""
        try:
            return lasting(os.memfd_create(name, os.MFD_CLOEXEC))
        except SyscallError as e:
            if e.errno != errno.EMFILE:
                raise
        self.evict(0)
        return lasting(os.memfd_create(name, os.MFD_CLOEXEC))

    def loaded(self, f: SefsFile) -> None:
        if f.nlink == 0:
            # an unnamed O_TMPFILE file: its contents live in its memfd only, and the cache
            # must not keep it alive (it is freed with its inode); named later, it joins
            return
        self._files[f] = None
        if len(self._files) > self._evict_at:
            self.evict(CACHED_FILES * 3 // 4, keep=f)

    def used(self, f: SefsFile) -> None:
        if f in self._files:
            self._files.move_to_end(f)
        else:
            self.loaded(f)

    def forget(self, f: SefsFile) -> None:
        self._files.pop(f, None)

    def clear(self) -> None:
        self._files.clear()

    def after_commit(self) -> None:
        """A commit made files evictable: let go of the oldest if there are too many."""
        if len(self._files) > self._evict_at:
            self.evict(CACHED_FILES * 3 // 4)

    def evict(self, target: int, keep: SefsFile | None = None) -> None:
        """Close the memfds of the least recently used files, down to ``target`` loaded ones:
        only files whose contents are committed and that no program holds (a descriptor, a
        mapping: :func:`.fdbudget.opened_elsewhere`) go; the others stay, as recently used.
        The next pass waits until twice as many files as stayed are loaded, so that a
        program holding many files open does not make every load scan them."""
        cache = self._files
        for f in list(cache):
            if len(cache) <= target:
                break
            if f is keep:
                continue
            if f.evictable():
                f.evict()
                del cache[f]
            else:
                cache.move_to_end(f)
        self._evict_at = max(CACHED_FILES, 2 * len(cache))
