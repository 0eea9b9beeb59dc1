"""The calls the LibOS refuses, each with the errno it gives and the reason.

Every x86-64 number is served (``table.SERVED``), native (``native.NATIVE``) or listed here;
``table.rows()`` makes one row of each, from which come the filter and ``docs/syscalls.md``
(``python -m occlum.syscalls.catalogue``), and a number in none is an error. The reason is what ``--strace``, the warning a program
gets once per call and ``occlum run --summary`` show.

ENOSYS where Linux itself may lack the call (removed, never implemented, or a configuration
option a kernel can be built without) so programs take the fallback they have for such kernels;
EPERM where the call acts on the host (its kernel, clock, devices, mounts, other processes), as
for a container without the capability.
"""

from __future__ import annotations

from errno import ENOSYS, EPERM

_HOST_MOUNTS = "the mount API acts on host mounts; mount(2) and umount2(2) are served"
_KEYRINGS = "the host kernel's keyrings"
_CLOCK = "sets the host's clock"
_MODULES = "loads or removes host kernel modules"
_AIO = (
    "Linux AIO: its iocbs name descriptors and operations (IOCB_CMD_FSYNC too) in memory the "
    "filter does not see; as on a kernel without CONFIG_AIO, programs fall back (glibc's POSIX "
    "AIO uses threads)"
)
_INOTIFY = (
    "the LibOS's files and directories are its own objects: host inotify would not report "
    "their changes (a directory's never); as on a kernel without CONFIG_INOTIFY_USER, programs "
    "fall back to polling"
)
_LANDLOCK = (
    "the LibOS serves every path, so a program's Landlock file rules would not be enforced; as "
    "on a kernel without Landlock (every program is in the instance's own Landlock domain)"
)
_NEVER = "never implemented by Linux"
_LSM = "the host's security modules; as on Linux before 6.8"

