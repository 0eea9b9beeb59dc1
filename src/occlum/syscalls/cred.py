"""Credentials and priorities a program's root may change inside the instance.

Programs run without capabilities (and, without host root, in a user namespace whose
``setgroups`` is denied), so the host kernel refuses what root may do on Linux. The LibOS
serves those calls itself, giving no host privilege to the program:

- supplementary groups are LibOS state (``Process.cred.groups``): ``setgroups`` sets them for
  the caller's process, ``getgroups`` and ``/proc/PID/status`` report them, the LibOS's
  permission checks use them; the host process keeps the groups it started with;
- raising a priority (a lower nice value) is done by the supervisor, with its own rights and
  on processes of the instance only; every other ``setpriority`` runs in the kernel as asked.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import replace
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.kernel.procinfo import host_tids
from occlum.syscalls.common import s32

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS, Result
    from occlum.kernel.process import Task

NGROUPS_MAX = 65536
PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
MIN_NICE, MAX_NICE = -20, 19


def sys_setgroups(libos: LibOS, t: Task, size: int, addr: int) -> int:
    n = s32(size)
    if not 0 <= n <= NGROUPS_MAX:
        raise SyscallError(errno.EINVAL, "bad group count")
    p = t.process
    if p.cred.uid != 0:
        raise SyscallError(errno.EPERM, "only root may set groups")
    groups = struct.unpack(f"<{n}I", t.mem.read(addr, 4 * n)) if n else ()
    libos.settle_children(p)  # children forked before keep the groups they had
    # Linux keeps them sorted (getgroups shows that order), duplicates and all
    p.cred = replace(p.cred, groups=tuple(sorted(groups)))
    return 0


def sys_getgroups(libos: LibOS, t: Task, size: int, addr: int) -> int:
    n = s32(size)
    if n < 0:
        raise SyscallError(errno.EINVAL, "negative size")
    groups = t.process.cred.groups
    if n == 0:
        return len(groups)
    if n < len(groups):
        raise SyscallError(errno.EINVAL, "buffer too small")
    if groups:
        t.mem.write(addr, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


def _targets(libos: LibOS, t: Task, which: int, who: int) -> list[int]:
    """The host thread ids ``setpriority(which, who)`` names inside the instance."""
    libos.settle_all()  # processes forked natively that have not called the LibOS yet
    procs = list(libos.procs.values())
    if which == PRIO_PROCESS:
        if who == 0:
            return [t.tid]
        for p in procs:
            tid = host_tids(p.host_pid).get(who)
            if tid is not None:
                return [tid]
        return []
    if which == PRIO_PGRP:
        if who == 0:
            pgrp = os.getpgid(t.process.host_pid)
        else:
            leader = libos.by_pid.get(who)
            if leader is None:
                return []
            pgrp = leader.host_pid
        members = []
        for p in procs:
            try:
                if os.getpgid(p.host_pid) == pgrp:
                    members.append(p)
            except OSError:
                continue  # it has just exited
        return [tid for p in members for tid in host_tids(p.host_pid).values()]
    # PRIO_USER: every process of the instance has the one uid, root's (0 for ``who`` 0)
    if who != t.process.cred.uid:
        return []
    return [tid for p in procs for tid in host_tids(p.host_pid).values()]


def sys_setpriority(libos: LibOS, t: Task, which: int, who: int, prio: int) -> Result:
    """Raising a priority needs CAP_SYS_NICE, which programs lack: the supervisor does it for
    them, inside the instance only (and as far as its own rights go: EACCES past them). Any
    other request is the kernel's, with its own answer."""
    from occlum.kernel.libos import PROCEED

    which, who = s32(which), s32(who)
    nice = min(max(s32(prio), MIN_NICE), MAX_NICE)
    if which not in (PRIO_PROCESS, PRIO_PGRP, PRIO_USER) or who < 0:
        return PROCEED
    try:
        targets = _targets(libos, t, which, who)
        current = [os.getpriority(os.PRIO_PROCESS, tid) for tid in targets]
    except OSError:
        return PROCEED  # a target went away: the kernel answers as it finds things now
    if not targets or all(nice >= c for c in current):
        return PROCEED
    for tid in targets:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:
            continue
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EACCES, "beyond the LibOS's own rights")
    return 0
