"""Sending signals: Linux's permission check between the instance's processes, by their LibOS
credentials.

Every process of an instance is the same host user, so the host kernel would let any of them
signal any other. Linux lets a sender signal a target when the sender's real or effective uid
is the target's real or saved uid, when it holds CAP_KILL, or (for SIGCONT) when both are in
one session (``kill_ok_by_cred``, ``check_kill_permission``). The supervisor makes that check
and then lets the kernel deliver the signal as the program sent it (so ``si_pid`` and
``si_uid`` are the kernel's). A sender with CAP_KILL (root) costs only the round trip.

A signal to a group (``kill(0)``, ``kill(-pgrp)``, ``kill(-1)``) reaches, as on Linux, only the
members the sender may signal, and fails with EPERM when there is none: when some but not all
may be signalled, the supervisor sends it to those itself (their ``si_pid`` is then 0, the
sender being outside the instance's PID namespace).
"""

from __future__ import annotations

import errno
import os
import signal
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.kernel.api import PROCEED
from occlum.kernel.procinfo import host_tids, leader_cred, read_proc
from occlum.syscalls.cred import group_members
from occlum.vfs.cred import CAP_KILL, Cred

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Process, Task

_NSIG = 64


def may_signal(sender: Cred, target: Cred) -> bool:
    return (
        sender.capable(CAP_KILL)
        or sender.euid in (target.suid, target.uid)
        or sender.uid in (target.suid, target.uid)
    )


def _same_session(a: Process, b: Process) -> bool:
    try:
        return os.getsid(a.host_pid) == os.getsid(b.host_pid)
    except OSError:
        return False


def _allowed(t: Task, target: Process, cred: Cred, sig: int) -> bool:
    if target is t.process or may_signal(t.cred, cred):
        return True  # (a thread may always signal its own thread group)
    return sig == signal.SIGCONT and _same_session(t.process, target)


def _trivial(t: Task, sig: int) -> bool:
    """Whether the kernel may run the call as made without a look at the target."""
    return t.cred.capable(CAP_KILL) or not 0 <= sig <= _NSIG


def _group(libos: LibOS, t: Task, pid: int) -> list[Process]:
    """The processes ``kill(pid)`` with pid <= 0 names."""
    libos.proctable.settle_all()
    procs = list(libos.proctable.procs.values())
    if pid == -1:  # all but init and the caller
        return [p for p in procs if p.pid != 1 and p is not t.process]
    return group_members(libos, t, -pid)


def sys_kill(libos: LibOS, t: Task, pid: int, sig: int) -> Result:
    if _trivial(t, sig):
        return PROCEED
    if pid > 0:
        target = libos.proctable.find(pid)
        if target is None or _allowed(t, target, leader_cred(libos, target), sig):
            return PROCEED  # (no such process: the kernel's ESRCH)
        raise SyscallError(errno.EPERM, "the target belongs to another user")
    targets = _group(libos, t, pid)
    allowed = [p for p in targets if _allowed(t, p, leader_cred(libos, p), sig)]
    if len(allowed) == len(targets):
        return PROCEED  # (none at all: the kernel's ESRCH)
    if not allowed:
        raise SyscallError(errno.EPERM, "every target belongs to another user")
    for p in allowed:
        if sig:
            try:
                os.kill(p.host_pid, sig)
            except ProcessLookupError:
                continue
    return 0


def _thread_target(libos: LibOS, tgid: int | None, tid: int) -> tuple[Process, Cred] | None:
    """The process holding LibOS thread ``tid`` (of process ``tgid`` when given) and the
    thread's credentials."""
    if tgid is not None:
        procs = [p] if (p := libos.proctable.find(tgid)) is not None else []
    else:
        p = libos.proctable.find(tid)
        procs = [p] if p is not None else list(libos.proctable.procs.values())
    for p in procs:
        host_tid = p.host_pid if tid == p.pid else host_tids(p.host_pid).get(tid)
        if host_tid is not None:
            task = libos.proctable.tasks.get(host_tid)
            return p, task.cred if task is not None else p.cred
    return None


def _signal_thread(libos: LibOS, t: Task, tgid: int | None, tid: int, sig: int) -> Result:
    if _trivial(t, sig) or tid <= 0:
        return PROCEED
    found = _thread_target(libos, tgid, tid)
    if found is None or _allowed(t, found[0], found[1], sig):
        return PROCEED
    raise SyscallError(errno.EPERM, "the target belongs to another user")


def sys_tkill(libos: LibOS, t: Task, tid: int, sig: int) -> Result:
    return _signal_thread(libos, t, None, tid, sig)


def sys_tgkill(libos: LibOS, t: Task, tgid: int, tid: int, sig: int) -> Result:
    return _signal_thread(libos, t, tgid, tid, sig)


def sys_rt_sigqueueinfo(libos: LibOS, t: Task, tgid: int, sig: int, info: int) -> Result:
    if _trivial(t, sig) or tgid <= 0:
        return PROCEED
    target = libos.proctable.find(tgid)
    if target is None or _allowed(t, target, leader_cred(libos, target), sig):
        return PROCEED
    raise SyscallError(errno.EPERM, "the target belongs to another user")


def sys_rt_tgsigqueueinfo(
    libos: LibOS, t: Task, tgid: int, tid: int, sig: int, info: int
) -> Result:
    return _signal_thread(libos, t, tgid, tid, sig)


def sys_pidfd_send_signal(
    libos: LibOS, t: Task, pidfd: int, sig: int, info: int, flags: int
) -> Result:
    """The target is the process the descriptor refers to (its host pid, from the caller's
    fdinfo of it)."""

    if _trivial(t, sig):
        return PROCEED
    try:
        text = read_proc(f"/proc/{t.process.host_pid}/fdinfo/{pidfd}")
        at = text.index(b"\nPid:") + 5
        host_pid = int(text[at : text.index(b"\n", at)])
    except (OSError, ValueError):
        return PROCEED  # not a pidfd: the kernel's EBADF
    target = libos.proctable.find_host(host_pid)
    if target is None or _allowed(t, target, leader_cred(libos, target), sig):
        return PROCEED
    raise SyscallError(errno.EPERM, "the target belongs to another user")
