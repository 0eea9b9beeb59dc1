"""The supervisor's descriptors: a share kept for its own work.

The supervisor holds a host descriptor for every LibOS file whose contents it keeps in the
page cache now (a memfd per ramfs or SEFS file in use, per cached image file; a file no
program holds lets its own go, see ``fs/filecache.py``), and needs a few more for the work
of every call: a pidfd, a ``/proc/PID/mem`` handle and a ``/proc/PID/fd`` directory for each
new process, a status file read at discovery, the descriptor it reopens to donate at an open.
All come from one table, with the same RLIMIT_NOFILE as the programs (a supervisor without
CAP_SYS_RESOURCE cannot go above it). A program holding thousands of distinct LibOS files
would otherwise fill the
supervisor's table with their memfds, and a child it forks would find no descriptor left for
its discovery (its every call failed).

Descriptors are numbered lowest first, so one that lands among the last ``RESERVE`` numbers
below the limit means that fewer than ``RESERVE`` remain: a descriptor that lives as long as a
file is refused there (EMFILE, as a program out of descriptors gets natively), and the last
numbers stay for the supervisor's passing needs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
from collections.abc import Callable

from occlum.abi.errors import SyscallError

RESERVE = 64


# Called when the supervisor's descriptors run short, before an EMFILE: a process holding
# descriptors it can do without (a run forked by the zygote: the verified image files the
# zygote keeps, inherited, which only spare it a verification) lets them go and says whether
# it let any go. It must not raise.
on_short: Callable[[], bool] | None = None


def lasting(fd: int) -> int:
    """``fd``, to be kept for as long as a file lives; when it took one of the descriptors kept
    for the supervisor's work, moved below them if :data:`on_short` frees some, else closed and
    EMFILE."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or fd < soft - RESERVE:
        return fd
    if on_short is not None and on_short():
        try:
            low = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError:
            low = -1
        if 0 <= low < soft - RESERVE:
            os.close(fd)
            return low
        if low >= 0:
            os.close(low)
    os.close(fd)
    raise SyscallError(errno.EMFILE, "the supervisor's descriptors are nearly all in use")


def opened_elsewhere(fd: int) -> bool:
    """Whether the file behind ``fd`` (a page-cache memfd of the supervisor's) has an open file
    description besides ``fd``'s own: a descriptor some process holds, one in flight in a
    socket, a mapping.  The kernel counts them (``i_readcount``, ``i_writecount``) and grants a
    write lease only when there is none; a memfd's own creating description counts for
    neither, so the probe is a fresh read-only description of it, the only one the lease
    allows.  Any failure (leases disabled, another kernel's counting) answers True: the file
    is then treated as held, never the other way round."""
    try:
        # O_NONBLOCK: an open never waits for a lease to be broken (programs get none)
        probe = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        fcntl.fcntl(probe, fcntl.F_SETLEASE, fcntl.F_WRLCK)  # released with the probe
        return False
    except OSError:
        return True
    finally:
        os.close(probe)


def opened_besides(fd: int) -> bool:
    """Like :func:`opened_elsewhere`, for a file whose own descriptor ``fd`` is a read-only
    open file description (a file of a host tmpfs instance: made writable by ``O_TMPFILE``,
    then kept through a read-only reopen): that description counts, so the lease is taken on
    ``fd`` itself, which allows it only when there is no other, and released at once."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
    except OSError:
        return True
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


# Called with a descriptor whose last close is slow, before it is closed here; a process that
# can hand the descriptor to a helper sets it (the zygote's children: the helper then drops
# the last reference, off the run's path). It must not block.
hand_off: Callable[[int], None] | None = None


def close_slow(fd: int) -> None:
    """Close ``fd``, an inotify instance: its last close waits for the kernel's SRCU grace
    period (10-20 ms here, paid at every tree's end and again at exit), so it is handed to
    :data:`hand_off` first when one is set."""
    if hand_off is not None:
        try:
            hand_off(fd)
        except OSError:
            pass
    os.close(fd)
