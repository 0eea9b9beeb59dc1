"""Looking at the files of ``/proc/sys/net`` as another network namespace sees them.

The kernel shows in ``/proc/sys/net`` the settings of the network namespace of the thread that
looks (not of a process named in the path, as ``/proc/PID/net`` does), so the supervisor, in
the host's namespace, sees an instance's network of its own only from a thread that joined it:
a short-lived thread here joins it, looks and ends (the namespace goes with the thread).
Joining needs CAP_SYS_ADMIN over both namespaces: the supervisor has it when run by root.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from occlum.platform import native

__all__ = ["in_netns_of"]

T = TypeVar("T")


def in_netns_of(host_pid: int, look: Callable[[], T]) -> T:
    """``look()`` run in the network namespace of host process ``host_pid``; OSError if it
    cannot be joined (gone, or not permitted)."""
    ns = os.open(f"/proc/{host_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    out: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            native.setns(ns, native.CLONE_NEWNET)
            out.append(look())
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    try:
        th = threading.Thread(target=run, name="netns", daemon=True)
        th.start()
        th.join()
    finally:
        os.close(ns)
    if failed:
        raise failed[0]
    return out[0]