REFUSED: dict[str, tuple[int, str]] = {
    # the host kernel, its devices and its machine
    "ptrace": (EPERM, "tracing another process would reach past the filter"),
    "process_vm_readv": (EPERM, "another process's memory"),
    "process_vm_writev": (EPERM, "another process's memory"),
    "pidfd_getfd": (EPERM, "takes a descriptor out of another process"),
    "kcmp": (EPERM, "compares kernel objects of two processes"),
    "bpf": (EPERM, "loads programs into the host kernel"),
    "perf_event_open": (EPERM, "host performance counters and kernel addresses"),
    "userfaultfd": (EPERM, "page faults handled in user space: a kernel attack surface"),
    "kexec_load": (EPERM, "replaces the host kernel"),
    "kexec_file_load": (EPERM, "replaces the host kernel"),
    "init_module": (EPERM, _MODULES),
    "finit_module": (EPERM, _MODULES),
    "delete_module": (EPERM, _MODULES),
    "reboot": (EPERM, "the host machine"),
    "swapon": (EPERM, "the host's swap"),
    "swapoff": (EPERM, "the host's swap"),
    "iopl": (EPERM, "host I/O ports"),
    "ioperm": (EPERM, "host I/O ports"),
    "syslog": (EPERM, "the host kernel's log"),
    "vhangup": (EPERM, "the host's terminal"),
    "acct": (EPERM, "host process accounting"),
    "settimeofday": (EPERM, _CLOCK),
    "clock_settime": (EPERM, _CLOCK),
    "clock_adjtime": (EPERM, _CLOCK),
    "adjtimex": (EPERM, _CLOCK),
    "keyctl": (EPERM, _KEYRINGS),
    "add_key": (EPERM, _KEYRINGS),
    "request_key": (EPERM, _KEYRINGS),
    "setdomainname": (EPERM, "the instance has a host name of its own, no NIS domain name"),
    # namespaces and mounts: the instance is a set of namespaces already
    "unshare": (EPERM, "new namespaces would leave the LibOS's view"),
    "setns": (EPERM, "another process's namespaces"),
    "pivot_root": (EPERM, "the root is the LibOS's (chroot is served)"),
    "mount_setattr": (EPERM, _HOST_MOUNTS),
    "fsopen": (EPERM, _HOST_MOUNTS),
    "fsconfig": (EPERM, _HOST_MOUNTS),
    "fsmount": (EPERM, _HOST_MOUNTS),
    "fspick": (EPERM, _HOST_MOUNTS),
    "open_tree": (EPERM, _HOST_MOUNTS),
    "open_tree_attr": (EPERM, _HOST_MOUNTS),
    "move_mount": (EPERM, _HOST_MOUNTS),
    "quotactl": (EPERM, "host file systems' quotas"),
    "quotactl_fd": (EPERM, "host file systems' quotas"),
    "name_to_handle_at": (EPERM, "host file handles"),
    "open_by_handle_at": (EPERM, "opens host files by handle, past every path check"),
    "fanotify_init": (EPERM, "watches host mounts and file systems"),
    "fanotify_mark": (EPERM, "watches host mounts and file systems"),
    # calls whose effects the filter cannot see
    "io_uring_setup": (ENOSYS, "its operations bypass the filter"),
    "io_uring_enter": (ENOSYS, "its operations bypass the filter"),
    "io_uring_register": (ENOSYS, "its operations bypass the filter"),
    "clone3": (
        ENOSYS,
        "in the filter: its flags are in memory, out of the filter's sight; C libraries fall "
        "back to clone",
    ),
    "io_setup": (ENOSYS, _AIO),
    "io_destroy": (ENOSYS, _AIO),
    "io_getevents": (ENOSYS, _AIO),
    "io_pgetevents": (ENOSYS, _AIO),
    "io_submit": (ENOSYS, _AIO),
    "io_cancel": (ENOSYS, _AIO),
    # calls that would act on host objects instead of the LibOS's
    "inotify_init": (ENOSYS, _INOTIFY),
    "inotify_init1": (ENOSYS, _INOTIFY),
    "inotify_add_watch": (ENOSYS, _INOTIFY),
    "inotify_rm_watch": (ENOSYS, _INOTIFY),
    "landlock_create_ruleset": (ENOSYS, _LANDLOCK),
    "landlock_add_rule": (ENOSYS, _LANDLOCK),
    "landlock_restrict_self": (ENOSYS, _LANDLOCK),
    "statmount": (
        ENOSYS,
        "would describe the instance's host mount namespace (an empty root), not the LibOS's "
        "mounts, which /proc/self/mounts shows; as on Linux before 6.8",
    ),
    "listmount": (
        ENOSYS,
        "would list the instance's host mount namespace (an empty root), not the LibOS's "
        "mounts, which /proc/self/mounts shows; as on Linux before 6.8",
    ),
    "lsm_get_self_attr": (ENOSYS, _LSM),
    "lsm_set_self_attr": (ENOSYS, _LSM),
    "lsm_list_modules": (ENOSYS, _LSM),
    "file_getattr": (
        ENOSYS,
        "Linux 6.17's inode flags and project ids by path: LibOS files have none",
    ),
    "file_setattr": (
        ENOSYS,
        "Linux 6.17's inode flags and project ids by path: LibOS files have none",
    ),
    "ustat": (ENOSYS, "a host block device's statistics by device number (statfs is served)"),
    "sysfs": (ENOSYS, "obsolete file-system type index (kernels without CONFIG_SYSFS_SYSCALL)"),
    "modify_ldt": (
        ENOSYS,
        "16-bit segments, a kernel attack surface: as on a kernel without "
        "CONFIG_MODIFY_LDT_SYSCALL",
    ),
    "set_thread_area": (ENOSYS, "32-bit TLS descriptors (64-bit code uses arch_prctl)"),
    "get_thread_area": (ENOSYS, "32-bit TLS descriptors (64-bit code uses arch_prctl)"),
    # gone from Linux, or never there: ENOSYS natively too
    "uselib": (ENOSYS, "a.out shared libraries: gone from Linux"),
    "lookup_dcookie": (ENOSYS, "removed from Linux in 6.8"),
    "_sysctl": (ENOSYS, "removed from Linux in 5.5"),
    "create_module": (ENOSYS, "removed from Linux in 2.6"),
    "get_kernel_syms": (ENOSYS, "removed from Linux in 2.6"),
    "query_module": (ENOSYS, "removed from Linux in 2.6"),
    "nfsservctl": (ENOSYS, "removed from Linux in 3.1"),
    "getpmsg": (ENOSYS, _NEVER),
    "putpmsg": (ENOSYS, _NEVER),
    "afs_syscall": (ENOSYS, _NEVER),
    "tuxcall": (ENOSYS, _NEVER),
    "security": (ENOSYS, _NEVER),
    "vserver": (ENOSYS, _NEVER),
    "epoll_ctl_old": (ENOSYS, _NEVER + " on x86-64"),
    "epoll_wait_old": (ENOSYS, _NEVER + " on x86-64"),
}
