"""Writing an OCI layer blob: a stream that hashes and counts what passes, and a gzip writer
whose output depends on its input only (no name, no time in its header)."""

from __future__ import annotations

import gzip
import hashlib
from typing import Any, Protocol

__all__ = ["HashingWriter", "reproducible_gzip"]


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class HashingWriter:
    """A write-only file that hashes and counts what goes through it to ``sink`` (if any)."""

    def __init__(self, sink: _Sink | None) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


def reproducible_gzip(sink: Any) -> gzip.GzipFile:
    """A gzip writer into ``sink``: no name and no time in the header, so the same input gives
    the same bytes."""
    return gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=6, mtime=0)
