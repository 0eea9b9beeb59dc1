"""The calls that run natively, and the calls whose arguments the filter looks at.

A native call runs in the host kernel at full speed; the filter lets it through. A call here
never names a path, a process outside the caller's reach, or the machine. ``RULES`` gives the
few calls (native, served or refused) for which the filter decides by the arguments, each with
its rule (``platform/seccomp.py`` assembles the BPF) and what it means for ``docs/syscalls.md``.
``syscalls/table.py`` puts these, the served and the refused calls in one row per number.
"""

from __future__ import annotations

import errno

from occlum.platform import seccomp
from occlum.platform.seccomp import SECCOMP_RET_ERRNO, SECCOMP_RET_USER_NOTIF, Rule
from occlum.syscalls.sgx import REQUESTS as SGX_REQUESTS

# (mmap is native below LARGE_MMAP, sendto without an address, socket for the families the
# instance's own network namespace does not hold: all three are served otherwise, see RULES)
NATIVE: tuple[str, ...] = (
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "dup", "dup2", "dup3", "flock",
    "mprotect", "munmap", "mremap", "madvise", "mincore", "mlock", "mlock2",
    "munlock", "mlockall", "munlockall", "brk", "membarrier", "memfd_create", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "get_mempolicy", "set_mempolicy", "mbind",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigsuspend", "sigaltstack", "pause", "alarm",
    "pipe", "pipe2", "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd", "signalfd4",
    "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "fadvise64", "fallocate",
    "ftruncate", "sync_file_range", "readahead",
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
    "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_getattr", "sched_setattr",
    "getpriority", "ioprio_get", "ioprio_set", "getcpu",
    "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
    "times", "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime",
    "timer_getoverrun", "timer_delete",
    "getpid", "getppid", "gettid",
    "getpgrp", "getpgid", "setpgid", "getsid", "setsid", "wait4", "waitid",
    "exit", "futex", "futex_waitv", "set_robust_list", "get_robust_list",
    "set_tid_address", "arch_prctl", "rseq", "personality", "getrandom",
    "getrusage", "getrlimit", "setrlimit", "prlimit64", "seccomp", "restart_syscall",
    "socketpair", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    "shutdown", "listen", "setsockopt", "accept", "accept4", "recvfrom", "getsockname",
    "getpeername",
    "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # System V IPC: the instance has an IPC namespace of its own
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "close_range", "pidfd_open", "cachestat", "fork", "vfork",
    # memory of the caller (or, by pidfd or pid, of a process of the instance's PID namespace)
    "remap_file_pages", "set_mempolicy_home_node", "mseal", "map_shadow_stack", "memfd_secret",
    "process_madvise", "process_mrelease", "migrate_pages", "move_pages",
    "futex_wake", "futex_wait", "futex_requeue",
    # POSIX message queues: names in the mqueue file system of the instance's IPC namespace
    "mq_open", "mq_unlink",
)  # fmt: skip

# ioctl requests refused to every program: TIOCSTI pushes a byte into a terminal's input as if
# typed, TIOCLINUX's selection calls paste into a virtual console's; on a terminal of the host
# (`occlum run` from a shell) either would type commands for the user's shell once occlum exits
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
# the network device requests (SIOCGIFNAME .. SIOCGIFMAP, linux/sockios.h): they act on the
# namespace of the socket they are made on, and the filter sends them to the supervisor, which
# answers those made on a program's Unix socket as on the host's network (syscalls/net.py)
SIOC_DEVICE_REQUESTS = (0x8910, 0x8971)
F_CREATED_QUERY = 1028  # F_LINUX_SPECIFIC_BASE + 4, Linux 6.12
# fcntl(F_SETLEASE) is shown to the supervisor: a lease on a LibOS file would make the
# supervisor's own open of that file for another program wait for the lease's break
F_SETLEASE = 1024
SOL_SOCKET, SO_PEERCRED = 1, 17
# prctl options shown to the supervisor: they read or change the capabilities the LibOS keeps
# (PR_GET_KEEPCAPS, PR_SET_KEEPCAPS, PR_CAPBSET_READ, PR_CAPBSET_DROP)
PRCTL_SERVED = (7, 8, 23, 24)

# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (the low byte is the exit signal)
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

# an mmap of at least this many bytes is shown to the supervisor (then continues as made): a
# reservation this large is how Java, Go and V8 start, and where an address-space limit stops
# them; smaller ones, the hot path, stay native
LARGE_MMAP = 64 << 20
MAP_FIXED, MAP_NORESERVE = 0x10, 0x4000
# glibc's new_heap reserves twice HEAP_MAX_SIZE (64 MiB on x86-64), then HEAP_MAX_SIZE,
# PROT_NONE and MAP_NORESERVE: a refusal only makes a thread share an arena, never named
MALLOC_ARENA_SIZES = (128 << 20, 64 << 20)

AF_INET, AF_INET6, AF_NETLINK = 2, 10, 16
NETLINK_ROUTE = 0

