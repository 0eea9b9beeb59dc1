"""The system call table: number → name, handler, argument count, support level and note.

Calls not listed here and not let through by the filter are unknown to the LibOS: they return
``ENOSYS`` and are named once in the log (``LibOS.missing``).
"""

from __future__ import annotations

import errno

from occlum.abi.syscalls import NR
from occlum.kernel.libos import Entry, Handler
from occlum.platform.stub import STUB_NR
from occlum.syscalls import exec as ex
from occlum.syscalls import fs, info, process

FULL, PARTIAL, REFUSED = "full", "partial", "refused"

# name: (handler, number of arguments, level, note)
SERVED: dict[str, tuple[Handler, int, str, str]] = {
    "execve": (ex.sys_execve, 3, FULL, "loaded by the LibOS loader"),
    "execveat": (ex.sys_execveat, 5, FULL, ""),
    "open": (fs.sys_open, 3, FULL, ""),
    "openat": (fs.sys_openat, 4, FULL, ""),
    "openat2": (fs.sys_openat2, 4, FULL, ""),
    "creat": (fs.sys_creat, 2, FULL, ""),
    "stat": (fs.sys_stat, 2, FULL, ""),
    "lstat": (fs.sys_lstat, 2, FULL, ""),
    "fstat": (fs.sys_fstat, 2, FULL, ""),
    "newfstatat": (fs.sys_newfstatat, 4, FULL, ""),
    "statx": (fs.sys_statx, 5, FULL, ""),
    "statfs": (fs.sys_statfs, 2, FULL, ""),
    "fstatfs": (fs.sys_fstatfs, 2, FULL, ""),
    "access": (fs.sys_access, 2, FULL, ""),
    "faccessat": (fs.sys_faccessat, 3, FULL, ""),
    "faccessat2": (fs.sys_faccessat2, 4, FULL, ""),
    "readlink": (fs.sys_readlink, 3, FULL, ""),
    "readlinkat": (fs.sys_readlinkat, 4, FULL, ""),
    "getdents64": (fs.sys_getdents64, 3, FULL, ""),
    "mkdir": (fs.sys_mkdir, 2, FULL, ""),
    "mkdirat": (fs.sys_mkdirat, 3, FULL, ""),
    "mknod": (fs.sys_mknod, 3, PARTIAL, "regular files, FIFOs and sockets only"),
    "mknodat": (fs.sys_mknodat, 4, PARTIAL, "regular files, FIFOs and sockets only"),
    "rmdir": (fs.sys_rmdir, 1, FULL, ""),
    "unlink": (fs.sys_unlink, 1, FULL, ""),
    "unlinkat": (fs.sys_unlinkat, 3, FULL, ""),
    "rename": (fs.sys_rename, 2, FULL, ""),
    "renameat": (fs.sys_renameat, 4, FULL, ""),
    "renameat2": (fs.sys_renameat2, 5, PARTIAL, "no RENAME_WHITEOUT"),
    "link": (fs.sys_link, 2, FULL, ""),
    "linkat": (fs.sys_linkat, 5, FULL, ""),
    "symlink": (fs.sys_symlink, 2, FULL, ""),
    "symlinkat": (fs.sys_symlinkat, 3, FULL, ""),
    "chdir": (fs.sys_chdir, 1, FULL, ""),
    "fchdir": (fs.sys_fchdir, 1, FULL, ""),
    "chroot": (fs.sys_chroot, 1, FULL, ""),
    "getcwd": (fs.sys_getcwd, 2, FULL, ""),
    "umask": (fs.sys_umask, 1, FULL, ""),
    "chmod": (fs.sys_chmod, 2, FULL, ""),
    "fchmod": (fs.sys_fchmod, 2, FULL, ""),
    "fchmodat": (fs.sys_fchmodat, 3, FULL, ""),
    "fchmodat2": (fs.sys_fchmodat2, 4, FULL, ""),
    "chown": (fs.sys_chown, 3, FULL, ""),
    "lchown": (fs.sys_lchown, 3, FULL, ""),
    "fchown": (fs.sys_fchown, 3, FULL, ""),
    "fchownat": (fs.sys_fchownat, 5, FULL, ""),
    "utimensat": (fs.sys_utimensat, 4, FULL, ""),
    "utimes": (fs.sys_utimes, 2, FULL, ""),
    "utime": (fs.sys_utime, 2, FULL, ""),
    "truncate": (fs.sys_truncate, 2, FULL, ""),
    "getxattr": (fs.sys_getxattr, 4, PARTIAL, "no extended attributes: ENODATA"),
    "lgetxattr": (fs.sys_getxattr, 4, PARTIAL, "no extended attributes: ENODATA"),
    "fgetxattr": (fs.sys_fgetxattr, 4, PARTIAL, "no extended attributes: ENODATA"),
    "listxattr": (fs.sys_listxattr, 3, PARTIAL, "an empty list"),
    "llistxattr": (fs.sys_listxattr, 3, PARTIAL, "an empty list"),
    "flistxattr": (fs.sys_flistxattr, 3, PARTIAL, "an empty list"),
    "setxattr": (fs.sys_setxattr, 5, PARTIAL, "EOPNOTSUPP"),
    "lsetxattr": (fs.sys_setxattr, 5, PARTIAL, "EOPNOTSUPP"),
    "fsetxattr": (fs.sys_fsetxattr, 5, PARTIAL, "EOPNOTSUPP"),
    "removexattr": (fs.sys_removexattr, 2, PARTIAL, "ENODATA"),
    "lremovexattr": (fs.sys_removexattr, 2, PARTIAL, "ENODATA"),
    "fremovexattr": (fs.sys_fremovexattr, 2, PARTIAL, "ENODATA"),
    "uname": (info.sys_uname, 1, FULL, ""),
    "sethostname": (info.sys_sethostname, 2, FULL, "the instance's own name"),
    "sysinfo": (info.sys_sysinfo, 1, FULL, "memory bounded by user_space_size"),
    "clone": (process.sys_clone, 1, PARTIAL, "no new namespaces"),
}

REFUSED_CALLS: dict[str, int] = {
    name: errno.EPERM
    for name in (
        "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open",
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
        "reboot", "swapon", "swapoff", "mount", "umount2", "pivot_root", "unshare", "setns",
        "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "acct", "quotactl", "open_by_handle_at", "name_to_handle_at", "keyctl", "add_key",
        "request_key", "fanotify_init", "pidfd_getfd", "userfaultfd", "syslog", "vhangup",
        "mount_setattr", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount",
        "kcmp", "lookup_dcookie", "setdomainname", "uselib", "personality_unused",
    )
} | {"io_uring_setup": errno.ENOSYS, "io_uring_enter": errno.ENOSYS, "io_uring_register": errno.ENOSYS}  # fmt: skip


def build_table() -> dict[int, Entry]:
    table: dict[int, Entry] = {}
    for name, (handler, nargs, level, note) in SERVED.items():
        table[NR[name]] = Entry(name, handler, nargs, level, note)
    for name, err in REFUSED_CALLS.items():
        if name in NR:
            table[NR[name]] = Entry(name, process.refuse(err), 0, REFUSED, errno.errorcode[err])
    table[STUB_NR] = Entry("stub", ex.sys_stub, 2, FULL, "the loader stub asks for its plan")
    return table
