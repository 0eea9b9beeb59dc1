"""Waiting for descriptors to become readable with ``poll``, never ``select``: the LibOS's
processes hold many descriptors (a zygote keeps thousands of verified image files), and
``select`` refuses any numbered 1024 or more (FD_SETSIZE)."""

from __future__ import annotations

import select

__all__ = ["readable"]

_WATCHED = select.POLLIN | select.POLLHUP | select.POLLERR


def readable(fds: list[int], timeout: float | None = None) -> list[int]:
    """The descriptors of ``fds`` that can be read (or are at their end, or failed) within
    ``timeout`` seconds (None: wait as long as it takes); [] when the time ran out.
    InterruptedError propagates, as from ``select``."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, _WATCHED)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return [fd for fd, ev in poller.poll(ms) if ev & _WATCHED]
