"""Where a host file holds data: its holes are found with SEEK_DATA/SEEK_HOLE, never read."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

__all__ = ["data_ranges"]


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ``[start, end)`` ranges of ``fd``'s first ``size`` bytes that hold data, in order.

    A hole (never written, truncated up, punched) costs nothing; a memfd answers per page.
    """
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data past pos
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end
