"""SEFS: the writable encrypted (or integrity-only) file system of Occlum.

The mounted tree and its commit are in :mod:`.volume`; what reaches the host, sealed, and the
atomic superblock switch are in :mod:`.store`.
"""

from __future__ import annotations

from occlum.fs.sefs.volume import CHUNK, SEFS_MAGIC, SefsFs

__all__ = ["CHUNK", "SEFS_MAGIC", "SefsFs"]
