"""Credentials: user and group ids, supplementary groups and capabilities, kept by the LibOS
per thread, and the priorities a program's root may raise.

Programs run on the host without capabilities (and, without host root, in a user namespace
whose ``setgroups`` is denied): the host kernel would refuse every change of id. So the LibOS
holds each thread's credentials itself (:class:`~occlum.vfs.cred.Cred`) and serves every call
that reads or changes them, with Linux's rules (``kernel/sys.c``, ``kernel/groups.c``,
``security/commoncap.c``): root (CAP_SETUID, CAP_SETGID) may take any id; others move only
among their real, effective and saved ids; leaving uid 0 drops capabilities, coming back to an
effective uid 0 restores the permitted ones. Every permission check of the LibOS's file systems,
signals between the instance's processes, ``/proc/PID/status`` and the auxiliary vector of a
new program read them. The host process keeps the ids it started with.

A change applies to the calling thread, as the system call does on Linux (glibc then makes
every thread of the process call it). Children forked before the change keep what they had.

Raising a priority (a lower nice value) is done by the supervisor, with its own rights and on
processes of the instance only; every other ``setpriority`` runs in the kernel as asked.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import replace
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.kernel.api import ID_UNCHANGED, PROCEED
from occlum.kernel.process import Task
from occlum.kernel.procinfo import host_tids, leader_cred, read_proc
from occlum.vfs.cred import (
    CAP_LAST_CAP,
    CAP_SETGID,
    CAP_SETPCAP,
    CAP_SETUID,
    CAP_SYS_NICE,
    FS_CAPS,
    Cred,
)

if TYPE_CHECKING:
    from occlum.kernel.api import Result
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Process

NGROUPS_MAX = 65536
PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
MIN_NICE, MAX_NICE = -20, 19
UNCHANGED = ID_UNCHANGED  # (uid_t) -1: "leave this id as it is"; never a valid id
# capget/capset header versions (linux/capability.h): v1 has one 32-bit word per set,
# v2 and v3 two
CAP_V1, CAP_V2, CAP_V3 = 0x19980330, 0x20071026, 0x20080522


def set_cred(libos: LibOS, t: Task, new: Cred) -> None:
    """Give the calling thread ``new`` credentials; children forked before keep theirs."""
    if new == t.cred:
        return
    p = t.process
    libos.proctable.settle_children(p)
    # the process's other threads keep what they have: those the LibOS has not met yet are
    # met now, with the credentials they were made with
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{p.host_pid}/task")]
    except OSError:
        tids = []
    for tid in tids:
        if tid not in libos.proctable.tasks:
            p.tids.add(tid)
            libos.proctable.tasks[tid] = Task(tid, p, cred=t.cred)
    t.cred = new
    p.cred = new  # what threads made from now on are taken to have
    libos.proctable.mark(t.tid, new)  # and what the children it forks have, whatever comes


def _fix_caps(old: Cred, new: Cred) -> Cred:
    """Linux's cap_emulate_setxuid for a change of user ids (not of the fsuid alone):
    leaving uid 0 in all of real, effective and saved drops every capability (the permitted
    ones stay with PR_SET_KEEPCAPS); an effective uid leaving 0 drops the effective set, one
    coming back to 0 gets the permitted set."""
    eff, perm = new.cap_effective, new.cap_permitted
    was_root = 0 in (old.uid, old.euid, old.suid)
    if was_root and 0 not in (new.uid, new.euid, new.suid) and not new.keepcaps:
        perm = eff = 0
    if old.euid == 0 and new.euid != 0:
        eff = 0
    if old.euid != 0 and new.euid == 0:
        eff = perm
    return _fix_fs_caps(old, replace(new, cap_effective=eff, cap_permitted=perm))


def _fix_fs_caps(old: Cred, new: Cred) -> Cred:
    """An fsuid leaving 0 drops the file-system capabilities from the effective set, one
    coming back to 0 gets the permitted ones back (cap_task_fix_setuid, LSM_SETID_FS)."""
    eff = new.cap_effective
    if old.fsuid == 0 and new.fsuid != 0:
        eff &= ~FS_CAPS
    elif old.fsuid != 0 and new.fsuid == 0:
        eff |= new.cap_permitted & FS_CAPS
    return replace(new, cap_effective=eff)


def sys_setuid(libos: LibOS, t: Task, uid: int) -> int:
    old = t.cred
    if uid == UNCHANGED:
        raise SyscallError(errno.EINVAL, "not a valid user id")
    if old.capable(CAP_SETUID):
        new = replace(old, uid=uid, euid=uid, suid=uid, fsuid=uid)
    elif uid in (old.uid, old.suid):
        new = replace(old, euid=uid, fsuid=uid)
    else:
        raise SyscallError(errno.EPERM, "not one of the caller's user ids (no CAP_SETUID)")
    set_cred(libos, t, _fix_caps(old, new))
    return 0


def sys_setgid(libos: LibOS, t: Task, gid: int) -> int:
    old = t.cred
    if gid == UNCHANGED:
        raise SyscallError(errno.EINVAL, "not a valid group id")
    if old.capable(CAP_SETGID):
        new = replace(old, gid=gid, egid=gid, sgid=gid, fsgid=gid)
    elif gid in (old.gid, old.sgid):
        new = replace(old, egid=gid, fsgid=gid)
    else:
        raise SyscallError(errno.EPERM, "not one of the caller's group ids (no CAP_SETGID)")
    set_cred(libos, t, new)
    return 0


def _setre(old: tuple[int, int, int], real: int, eff: int, privileged: bool) -> tuple[int, ...]:
    """setreuid/setregid: (real, effective, saved) after the call, or EPERM."""
    r, e, s = old
    new_r = r if real == UNCHANGED else real
    new_e = e if eff == UNCHANGED else eff
    if not privileged:
        if real != UNCHANGED and real not in (r, e):
            raise SyscallError(errno.EPERM, "the real id may become the effective one only")
        if eff != UNCHANGED and eff not in (r, e, s):
            raise SyscallError(errno.EPERM, "not one of the caller's ids")
    # the saved id follows the effective one when the real id is set, or the effective id
    # is set to something other than the old real id
    new_s = new_e if real != UNCHANGED or (eff != UNCHANGED and eff != r) else s
    return new_r, new_e, new_s


def sys_setreuid(libos: LibOS, t: Task, ruid: int, euid: int) -> int:
    old = t.cred
    r, e, s = _setre((old.uid, old.euid, old.suid), ruid, euid, old.capable(CAP_SETUID))
    set_cred(libos, t, _fix_caps(old, replace(old, uid=r, euid=e, suid=s, fsuid=e)))
    return 0


def sys_setregid(libos: LibOS, t: Task, rgid: int, egid: int) -> int:
    old = t.cred
    r, e, s = _setre((old.gid, old.egid, old.sgid), rgid, egid, old.capable(CAP_SETGID))
    set_cred(libos, t, replace(old, gid=r, egid=e, sgid=s, fsgid=e))
    return 0


def _setres(
    old: tuple[int, int, int], asked: tuple[int, int, int], privileged: bool
) -> tuple[int, ...]:
    if not privileged:
        for value in asked:
            if value != UNCHANGED and value not in old:
                raise SyscallError(errno.EPERM, "not one of the caller's ids")
    return tuple(o if a == UNCHANGED else a for o, a in zip(old, asked, strict=True))


def sys_setresuid(libos: LibOS, t: Task, ruid: int, euid: int, suid: int) -> int:
    old = t.cred
    asked = (ruid, euid, suid)
    r, e, s = _setres((old.uid, old.euid, old.suid), asked, old.capable(CAP_SETUID))
    set_cred(libos, t, _fix_caps(old, replace(old, uid=r, euid=e, suid=s, fsuid=e)))
    return 0


def sys_setresgid(libos: LibOS, t: Task, rgid: int, egid: int, sgid: int) -> int:
    old = t.cred
    asked = (rgid, egid, sgid)
    r, e, s = _setres((old.gid, old.egid, old.sgid), asked, old.capable(CAP_SETGID))
    set_cred(libos, t, replace(old, gid=r, egid=e, sgid=s, fsgid=e))
    return 0


def sys_setfsuid(libos: LibOS, t: Task, fsuid: int) -> int:
    """Returns the old fsuid whether or not it changed (Linux's contract)."""
    old = t.cred
    if fsuid != UNCHANGED and (
        fsuid in (old.uid, old.euid, old.suid, old.fsuid) or old.capable(CAP_SETUID)
    ):
        set_cred(libos, t, _fix_fs_caps(old, replace(old, fsuid=fsuid)))
    return old.fsuid


def sys_setfsgid(libos: LibOS, t: Task, fsgid: int) -> int:
    old = t.cred
    if fsgid != UNCHANGED and (
        fsgid in (old.gid, old.egid, old.sgid, old.fsgid) or old.capable(CAP_SETGID)
    ):
        set_cred(libos, t, replace(old, fsgid=fsgid))
    return old.fsgid


def sys_getuid(libos: LibOS, t: Task) -> int:
    return t.cred.uid


def sys_geteuid(libos: LibOS, t: Task) -> int:
    return t.cred.euid


def sys_getgid(libos: LibOS, t: Task) -> int:
    return t.cred.gid


def sys_getegid(libos: LibOS, t: Task) -> int:
    return t.cred.egid


def _put_ids(t: Task, addrs: tuple[int, int, int], ids: tuple[int, int, int]) -> int:
    for addr, value in zip(addrs, ids, strict=True):
        t.mem.write(addr, struct.pack("<I", value))
    return 0


def sys_getresuid(libos: LibOS, t: Task, ruid: int, euid: int, suid: int) -> int:
    c = t.cred
    return _put_ids(t, (ruid, euid, suid), (c.uid, c.euid, c.suid))


def sys_getresgid(libos: LibOS, t: Task, rgid: int, egid: int, sgid: int) -> int:
    c = t.cred
    return _put_ids(t, (rgid, egid, sgid), (c.gid, c.egid, c.sgid))


def exec_cred(old: Cred) -> Cred:
    """The credentials a program starts with after execve (no set-id bit is honoured: the
    instance runs under no_new_privs, as Linux would then ignore them too). Root's rule of
    cap_bprm_creds_from_file: a real or effective uid 0 is given every capability the LibOS
    bounds (effective only with an effective uid 0); anyone else keeps none."""
    if 0 in (old.uid, old.euid):
        perm = old.cap_inheritable | old.cap_bounding
        eff = perm if old.euid == 0 else 0
    else:
        perm = eff = 0
    if (
        old.suid == old.fsuid == old.euid
        and old.sgid == old.fsgid == old.egid
        and old.cap_permitted == perm
        and old.cap_effective == eff
        and not old.keepcaps
    ):
        return old  # the usual exec changes nothing: no copy (dataclasses.replace is slow)
    return replace(
        old,
        suid=old.euid,
        fsuid=old.euid,
        sgid=old.egid,
        fsgid=old.egid,
        cap_permitted=perm,
        cap_effective=eff,
        keepcaps=False,
    )


# -- supplementary groups -------------------------------------------------------------------
def sys_setgroups(libos: LibOS, t: Task, size: int, addr: int) -> int:
    n = size
    if not 0 <= n <= NGROUPS_MAX:
        raise SyscallError(errno.EINVAL, "bad group count")
    if not t.cred.capable(CAP_SETGID):
        raise SyscallError(errno.EPERM, "setting groups needs CAP_SETGID")
    groups = struct.unpack(f"<{n}I", t.mem.read(addr, 4 * n)) if n else ()
    # Linux keeps them sorted (getgroups shows that order), duplicates and all
    set_cred(libos, t, replace(t.cred, groups=tuple(sorted(groups))))
    return 0


def sys_getgroups(libos: LibOS, t: Task, size: int, addr: int) -> int:
    n = size
    if n < 0:
        raise SyscallError(errno.EINVAL, "negative size")
    groups = t.cred.groups
    if n == 0:
        return len(groups)
    if n < len(groups):
        raise SyscallError(errno.EINVAL, "buffer too small")
    if groups:
        t.mem.write(addr, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


# -- capabilities ---------------------------------------------------------------------------
def _cap_header(t: Task, hdr: int) -> tuple[int, int]:
    """(number of 32-bit words per set, pid) from a capget/capset header; an unknown version
    is answered with the preferred one written back and EINVAL, as Linux does."""
    version, pid = struct.unpack("<Ii", t.mem.read(hdr, 8))
    if version == CAP_V1:
        return 1, pid
    if version in (CAP_V2, CAP_V3):
        return 2, pid
    t.mem.write(hdr, struct.pack("<I", CAP_V3))
    raise SyscallError(errno.EINVAL, f"unknown capability version {version:#x}")


def _cred_of_pid(libos: LibOS, t: Task, pid: int) -> Cred:
    if pid == 0 or pid == t.process.pid:
        return t.cred
    if pid < 0:
        raise SyscallError(errno.EINVAL, "negative pid")
    target = libos.proctable.find(pid)
    if target is None:
        raise SyscallError(errno.ESRCH, "no such process")
    return leader_cred(libos, target)


def group_members(libos: LibOS, t: Task, pgid: int) -> list[Process]:
    """The instance's processes in process group ``pgid`` (0: the caller's), in the
    instance's PID namespace."""
    if pgid == 0:
        pgrp = os.getpgid(t.process.host_pid)
    else:
        leader = libos.proctable.by_pid.get(pgid)
        if leader is None:
            return []
        pgrp = leader.host_pid
    members = []
    for p in list(libos.proctable.procs.values()):
        try:
            if os.getpgid(p.host_pid) == pgrp:
                members.append(p)
        except OSError:
            continue  # it has just exited
    return members


def ns_tid(t: Task) -> int:
    """The calling thread's id in the instance's PID namespace."""
    if t.tid == t.process.host_pid:
        return t.process.pid
    text = read_proc(f"/proc/{t.tid}/status")
    at = text.index(b"\nNSpid:") + 7
    return int(text[at : text.index(b"\n", at)].split()[-1])


def sys_capget(libos: LibOS, t: Task, hdr: int, data: int) -> int:
    try:
        words, pid = _cap_header(t, hdr)
    except SyscallError as exc:
        if exc.errno == errno.EINVAL and data == 0:
            return 0  # a probe for the version
        raise
    if data == 0:
        return 0
    c = _cred_of_pid(libos, t, pid)
    out = b"".join(
        struct.pack(
            "<III",
            c.cap_effective >> s & 0xFFFFFFFF,
            c.cap_permitted >> s & 0xFFFFFFFF,
            c.cap_inheritable >> s & 0xFFFFFFFF,
        )
        for s in range(0, 32 * words, 32)
    )
    t.mem.write(data, out)
    return 0


def sys_capset(libos: LibOS, t: Task, hdr: int, data: int) -> int:
    words, pid = _cap_header(t, hdr)
    if pid not in (0, t.process.pid) and pid != ns_tid(t):
        raise SyscallError(errno.EPERM, "only the caller's own capabilities can be set")
    raw = struct.unpack(f"<{3 * words}I", t.mem.read(data, 12 * words))
    eff = perm = inh = 0
    for i in range(words):
        eff |= raw[3 * i] << (32 * i)
        perm |= raw[3 * i + 1] << (32 * i)
        inh |= raw[3 * i + 2] << (32 * i)
    old = t.cred
    inh_limit = old.cap_inheritable | (
        old.cap_bounding if old.capable(CAP_SETPCAP) else old.cap_permitted
    )
    if inh & ~inh_limit:
        raise SyscallError(errno.EPERM, "inheritable capabilities beyond the permitted ones")
    if perm & ~old.cap_permitted:
        raise SyscallError(errno.EPERM, "permitted capabilities can only be dropped")
    if eff & ~perm:
        raise SyscallError(errno.EPERM, "effective capabilities beyond the permitted ones")
    set_cred(libos, t, replace(old, cap_effective=eff, cap_permitted=perm, cap_inheritable=inh))
    return 0


# prctl options the filter sends here (native.PRCTL_SERVED; the others run natively)
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS, PR_CAPBSET_READ, PR_CAPBSET_DROP = 7, 8, 23, 24


def sys_prctl(libos: LibOS, t: Task, option: int, arg2: int, *_: int) -> Result:
    """The options that read or change LibOS capabilities: PR_SET_KEEPCAPS (permitted
    capabilities kept when uid 0 is left; cleared by execve) and the bounding set."""

    c = t.cred
    if option == PR_GET_KEEPCAPS:
        return int(c.keepcaps)
    if option == PR_SET_KEEPCAPS:
        if arg2 not in (0, 1):
            raise SyscallError(errno.EINVAL, "keepcaps is 0 or 1")
        set_cred(libos, t, replace(c, keepcaps=bool(arg2)))
        return 0
    if option in (PR_CAPBSET_READ, PR_CAPBSET_DROP):
        if not 0 <= arg2 <= CAP_LAST_CAP:
            raise SyscallError(errno.EINVAL, "no such capability")
        if option == PR_CAPBSET_READ:
            return c.cap_bounding >> arg2 & 1
        if not c.capable(CAP_SETPCAP):
            raise SyscallError(errno.EPERM, "dropping from the bounding set needs CAP_SETPCAP")
        set_cred(libos, t, replace(c, cap_bounding=c.cap_bounding & ~(1 << arg2)))
        return 0
    return PROCEED


# -- priorities -----------------------------------------------------------------------------
def _targets(libos: LibOS, t: Task, which: int, who: int) -> list[int]:
    """The host thread ids ``setpriority(which, who)`` names inside the instance."""
    libos.proctable.settle_all()  # processes forked natively that have not called the LibOS yet
    procs = list(libos.proctable.procs.values())
    if which == PRIO_PROCESS:
        if who == 0:
            return [t.tid]
        for p in procs:
            tid = host_tids(p.host_pid).get(who)
            if tid is not None:
                return [tid]
        return []
    if which == PRIO_PGRP:
        members = group_members(libos, t, who)
        return [tid for p in members for tid in host_tids(p.host_pid).values()]
    # PRIO_USER: the processes whose real uid is ``who`` (0: the caller's)
    uid = who or t.cred.uid
    return [tid for p in procs if p.cred.uid == uid for tid in host_tids(p.host_pid).values()]


def sys_setpriority(libos: LibOS, t: Task, which: int, who: int, prio: int) -> Result:
    """Raising a priority needs CAP_SYS_NICE, which programs lack: the supervisor does it for
    them, inside the instance only (and as far as its own rights go: EACCES past them). Any
    other request is the kernel's, with its own answer."""

    nice = min(max(prio, MIN_NICE), MAX_NICE)
    if which not in (PRIO_PROCESS, PRIO_PGRP, PRIO_USER) or who < 0:
        return PROCEED
    if not t.cred.capable(CAP_SYS_NICE):
        return PROCEED  # the kernel refuses a raise as Linux does without CAP_SYS_NICE
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
