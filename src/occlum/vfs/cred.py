"""Who is asking: a thread's LibOS credentials, and Linux's permission rules that read them.

A :class:`Cred` is Linux's ``struct cred`` for the LibOS: real, effective, saved and file-system
user and group ids, supplementary groups, and capability sets. Programs run on the host with no
capability at all; these are the credentials the LibOS grants and checks: every permission
check of every LibOS file system, signal permissions between the instance's processes, the
calls only root may make. The capabilities root holds are those the LibOS itself honours
(:data:`LIBOS_CAPS`); a capability the host kernel would have to grant (raw sockets, loading
modules, device nodes) is not in any set, so a program asking for it learns it is missing.

The file-system checks use ``fsuid``, ``fsgid``, ``groups`` and the effective set, as Linux's
``generic_permission`` and ``inode_owner_or_capable`` do.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFDIR, S_IFMT, S_ISGID, Stat

if TYPE_CHECKING:
    pass

MAY_EXEC = 1
MAY_WRITE = 2
MAY_READ = 4

# capability numbers (linux/capability.h)
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_LINUX_IMMUTABLE = 9
CAP_SYS_CHROOT = 18
CAP_SYS_ADMIN = 21
CAP_SYS_NICE = 23
CAP_MKNOD = 27
CAP_MAC_OVERRIDE = 32
CAP_LAST_CAP = 40

# What root holds inside: the capabilities whose checks the LibOS makes itself (file
# permissions and owners, signals, ids, chroot, mount and host name, raising priorities)
LIBOS_CAPS = sum(
    1 << c
    for c in (
        CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_KILL,
        CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_SYS_CHROOT, CAP_SYS_ADMIN, CAP_SYS_NICE,
    )
)  # fmt: skip
# The capabilities a change of fsuid between 0 and another id takes away or gives back
# (CAP_FS_MASK of linux/capability.h)
FS_CAPS = sum(
    1 << c
    for c in (
        CAP_CHOWN, CAP_MKNOD, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
        CAP_LINUX_IMMUTABLE, CAP_MAC_OVERRIDE,
    )
)  # fmt: skip


@dataclass(slots=True, frozen=True)
class Cred:
    """One thread's credentials (Linux keeps them per thread; glibc makes every thread of a
    process change them together). Frozen: a change makes a new one, so a child forked before
    the change keeps the one it was forked with."""

    uid: int = 0
    gid: int = 0
    euid: int = 0
    egid: int = 0
    suid: int = 0
    sgid: int = 0
    fsuid: int = 0
    fsgid: int = 0
    groups: tuple[int, ...] = ()  # sorted, as Linux keeps them for getgroups
    cap_inheritable: int = 0
    cap_permitted: int = LIBOS_CAPS
    cap_effective: int = LIBOS_CAPS
    cap_bounding: int = LIBOS_CAPS
    keepcaps: bool = False  # prctl(PR_SET_KEEPCAPS)

    @classmethod
    def user(cls, uid: int, gid: int, groups: tuple[int, ...] = ()) -> Cred:
        """Every id ``uid``/``gid``, as a program of that user starts: capabilities only
        for root."""
        caps = LIBOS_CAPS if uid == 0 else 0
        return cls(uid, gid, uid, gid, uid, gid, uid, gid, tuple(sorted(groups)),
                   cap_permitted=caps, cap_effective=caps)  # fmt: skip

    def capable(self, cap: int) -> bool:
        return bool(self.cap_effective >> cap & 1)

    def in_group(self, gid: int) -> bool:
        """Linux's in_group_p: the file-system gid or a supplementary group."""
        return gid == self.fsgid or gid in self.groups

    def owns(self, st: Stat) -> bool:
        """Linux's inode_owner_or_capable: the owner, or a holder of CAP_FOWNER."""
        return st.uid == self.fsuid or self.capable(CAP_FOWNER)


ROOT = Cred()


def check_access(st: Stat, cred: Cred, want: int) -> None:
    """Raise EACCES unless ``cred`` may ``want`` (MAY_* bits) on a file with ``st``.

    Linux's generic_permission: the owner's, the group's or the others' bits; then
    CAP_DAC_OVERRIDE grants reading and writing always, and executing a directory (search) or
    a file with some exec bit set; CAP_DAC_READ_SEARCH grants reading, and searching a
    directory."""
    if st.uid == cred.fsuid:
        bits = (st.mode >> 6) & 7
    elif cred.in_group(st.gid):
        bits = (st.mode >> 3) & 7
    else:
        bits = st.mode & 7
    if not want & ~bits:
        return
    is_dir = (st.mode & S_IFMT) == S_IFDIR
    if cred.capable(CAP_DAC_OVERRIDE):
        if not (want & MAY_EXEC) or is_dir or st.mode & 0o111:
            return
        raise SyscallError(errno.EACCES, "no exec bit set")
    if cred.capable(CAP_DAC_READ_SEARCH) and not want & ~(MAY_READ | (MAY_EXEC if is_dir else 0)):
        return
    raise SyscallError(errno.EACCES, "permission denied by mode bits")


def may_delete(dir_st: Stat, st: Stat, cred: Cred) -> None:
    """Linux's sticky-directory rule (check_sticky): in a directory with S_ISVTX only the
    owner of the file or of the directory (or CAP_FOWNER) may remove or rename the file."""
    sticky = dir_st.mode & 0o1000
    if sticky and cred.fsuid not in (dir_st.uid, st.uid) and not cred.capable(CAP_FOWNER):
        raise SyscallError(errno.EPERM, "sticky directory: not the owner")


def new_owner(cred: Cred, dir_st: Stat, mode: int) -> tuple[int, int, int]:
    """(mode, uid, gid) of a file ``cred`` creates with ``mode`` in a directory with
    ``dir_st``: Linux's inode_init_owner. A set-group-id directory gives its group (and, to a
    new directory, its S_ISGID); a group-executable S_ISGID file keeps that bit only for a
    creator in its group or holding CAP_FSETID."""
    gid = cred.fsgid
    if dir_st.mode & S_ISGID:
        gid = dir_st.gid
        if (mode & S_IFMT) == S_IFDIR:
            mode |= S_ISGID
    if (
        (mode & S_IFMT) != S_IFDIR
        and mode & (S_ISGID | 0o010) == S_ISGID | 0o010
        and not cred.in_group(gid)
        and not cred.capable(CAP_FSETID)
    ):
        mode &= ~S_ISGID
    return mode, cred.fsuid, gid
