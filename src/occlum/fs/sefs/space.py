"""SEFS on a full host file system: what still commits, and what is reported.

A database keeps working on a full disk: it refuses what needs room and still deletes.  SEFS
does the same (:meth:`SefsFs.sync <occlum.fs.sefs.volume.SefsFs.sync>`):

- **A file that does not fit stays in memory.**  Extents are written before the record that
  names them; if one fails with ENOSPC (or EDQUOT), that file keeps its committed contents and
  stays to be flushed, its partial objects are removed at once, and the rest of the commit goes
  on.  The file is *unstored*: ``fsync``/``fdatasync``/``syncfs`` of it return ENOSPC, the LibOS
  logs one line for it, and each later commit tries it again.
- **Deletes and truncates always commit.**  If the journal record itself does not fit, the
  commit is made again with what takes no room: metadata, and the data of files that shrink
  (a truncate into the middle of a chunk), at most one chunk; that record, if it deletes
  something or adds no inode, may be written in the room of the *reserve* (:data:`.store.RESERVE`, sized for a record and a
  checkpoint's metadata), which gives back just what it needs and keeps the rest for the
  next ones.  While the reserve is not whole, file data may take only the room the reserve
  does not lack (:meth:`.store.ObjectStore.spare`): writes do not eat what deletes need.
- **Garbage goes at once.**  While the reserve is not whole (the host is full), every commit
  removes the objects the committed state no longer names (the extents of deleted and
  rewritten files), then takes the reserve back when the host has room again.  Otherwise the
  next checkpoint removes them, as it removes any object no state names (a crash between a
  write and its commit, a partial write from before this version).
- **Checkpoints** use the reserve when they move no file data out of the journal; when the
  journal holds file data and the host has no room for it, commits keep appending to the
  journal past its bound until a checkpoint fits.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.fs.sefs.layout import CHUNK
from occlum.fs.sefs.store import RESERVE_MIN, StoreUsage

if TYPE_CHECKING:
    from occlum.fs.sefs.files import SefsFile
    from occlum.fs.sefs.volume import SefsFs
    from occlum.vfs.inode import Inode

__all__ = ["NoRoom", "VolumeUsage", "fits_reserve", "unstored_lines", "volume_usage"]


class NoRoom(SyscallError):
    """A commit made on a full host writes no extent: the file that needs one is unstored."""

    def __init__(self, root: Path) -> None:
        super().__init__(errno.ENOSPC, f"SEFS {root}: no room on the host file system")


def fits_reserve(fs: SefsFs) -> bool:
    """Whether a checkpoint of ``fs`` can be made in the space of the reserve: it moves no
    more file data out of the journal than half the reserve's minimum (the reserve is sized
    for its metadata object besides)."""
    return fs.journal_data() <= RESERVE_MIN // 2


def unstored_lines(unstored: dict[SefsFile, str], inode: Inode | None) -> list[str]:
    """The reasons of the files in ``unstored`` (of ``inode`` only, if given)."""
    if inode is not None:
        why = unstored.get(inode)  # type: ignore[call-overload]
        return [] if why is None else [why]
    return list(unstored.values())


@dataclass(slots=True, frozen=True)
class VolumeUsage:
    """Live data against what the host stores for it (``occlum fsck``)."""

    files: int
    live_bytes: int  # file contents the volume holds, holes left out
    store: StoreUsage

    @property
    def overhead(self) -> float:
        """Stored bytes per live byte, the reserve left out (1.0: nothing but data)."""
        stored = self.store.total - self.store.reserve_bytes
        return stored / self.live_bytes if self.live_bytes else float(stored > 0)


def volume_usage(fs: SefsFs) -> VolumeUsage:
    """What ``fs`` holds as committed, against what its storage directory holds."""
    files = live = 0
    for f in fs._files():
        files += 1
        live += sum(min(CHUNK, f.size - i * CHUNK) for i in f.chunks)  # holes are not listed
    return VolumeUsage(files, live, fs.store.usage(fs.committed_names()))
