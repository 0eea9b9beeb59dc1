"""The seccomp filter that sorts every system call of a program, and the notification listener.

Three classes (DESIGN 3.1): *native* calls run in the host kernel at full speed; everything else
goes to the supervisor by user notification, which serves it, refuses it, or (for a few calls
whose arguments are plain values) lets the kernel continue. Calls of another architecture
(``int 0x80``) and of the x32 ABI fail with ``ENOSYS`` in the filter itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Iterable

from occlum.abi.syscalls import NR

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000

SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SETFD = 1
SECCOMP_ADDFD_FLAG_SEND = 2
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (ord("!") << 8) | nr


NOTIF_SIZE = 80
RESP_SIZE = 24
IOCTL_NOTIF_RECV = _iowr(0, NOTIF_SIZE)
IOCTL_NOTIF_SEND = _iowr(1, RESP_SIZE)
IOCTL_NOTIF_ID_VALID = _iow(2, 8)
IOCTL_NOTIF_ADDFD = _iow(3, 24)
IOCTL_NOTIF_SET_FLAGS = _iow(4, 8)

# Calls that never name a path, a process outside the caller's reach, or the machine: they run
# natively. Anything not listed is served (or refused) by the supervisor. (mmap is native below
# LARGE_MMAP; the socket calls of ADDRESS_ARGUMENTS without an address.)
NATIVE_SYSCALLS: tuple[str, ...] = (
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "dup", "dup2", "dup3", "flock", "ioctl",
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
    "socket", "shutdown", "listen", "getsockopt", "setsockopt",
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

# Native calls the filter looks at the arguments of (see build_filter), for docs/syscalls.md
ARGUMENT_RULES: dict[str, str] = {
    "socket": "AF_NETLINK other than NETLINK_ROUTE: EPROTONOSUPPORT in the filter",
    "mmap": "native below LARGE_MMAP (64 MiB)",
    "ioctl": "TIOCSTI: EIO, TIOCLINUX: EPERM in the filter",
    "fcntl": "F_CREATED_QUERY: EINVAL in the filter (as before Linux 6.12); F_SETLEASE served",
    "prctl": "served for PR_[GS]ET_KEEPCAPS and PR_CAPBSET_{READ,DROP} (LibOS capabilities)",
    "clone": "served (and refused) when it asks for new namespaces",
    "exit_group": "served with a non-zero status (the address space used is checked)",
    "sendto": "native without a destination address",
    "recvfrom": "native without a source address buffer",
    "accept": "native without an address buffer",
    "accept4": "native without an address buffer",
}


def _stmt(code: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


# ioctl requests refused to every program: TIOCSTI pushes a byte into a terminal's input as if
# typed, TIOCLINUX's selection calls paste into a virtual console's; on a terminal of the host
# (`occlum run` from a shell) either would type commands for the user's shell once occlum exits
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
F_CREATED_QUERY = 1028  # F_LINUX_SPECIFIC_BASE + 4, Linux 6.12

# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (the low byte is the exit signal)
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_JGE_K = 0x35
_JA = 0x05
_RET_K = 0x06


# (call, index of its address argument): native when that pointer is NULL, served otherwise
ADDRESS_ARGUMENTS: tuple[tuple[str, int], ...] = (
    ("sendto", 4),  # dest_addr
    ("recvfrom", 4),  # src_addr
    ("accept", 1),  # addr
    ("accept4", 1),  # addr
)


def _served_with_pointer(nr: int, arg: int) -> list[bytes]:
    """Call ``nr``: allowed when its argument ``arg`` is 0, sent to the supervisor otherwise.
    The accumulator holds the call number again afterwards, for the comparisons that follow."""
    low = 16 + 8 * arg  # seccomp_data.args[arg], low word first
    return [
        _jump(_JEQ_K, nr, 0, 6),
        _stmt(_LD_W_ABS, low),
        _jump(_JEQ_K, 0, 0, 3),
        _stmt(_LD_W_ABS, low + 4),
        _jump(_JEQ_K, 0, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        _stmt(_RET_K, SECCOMP_RET_USER_NOTIF),
        _stmt(_LD_W_ABS, 0),
    ]


AF_NETLINK = 16
NETLINK_ROUTE = 0
EPROTONOSUPPORT = 93


def _netlink_families_refused() -> list[bytes]:
    """socket(AF_NETLINK, type, protocol): native for NETLINK_ROUTE (the interfaces, addresses
    and routes any program on the instance's network sees), EPROTONOSUPPORT for every other
    family, as from a kernel built without it. On the host's network the others show host
    state no container there would see: every host Unix socket and its path (SOCK_DIAG),
    device events (KOBJECT_UEVENT), audit, process events and taskstats of host processes
    (CONNECTOR, GENERIC), firewall, IPsec, SELinux... socketpair(AF_NETLINK) fails in the
    kernel, and no other call makes a netlink socket. The accumulator holds the call number
    again afterwards."""
    return [
        _jump(_JEQ_K, NR["socket"], 0, 6),
        _stmt(_LD_W_ABS, 16),  # low word of args[0], the domain (an int)
        _jump(_JEQ_K, AF_NETLINK, 0, 3),
        _stmt(_LD_W_ABS, 32),  # low word of args[2], the protocol (an int)
        _jump(_JEQ_K, NETLINK_ROUTE, 1, 0),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | EPROTONOSUPPORT),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        _stmt(_LD_W_ABS, 0),
    ]


# an mmap of at least this many bytes is shown to the supervisor (then continues as made): a
# reservation this large is how Java, Go and V8 start, and where an address-space limit stops
# them; smaller ones, the hot path, stay native
LARGE_MMAP = 64 << 20


# fcntl(F_SETLEASE) is shown to the supervisor: a lease on a LibOS file would make the
# supervisor's own open of that file for another program wait for the lease's break
F_SETLEASE = 1024
# prctl options shown to the supervisor: they read or change the capabilities the LibOS keeps
# (PR_GET_KEEPCAPS, PR_SET_KEEPCAPS, PR_CAPBSET_READ, PR_CAPBSET_DROP)
PRCTL_SERVED = (7, 8, 23, 24)


def _served_when_large(nr: int, arg: int, least: int) -> list[bytes]:
    """Call ``nr``: sent to the supervisor when its argument ``arg`` is at least ``least``
    (below 4 GiB), allowed otherwise. The accumulator holds the call number again afterwards."""
    low = 16 + 8 * arg
    return [
        _jump(_JEQ_K, nr, 0, 6),
        _stmt(_LD_W_ABS, low + 4),
        _jump(_JEQ_K, 0, 0, 3),  # 4 GiB or more: served
        _stmt(_LD_W_ABS, low),
        _jump(_JGE_K, least, 1, 0),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        _stmt(_RET_K, SECCOMP_RET_USER_NOTIF),
        _stmt(_LD_W_ABS, 0),
    ]


def build_filter(native: Iterable[str] = NATIVE_SYSCALLS, *, every_exit: bool = False) -> bytes:
    """Assemble the classic-BPF program: arch check, x32 refusal, native list, else notify.

    ``exit_group`` is served only with a non-zero status (the LibOS then looks at the address
    space the program used, in case it failed for want of memory), or always with
    ``every_exit`` (``occlum doctor`` measures every process): a successful exit costs no
    round trip, which spawn-heavy programs (shells, make) feel."""
    numbers = sorted({NR[name] for name in native if name in NR})
    prog = [
        _stmt(_LD_W_ABS, 4),  # seccomp_data.arch
        _jump(_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | 38),  # ENOSYS for int 0x80 and other ABIs
        _stmt(_LD_W_ABS, 0),  # seccomp_data.nr
        _jump(_JSET_K, X32_SYSCALL_BIT, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | 38),
        # clone3 keeps its flags in memory, out of the filter's sight: ENOSYS makes C libraries
        # fall back to clone, whose flags the filter can check
        _jump(_JEQ_K, NR["clone3"], 0, 1),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | 38),
        # clone: native unless it asks for new namespaces (the supervisor refuses those)
        _jump(_JEQ_K, NR["clone"], 0, 4),
        _stmt(_LD_W_ABS, 16),  # low word of args[0], the clone flags
        _jump(_JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_USER_NOTIF),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        _stmt(_LD_W_ABS, 0),
        _jump(_JEQ_K, NR["exit_group"], 0, 4),
        _stmt(_LD_W_ABS, 16),  # low word of args[0], the status
        _jump(_JEQ_K, 0, 0, 1) if not every_exit else _jump(_JA, 1, 0, 0),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        _stmt(_RET_K, SECCOMP_RET_USER_NOTIF),
        _stmt(_LD_W_ABS, 0),
        # ioctl: native, but for the two requests that put bytes into a terminal's input
        # (docs/internals.md, "Terminals"); the kernel reads the request as an unsigned int, so
        # the low word is all of it
        _jump(_JEQ_K, NR["ioctl"], 0, 6),
        _stmt(_LD_W_ABS, 24),  # low word of args[1], the request
        _jump(_JEQ_K, TIOCSTI, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | errno.EIO),  # as Linux with legacy_tiocsti=0
        _jump(_JEQ_K, TIOCLINUX, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | errno.EPERM),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        # fcntl: native, but F_CREATED_QUERY would ask the host object, which the LibOS
        # made itself (a memfd, a reopened descriptor), never "created by this open": EINVAL,
        # the answer of a kernel without the command, rather than a wrong 0; and F_SETLEASE
        # goes to the supervisor (see F_SETLEASE)
        _jump(_JEQ_K, NR["fcntl"], 0, 6),
        _stmt(_LD_W_ABS, 24),  # low word of args[1], the command (an unsigned int)
        _jump(_JEQ_K, F_CREATED_QUERY, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | errno.EINVAL),
        _jump(_JEQ_K, F_SETLEASE, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_USER_NOTIF),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        # prctl: native, but for the options that read or change the LibOS's capabilities
        _jump(_JEQ_K, NR["prctl"], 0, 3 + len(PRCTL_SERVED)),
        _stmt(_LD_W_ABS, 16),  # low word of args[0], the option (an int)
        *(_jump(_JEQ_K, option, len(PRCTL_SERVED) - i, 0) for i, option in enumerate(PRCTL_SERVED)),
        _stmt(_RET_K, SECCOMP_RET_ALLOW),
        _stmt(_RET_K, SECCOMP_RET_USER_NOTIF),
    ]
    # Socket calls that are native without an address (send() and recv() on a connected
    # socket, accept() of a server that does not ask who called: the data path): with one,
    # the address may name a Unix socket, which the supervisor resolves or reports
    for name, arg in ADDRESS_ARGUMENTS:
        prog += _served_with_pointer(NR[name], arg)
    prog += _netlink_families_refused()
    prog += _served_when_large(NR["mmap"], 1, LARGE_MMAP)  # its length
    count = len(numbers)
    for i, nr in enumerate(numbers):
        # jump forward to the ALLOW return that follows the last comparison
        prog.append(_jump(_JEQ_K, nr, count - i, 0))
    prog.append(_stmt(_RET_K, SECCOMP_RET_USER_NOTIF))
    prog.append(_stmt(_RET_K, SECCOMP_RET_ALLOW))
    return b"".join(prog)


_NOTIF = struct.Struct("<QIIiIQ6Q")
_ZERO_NOTIF = bytes(NOTIF_SIZE)
_RESP = struct.Struct("<QqiI")
_ADDFD = struct.Struct("<QIIII")


class Listener:
    """The supervisor's end of the notification channel of one LibOS instance."""

    __slots__ = ("_buf", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray(NOTIF_SIZE)
        try:
            fcntl.ioctl(fd, IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
        except OSError:
            pass  # kernel < 6.6: correct, only slower wake-ups

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def receive(self) -> tuple[int, int, int, int, tuple[int, ...]]:
        """Return (id, pid, nr, instruction_pointer, args); raises OSError (ENOENT: caller died)."""
        buf = self._buf
        buf[:] = _ZERO_NOTIF  # the kernel insists on a zeroed struct
        fcntl.ioctl(self.fd, IOCTL_NOTIF_RECV, buf, True)
        f = _NOTIF.unpack(buf)
        return f[0], f[1], f[3], f[5], f[6:12]

    def respond(self, notif_id: int, value: int = 0, error: int = 0, flags: int = 0) -> None:
        """Answer a notification: value on success or error as a negative errno."""
        try:
            fcntl.ioctl(self.fd, IOCTL_NOTIF_SEND, _RESP.pack(notif_id, value, error, flags))
        except OSError:
            pass  # ENOENT: the process died or was interrupted meanwhile; nothing to answer

    def proceed(self, notif_id: int) -> None:
        """Let the kernel run the call as the program made it (values only, never pointers)."""
        self.respond(notif_id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)

    def id_valid(self, notif_id: int) -> bool:
        try:
            fcntl.ioctl(self.fd, IOCTL_NOTIF_ID_VALID, struct.pack("<Q", notif_id))
            return True
        except OSError:
            return False

    def add_fd(
        self, notif_id: int, fd: int, cloexec: bool, send: bool, target: int | None = None
    ) -> int:
        """Install our ``fd`` into the caller; with ``send`` it also answers with the number.
        With ``target`` it takes that descriptor number, replacing what was there (as dup2)."""
        flags = SECCOMP_ADDFD_FLAG_SEND if send else 0
        if target is not None:
            flags |= SECCOMP_ADDFD_FLAG_SETFD
        newfd_flags = 0o2000000 if cloexec else 0
        arg = bytearray(_ADDFD.pack(notif_id, flags, fd, target or 0, newfd_flags))
        return int(fcntl.ioctl(self.fd, IOCTL_NOTIF_ADDFD, arg, True))