# name: (the filter's rule, what it means; "" where the call's own row says it). The filter
# checks them in this order, before the native numbers.
RULES: dict[str, tuple[Rule, str]] = {
    # clone3 keeps its flags in memory, out of the filter's sight: ENOSYS makes C libraries
    # fall back to clone, whose flags the filter can check
    "clone3": (seccomp.refused(errno.ENOSYS), ""),
    # clone: native unless it asks for new namespaces (the supervisor refuses those)
    "clone": (
        seccomp.served_when_flags(0, CLONE_NAMESPACE_FLAGS),
        "served (and refused) when it asks for new namespaces",
    ),
    # exit_group is served only with a non-zero status (the LibOS then looks at the address
    # space the program used, in case it failed for want of memory): a successful exit costs
    # no round trip, which spawn-heavy programs (shells, make) feel. `occlum doctor` measures
    # every process: table.filter_rules(every_exit=True)
    "exit_group": (
        seccomp.served_unless_zero(0),
        "served with a non-zero status (the address space used is checked)",
    ),
    # ioctl: native, but for the two requests that put bytes into a terminal's input
    # (docs/internals.md, "Terminals"); the kernel reads the request as an unsigned int, so
    # the low word is all of it. EIO for TIOCSTI as Linux with legacy_tiocsti=0. Occlum's
    # /dev/sgx requests go to the supervisor (syscalls/sgx.py)
    "ioctl": (
        seccomp.answered_by_value(
            1,
            (
                (TIOCSTI, SECCOMP_RET_ERRNO | errno.EIO),
                (TIOCLINUX, SECCOMP_RET_ERRNO | errno.EPERM),
                *((request, SECCOMP_RET_USER_NOTIF) for request in SGX_REQUESTS),
            ),
            SIOC_DEVICE_REQUESTS,
        ),
        "TIOCSTI: EIO, TIOCLINUX: EPERM in the filter; network device requests served",
    ),
    # fcntl: native, but F_CREATED_QUERY would ask the host object, which the LibOS made
    # itself (a memfd, a reopened descriptor), never "created by this open": EINVAL, the answer
    # of a kernel without the command, rather than a wrong 0; and F_SETLEASE goes to the
    # supervisor (see F_SETLEASE)
    "fcntl": (
        seccomp.answered_by_value(
            1,
            (
                (F_CREATED_QUERY, SECCOMP_RET_ERRNO | errno.EINVAL),
                (F_SETLEASE, SECCOMP_RET_USER_NOTIF),
            ),
        ),
        "F_CREATED_QUERY: EINVAL in the filter (as before Linux 6.12); F_SETLEASE served",
    ),
    # getsockopt: native, but SO_PEERCRED, whose ids the kernel took from the peer's host
    # process (the one host user of the instance): the supervisor gives its LibOS ids
    "getsockopt": (
        seccomp.served_for_pair((1, SOL_SOCKET), (2, SO_PEERCRED)),
        "served for SOL_SOCKET SO_PEERCRED",
    ),
    # prctl: native, but for the options that read or change the LibOS's capabilities
    "prctl": (
        seccomp.served_for_values(0, PRCTL_SERVED),
        "served for PR_[GS]ET_KEEPCAPS and PR_CAPBSET_{READ,DROP} (LibOS capabilities)",
    ),
    # sendto with a destination address may name a Unix socket path, which the supervisor
    # makes reachable; without one (send() on a connected socket) it is the data path.
    # accept, accept4, recvfrom and recvmsg are native with or without an address buffer: the
    # names the kernel reports are the program's own (docs/internals.md, "Network")
    "sendto": (seccomp.served_with_pointer(4), "native without a destination address"),
    # socket(): programs live in a network namespace of the instance's own, where their Unix
    # sockets' abstract names are private (docs/internals.md, "Network"); an IPv4, IPv6 or
    # NETLINK_ROUTE socket is made by the supervisor, on the network Occlum.json names (the
    # host's), and the others natively. Every other netlink family: EPROTONOSUPPORT, as from a
    # kernel built without it. On the host's network they show host state no container there
    # would see: every host Unix socket and its path (SOCK_DIAG), device events
    # (KOBJECT_UEVENT), audit, process events and taskstats of host processes (CONNECTOR,
    # GENERIC), firewall, IPsec, SELinux... socketpair(AF_NETLINK) and socketpair(AF_INET)
    # fail in the kernel, and no other call makes such a socket.
    "socket": (
        seccomp.served_for_values_or_pair(
            0, (AF_INET, AF_INET6), AF_NETLINK, (2, NETLINK_ROUTE), errno.EPROTONOSUPPORT
        ),
        "AF_INET, AF_INET6, NETLINK_ROUTE served; other AF_NETLINK: EPROTONOSUPPORT in the "
        "filter; the rest native",
    ),
    # the calls sys_mmap lets through unlooked-at stay native too: MAP_FIXED (within what is
    # mapped already) and glibc's malloc reserving a thread's arena (java -version made 21
    # mmaps this large, 13 of them these)
    "mmap": (
        seccomp.served_when_large_unless(
            1, LARGE_MMAP, 3, MAP_FIXED, (2, MAP_NORESERVE, MALLOC_ARENA_SIZES)
        ),
        "native below LARGE_MMAP (64 MiB), with MAP_FIXED, and for malloc's arenas",
    ),
}
