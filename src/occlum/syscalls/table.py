"""The system call table, the single source of what becomes of each x86-64 system call: one
row per number, served (``SERVED``: handler, argument kinds, support level, note), native
(``native.NATIVE``), native or served by an argument rule (``native.RULES``) or refused with
the reason (``refused.REFUSED``).

From the rows come the serving table the kernel is handed (``build_table``: what ``--strace``
and ``--summary`` show), the seccomp filter (``filter_program``) and ``docs/syscalls.md``
(``catalogue.py``). A number in no class or in two is an error at start and in the unit tests.
A number above the last one the rows know goes to the supervisor, which answers ``ENOSYS`` and
names it once in the log (``LibOS.missing``).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from occlum.abi.syscalls import MOUNT_ROOTFS_NR, NR
from occlum.kernel.api import Entry, Handler
from occlum.platform import seccomp
from occlum.platform.seccomp import Rule
from occlum.platform.stub import STUB_NR
from occlum.syscalls import cred, fs, info, ioctl, net, process
from occlum.syscalls import exec as ex
from occlum.syscalls import mount as mnt
from occlum.syscalls import signal as sig
from occlum.syscalls.native import NATIVE, RULES
from occlum.syscalls.refused import REFUSED as REFUSED_REASONS

FULL, PARTIAL, REFUSED = "full", "partial", "refused"
_XATTRS = "no system.* (ACLs)"

# name: (handler, argument kinds for the trace (their count is the handler's arity), level, note)
SERVED: dict[str, tuple[Handler, str, str, str]] = {
    "execve": (ex.sys_execve, "path argv envp", FULL, "loaded by the LibOS loader"),
    "execveat": (ex.sys_execveat, "dirfd path argv envp at_nofollow", FULL, ""),
    "open": (fs.sys_open, "path oflags mode", FULL, ""),
    "openat": (fs.sys_openat, "dirfd path oflags mode", FULL, ""),
    "openat2": (fs.sys_openat2, "dirfd path ptr size", FULL, ""),
    "creat": (fs.sys_creat, "path mode", FULL, ""),
    "stat": (fs.sys_stat, "path ptr", FULL, ""),
    "lstat": (fs.sys_lstat, "path ptr", FULL, ""),
    "fstat": (fs.sys_fstat, "fd ptr", FULL, ""),
    "newfstatat": (fs.sys_newfstatat, "dirfd path ptr at_stat", FULL, ""),
    "statx": (fs.sys_statx, "dirfd path at_statx statx_mask ptr", FULL, ""),
    "statfs": (fs.sys_statfs, "path ptr", FULL, ""),
    "fstatfs": (fs.sys_fstatfs, "fd ptr", FULL, ""),
    "access": (fs.sys_access, "path access_mode", FULL, ""),
    "faccessat": (fs.sys_faccessat, "dirfd path access_mode", FULL, ""),
    "faccessat2": (fs.sys_faccessat2, "dirfd path access_mode at_access", FULL, ""),
    "readlink": (fs.sys_readlink, "path ptr s32", FULL, ""),
    "readlinkat": (fs.sys_readlinkat, "dirfd path ptr s32", FULL, ""),
    "getdents64": (fs.sys_getdents64, "fd ptr u32", FULL, ""),
    "getdents": (fs.sys_getdents, "fd ptr u32", FULL, "the old linux_dirent layout"),
    "mkdir": (fs.sys_mkdir, "path mode", FULL, ""),
    "mkdirat": (fs.sys_mkdirat, "dirfd path mode", FULL, ""),
    "mknod": (fs.sys_mknod, "path mode hex", PARTIAL, "regular files, FIFOs and sockets only"),
    "mknodat": (
        fs.sys_mknodat,
        "dirfd path mode hex",
        PARTIAL,
        "regular files, FIFOs and sockets only",
    ),
    "rmdir": (fs.sys_rmdir, "path", FULL, ""),
    "unlink": (fs.sys_unlink, "path", FULL, ""),
    "unlinkat": (fs.sys_unlinkat, "dirfd path at_unlink", FULL, ""),
    "rename": (fs.sys_rename, "path path", FULL, ""),
    "renameat": (fs.sys_renameat, "dirfd path dirfd path", FULL, ""),
    "renameat2": (fs.sys_renameat2, "dirfd path dirfd path rename", PARTIAL, "no RENAME_WHITEOUT"),
    "link": (fs.sys_link, "path path", FULL, ""),
    "linkat": (fs.sys_linkat, "dirfd path dirfd path at_link", FULL, ""),
    "symlink": (fs.sys_symlink, "path path", FULL, ""),
    "symlinkat": (fs.sys_symlinkat, "path dirfd path", FULL, ""),
    "chdir": (fs.sys_chdir, "path", FULL, ""),
    "fchdir": (fs.sys_fchdir, "fd", FULL, ""),
    "chroot": (fs.sys_chroot, "path", FULL, ""),
    "getcwd": (fs.sys_getcwd, "ptr size", FULL, ""),
    "umask": (fs.sys_umask, "mode", FULL, ""),
    "chmod": (fs.sys_chmod, "path mode", FULL, ""),
    "fchmod": (fs.sys_fchmod, "fd mode", FULL, ""),
    "fchmodat": (fs.sys_fchmodat, "dirfd path mode", FULL, ""),
    "fchmodat2": (fs.sys_fchmodat2, "dirfd path mode at_nofollow", FULL, ""),
    "chown": (fs.sys_chown, "path uid uid", FULL, ""),
    "lchown": (fs.sys_lchown, "path uid uid", FULL, ""),
    "fchown": (fs.sys_fchown, "fd uid uid", FULL, ""),
    "fchownat": (fs.sys_fchownat, "dirfd path uid uid at_nofollow", FULL, ""),
    "utimensat": (fs.sys_utimensat, "dirfd path ptr at_nofollow", FULL, ""),
    "utimes": (fs.sys_utimes, "path ptr", FULL, ""),
    "futimesat": (fs.sys_futimesat, "dirfd path ptr", FULL, ""),
    "utime": (fs.sys_utime, "path ptr", FULL, ""),
    "fsync": (fs.sys_fsync, "fd", FULL, "commits a SEFS volume; host files: the host's fsync"),
    "fdatasync": (fs.sys_fdatasync, "fd", FULL, "as fsync"),
    "syncfs": (fs.sys_syncfs, "fd", FULL, "as fsync"),
    "sync": (fs.sys_sync, "", FULL, "commits every SEFS volume, then the host's sync"),
    "truncate": (fs.sys_truncate, "path int", FULL, ""),
    "getxattr": (fs.sys_getxattr, "path str ptr size", PARTIAL, _XATTRS),
    "lgetxattr": (fs.sys_getxattr, "path str ptr size", PARTIAL, _XATTRS),
    "fgetxattr": (fs.sys_fgetxattr, "fd str ptr size", PARTIAL, _XATTRS),
    "listxattr": (fs.sys_listxattr, "path ptr size", PARTIAL, _XATTRS),
    "llistxattr": (fs.sys_listxattr, "path ptr size", PARTIAL, _XATTRS),
    "flistxattr": (fs.sys_flistxattr, "fd ptr size", PARTIAL, _XATTRS),
    "setxattr": (fs.sys_setxattr, "path str ptr size xattr", PARTIAL, _XATTRS),
    "lsetxattr": (fs.sys_setxattr, "path str ptr size xattr", PARTIAL, _XATTRS),
    "fsetxattr": (fs.sys_fsetxattr, "fd str ptr size xattr", PARTIAL, _XATTRS),
    "removexattr": (fs.sys_removexattr, "path str", PARTIAL, _XATTRS),
    "lremovexattr": (fs.sys_removexattr, "path str", PARTIAL, _XATTRS),
    "fremovexattr": (fs.sys_fremovexattr, "fd str", PARTIAL, _XATTRS),
    "setxattrat": (fs.sys_setxattrat, "dirfd path at_nofollow str ptr size", PARTIAL, _XATTRS),
    "getxattrat": (fs.sys_getxattrat, "dirfd path at_nofollow str ptr size", PARTIAL, _XATTRS),
    "listxattrat": (fs.sys_listxattrat, "dirfd path at_nofollow ptr size", PARTIAL, _XATTRS),
    "removexattrat": (fs.sys_removexattrat, "dirfd path at_nofollow str", PARTIAL, _XATTRS),
    "bind": (net.sys_bind, "fd ptr s32", FULL, "Unix socket paths in the LibOS; others native"),
    "connect": (
        net.sys_connect,
        "fd ptr s32",
        FULL,
        "Unix socket paths in the LibOS; others native",
    ),
    "sendto": (net.sys_sendto, "fd ptr size msg ptr s32", FULL, "served only with an address"),
    "socket": (
        net.sys_socket,
        "s32 u32 s32",
        FULL,
        'made by the supervisor on the host\'s network ("network": "host")',
    ),
    "ioctl": (
        ioctl.sys_ioctl,
        "fd u32 ptr",
        FULL,
        "/dev/sgx: Occlum's SGX requests (docs/attestation.md); on a Unix socket, the host's"
        ' network devices ("network": "host")',
    ),
    "getsockopt": (
        net.sys_getsockopt,
        "fd s32 s32 ptr ptr",
        FULL,
        "the peer's LibOS pid and effective ids",
    ),
    "msync": (fs.sys_msync, "ptr size msync", FULL, "MS_SYNC commits the protected file systems"),
    "mmap": (
        process.sys_mmap,
        "ptr size prot map fd int",
        FULL,
        "served from 64 MiB: names user_space_size",
    ),
    "mount": (
        mnt.sys_mount,
        "str path str mount str",
        PARTIAL,
        "tmpfs (size= by the host), ramfs, sefs (under run/mount/), procfs, devfs; no remount/bind/move",
    ),
    "umount2": (mnt.sys_umount2, "path umount", FULL, ""),
    "fcntl": (fs.sys_fcntl, "fd u32 s32", PARTIAL, "no leases on LibOS files (EINVAL)"),
    "uname": (info.sys_uname, "ptr", FULL, ""),
    "sethostname": (info.sys_sethostname, "ptr s32", FULL, "the instance's own name"),
    "sysinfo": (info.sys_sysinfo, "ptr", FULL, "memory: user_space_size, less what programs use"),
    "setgroups": (cred.sys_setgroups, "s32 ptr", FULL, "LibOS credentials, per thread"),
    "getgroups": (cred.sys_getgroups, "s32 ptr", FULL, ""),
    "getuid": (cred.sys_getuid, "", FULL, "LibOS credentials, per thread"),
    "geteuid": (cred.sys_geteuid, "", FULL, "LibOS credentials, per thread"),
    "getgid": (cred.sys_getgid, "", FULL, "LibOS credentials, per thread"),
    "getegid": (cred.sys_getegid, "", FULL, "LibOS credentials, per thread"),
    "getresuid": (cred.sys_getresuid, "ptr ptr ptr", FULL, "LibOS credentials, per thread"),
    "getresgid": (cred.sys_getresgid, "ptr ptr ptr", FULL, "LibOS credentials, per thread"),
    "setuid": (cred.sys_setuid, "uid", FULL, "LibOS credentials, per thread"),
    "setgid": (cred.sys_setgid, "uid", FULL, "LibOS credentials, per thread"),
    "setreuid": (cred.sys_setreuid, "uid uid", FULL, "LibOS credentials, per thread"),
    "setregid": (cred.sys_setregid, "uid uid", FULL, "LibOS credentials, per thread"),
    "setresuid": (cred.sys_setresuid, "uid uid uid", FULL, "LibOS credentials, per thread"),
    "setresgid": (cred.sys_setresgid, "uid uid uid", FULL, "LibOS credentials, per thread"),
    "setfsuid": (cred.sys_setfsuid, "uid", FULL, "LibOS credentials, per thread"),
    "setfsgid": (cred.sys_setfsgid, "uid", FULL, "LibOS credentials, per thread"),
    "capget": (cred.sys_capget, "ptr ptr", FULL, "the LibOS's capabilities (LIBOS_CAPS)"),
    "capset": (cred.sys_capset, "ptr ptr", FULL, "the LibOS's capabilities (LIBOS_CAPS)"),
    "prctl": (
        cred.sys_prctl,
        "s32 hex",
        FULL,
        "native but for KEEPCAPS and the bounding set, which the LibOS keeps",
    ),
    "kill": (sig.sys_kill, "s32 s32", FULL, "permission by LibOS credentials, then native"),
    "tkill": (sig.sys_tkill, "s32 s32", FULL, "permission by LibOS credentials, then native"),
    "tgkill": (sig.sys_tgkill, "s32 s32 s32", FULL, "as kill"),
    "rt_sigqueueinfo": (sig.sys_rt_sigqueueinfo, "s32 s32 ptr", FULL, "as kill"),
    "rt_tgsigqueueinfo": (sig.sys_rt_tgsigqueueinfo, "s32 s32 s32 ptr", FULL, "as kill"),
    "pidfd_send_signal": (sig.sys_pidfd_send_signal, "fd s32 ptr pidfd_signal", FULL, "as kill"),
    "setpriority": (
        cred.sys_setpriority,
        "s32 s32 s32",
        FULL,
        "raising: by the LibOS, in the instance only",
    ),
    "clone": (process.sys_clone, "hex", PARTIAL, "no new namespaces"),
    "exit_group": (
        process.sys_exit_group,
        "s32",
        FULL,
        "a failing exit: checks the address space used",
    ),
}


@dataclass(frozen=True, slots=True)
class Row:
    """One x86-64 system call number and what becomes of it."""

    nr: int
    name: str
    kind: str  # "native", "native or served", "served full", "served partial", "refused EPERM", ...
    note: str
    entry: Entry | None  # what the supervisor does when the call reaches it; None: native
    rule: Rule | None  # how the filter decides by the arguments, if it does


def _join(*notes: str) -> str:
    return "; ".join(filter(None, notes))


@cache
def rows() -> dict[int, Row]:
    """Every number of ``NR``, in order, from the lists of this package."""
    return make_rows(NATIVE, SERVED, REFUSED_REASONS, RULES)


def make_rows(
    native_names: Iterable[str],
    served: Mapping[str, tuple[Handler, str, str, str]],
    refused: Mapping[str, tuple[int, str]],
    rules: Mapping[str, tuple[Rule, str]],
) -> dict[int, Row]:
    """One row per number of ``NR``; ``ValueError`` for a name in no class or in two, a name
    that is no system call, or a rule that sends to the supervisor a call it does not serve."""
    native = set(native_names)
    classes = (("native", native), ("served", served), ("refused", refused))
    for what, names in (*classes, ("argument rules", rules)):
        unknown = set(names) - set(NR)
        if unknown:
            raise ValueError(f"{what}: not x86-64 system calls: {', '.join(sorted(unknown))}")
    out: dict[int, Row] = {}
    for name, nr in sorted(NR.items(), key=lambda item: item[1]):
        where = [what for what, names in classes if name in names]
        if len(where) != 1:
            raise ValueError(f"system call {name} ({nr}): {', '.join(where) or 'no class'}")
        rule, rule_note = rules.get(name, (None, ""))
        if rule is not None and rule.notifies and name not in served:
            raise ValueError(f"system call {name} ({nr}): its rule sends it, nothing serves it")
        if name in native:
            out[nr] = Row(nr, name, "native", rule_note, None, rule)
        elif name in served:
            handler, kinds, level, note = served[name]
            kind = "native or served" if rule is not None else f"served {level}"
            entry = Entry(name, handler, tuple(kinds.split()), level, note)
            out[nr] = Row(nr, name, kind, _join(rule_note, note), entry, rule)
        else:
            err, why = refused[name]
            shown = f"{errno.errorcode[err]}: {why}"
            entry = Entry(name, process.refuse(err, shown), (), REFUSED, shown)
            kind = f"refused {errno.errorcode[err]}"
            out[nr] = Row(nr, name, kind, _join(rule_note, why), entry, rule)
    return out


def build_table() -> dict[int, Entry]:
    """The serving table the kernel is handed: number -> entry, for every call the filter can
    send to the supervisor (served and refused rows, and Occlum's own two calls)."""
    table = {nr: row.entry for nr, row in rows().items() if row.entry is not None}
    table[MOUNT_ROOTFS_NR] = Entry(
        "mount_rootfs", mnt.sys_mount_rootfs, ("ptr", "size"), FULL, "Occlum's, for init only"
    )
    table[STUB_NR] = Entry(
        "stub", ex.sys_stub, ("ptr", "ptr"), FULL, "the loader stub asks for its plan"
    )
    return table


def filter_program(*, every_exit: bool = False) -> bytes:
    """The seccomp filter of the rows: their rules in the order of ``native.RULES``, then the
    native numbers. With ``every_exit`` (``occlum doctor`` measures every process), every
    ``exit_group`` goes to the supervisor, successful ones too."""
    table = rows()
    native = [nr for nr, row in table.items() if row.kind == "native"]
    rules: list[tuple[int, Rule]] = []
    for name in RULES:
        rule = table[NR[name]].rule
        assert rule is not None
        if name == "exit_group" and every_exit:
            rule = seccomp.served_unless_zero(0, always=True)
        rules.append((NR[name], rule))
    return seccomp.build_filter(native, rules)
