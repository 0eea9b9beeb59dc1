"""SEFS: the writable encrypted (or integrity-only) file system of Occlum.

The mounted volume and its commit are in :mod:`.volume` (which names the other rooms); what
reaches the host, sealed, and the atomic superblock switch are in :mod:`.store`.
"""

from __future__ import annotations

from occlum.fs.sefs.volume import CHUNK, SEFS_MAGIC, SefsFs

__all__ = ["CHUNK", "SEFS_MAGIC", "SefsFs"]
