"""What SEFS needs of the platform's monotonic counters: one counter per volume id, read and
raised. The platform's own (``occlum.enclave.counter.MonotonicCounters``) is handed in by the
kernel; SEFS does not import the enclave layer."""

from __future__ import annotations

from typing import Protocol


class Counters(Protocol):
    def read(self, vid: bytes) -> int:
        """The counter of volume ``vid``; 0 for a volume the platform has not seen."""
        ...

    def advance(self, vid: bytes, value: int) -> None:
        """Raise the counter of volume ``vid`` to ``value`` (never lowers it)."""
        ...
