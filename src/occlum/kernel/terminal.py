"""``/dev/tty``: the controlling terminal of the process that opens it.

The supervisor cannot open "its" ``/dev/tty`` for a program: it may have no terminal (a
started instance's server), or another one than the program (a program inside that took one
of the instance's pseudo-terminals, an ``occlum exec`` client's). The kernel names the
program's terminal by device number only (``tty_nr`` in ``/proc/PID/stat``), and the host's
and the instance's pseudo-terminals share those numbers; so the terminal is found as a
descriptor that holds it — the caller's own, else its session leader's, whose terminal it
is — and reopened through ``/proc``, a new open of that very terminal. The supervisor's own
terminal (`occlum run` from a shell) and the instance's devpts are the last resorts.
"""

from __future__ import annotations

import errno
import os
import stat

from occlum.abi.errors import SyscallError
from occlum.fs.devpts import DevPtsFs
from occlum.vfs.inode import HOST_OPEN_MASK

__all__ = ["open_controlling_terminal", "terminal_foreground"]


def _session_and_tty(host_pid: int) -> tuple[int, int]:
    try:
        with open(f"/proc/{host_pid}/stat", "rb") as f:
            text = f.read()
        rest = text[text.rindex(b")") + 2 :].split()
        return int(rest[3]), int(rest[4])  # session, tty_nr
    except (OSError, ValueError, IndexError):
        raise SyscallError(errno.ESRCH, "the caller has gone")


def _reopen_held(host_pid: int, tty: int, flags: int) -> int | None:
    """A new open of terminal ``tty`` through a descriptor of ``host_pid`` that holds it."""
    base = f"/proc/{host_pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return None
    for name in sorted(names, key=int):
        path = f"{base}/{name}"
        try:
            st = os.stat(path)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != tty:
                continue
            fd = os.open(path, flags)
        except OSError:
            continue  # closed meanwhile, or not ours to reopen
        if os.fstat(fd).st_rdev == tty:  # the number was not reused for something else
            return fd
        os.close(fd)
    return None


def open_controlling_terminal(host_pid: int, flags: int, ptys: DevPtsFs) -> int:
    """A new host descriptor of the controlling terminal of process ``host_pid``; ENXIO if it
    has none, as ``open("/dev/tty")`` gives on Linux."""
    flags = (flags & HOST_OPEN_MASK) | os.O_CLOEXEC | os.O_NOCTTY
    session, tty = _session_and_tty(host_pid)
    if tty == 0:
        raise SyscallError(errno.ENXIO, "the caller has no controlling terminal")
    for holder in (host_pid, session):
        if holder > 0:
            fd = _reopen_held(holder, tty, flags)
            if fd is not None:
                return fd
    try:
        fd = os.open("/dev/tty", flags)
        if os.fstat(fd).st_rdev == tty:
            return fd
        os.close(fd)
    except OSError:
        pass
    if os.major(tty) == 136 and ptys.fd >= 0:
        name = b"%d" % os.minor(tty)
        try:
            if ptys.host_stat(name).st_rdev == tty:
                return ptys.open_host(name, flags)
        except SyscallError:
            pass
    raise SyscallError(errno.ENXIO, "the caller's controlling terminal is held by no process")


def terminal_foreground() -> bool:
    """Whether this process is the foreground process group of a terminal on its stdin."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False
