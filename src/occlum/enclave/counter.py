"""The simulated platform's monotonic counters: rollback protection for whole volumes.

A sealed volume can check every object against the tree of tags its superblock roots, but not
that the superblock itself is the newest: a copy of the whole storage directory taken last
week opens with the same key. SGX platforms answered with monotonic counters kept outside the
enclave's storage; the simulated platform keeps them next to its key, one 8-byte file per
volume under ``<platform key directory>/counters/``, named by the volume's random id.

A volume raises its counter only after a commit is durable, so the counter never runs ahead of
what storage holds; on mount a volume whose newest commit is *older* than its counter has been
rolled back. The counter file is written without ``fsync``: after a power cut it may lag
behind the volume, which only weakens the check for that one commit, never fails a good mount.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

from occlum.abi.errors import SyscallError
from occlum.enclave.keys import platform_key_path

__all__ = ["MonotonicCounters", "platform_counters"]

_VALUE = struct.Struct("<Q")


class MonotonicCounters:
    """Counters in ``directory`` (created 0700 on first use), keyed by a volume's 16-byte id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: dict[bytes, int] = {}

    def _fd(self, vid: bytes) -> int:
        fd = self._fds.get(vid)
        if fd is None:
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(
                    self.directory / vid.hex(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            except OSError as e:
                raise SyscallError(
                    e.errno or errno.EIO, f"monotonic counter in {self.directory}: {e.strerror}"
                )
            self._fds[vid] = fd
        return fd

    def read(self, vid: bytes) -> int:
        """The counter's value; 0 for a volume this platform has not seen."""
        raw = os.pread(self._fd(vid), _VALUE.size, 0)
        return _VALUE.unpack(raw)[0] if len(raw) == _VALUE.size else 0

    def advance(self, vid: bytes, value: int) -> None:
        """Raise the counter to ``value`` (never lowers it)."""
        if value > self.read(vid):
            os.pwrite(self._fd(vid), _VALUE.pack(value), 0)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def platform_counters() -> MonotonicCounters:
    """The counters of the platform whose key is at :func:`platform_key_path`."""
    return MonotonicCounters(platform_key_path().parent / "counters")
