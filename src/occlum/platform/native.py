"""Raw system calls the standard library lacks, through ctypes. The only ctypes user besides
the rest of ``platform/``; everything here takes and returns plain ints and bytes."""

from __future__ import annotations

import ctypes
import os
import struct

from occlum.abi.syscalls import NR

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def syscall(nr: int, *args: int | bytes | ctypes.Array[ctypes.c_char] | None) -> int:
    """Call system call ``nr``; raise ``OSError`` on failure like ``os`` functions do."""
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    res = int(_syscall(ctypes.c_long(nr), *cargs))
    if res == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res


PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_DUMPABLE = 4

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return syscall(NR["prctl"], option, arg2, arg3, arg4, arg5)


def unshare(flags: int) -> None:
    syscall(NR["unshare"], flags)


def setns(fd: int, nstype: int) -> None:
    syscall(NR["setns"], fd, nstype)


def mount(
    source: bytes, target: bytes, fstype: bytes | None, flags: int, data: bytes | None
) -> None:
    syscall(NR["mount"], source, target, fstype, flags, data)


def umount2(target: bytes, flags: int) -> None:
    syscall(NR["umount2"], target, flags)


FSOPEN_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1


def detached_mount(fstype: bytes, options: dict[bytes, bytes]) -> int:
    """A new instance of ``fstype`` configured with ``options``, mounted nowhere: the
    returned descriptor is its root directory, reachable by no path of any mount namespace.
    The kernel parses and checks the options (a bad one gives ``EINVAL``)."""
    fsfd = syscall(NR["fsopen"], fstype, FSOPEN_CLOEXEC)
    try:
        for key, value in options.items():
            syscall(NR["fsconfig"], fsfd, FSCONFIG_SET_STRING, key, value, 0)
        syscall(NR["fsconfig"], fsfd, FSCONFIG_CMD_CREATE, None, None, 0)
        return syscall(NR["fsmount"], fsfd, FSMOUNT_CLOEXEC, 0)
    finally:
        os.close(fsfd)


def pivot_root(new_root: bytes, put_old: bytes) -> None:
    syscall(NR["pivot_root"], new_root, put_old)


def pidfd_getfd(pidfd: int, fd: int) -> int:
    return syscall(NR["pidfd_getfd"], pidfd, fd, 0)


def socket_fd(family: int, type_: int, protocol: int) -> int:
    """socket(2) with the arguments as the kernel takes them (Python's ``socket()`` reads a
    family, type or protocol of -1 as "the default")."""
    return syscall(NR["socket"], family, type_, protocol)


class _IfConf(ctypes.Structure):
    _fields_ = [("len", ctypes.c_int), ("buf", ctypes.c_void_p)]


SIOCGIFCONF = 0x8912
_IFCONF_MOST = 1 << 20


def ifconf(fd: int, length: int, ask: bool) -> tuple[int, bytes]:
    """``ioctl(fd, SIOCGIFCONF)`` with a buffer of ``length`` bytes (at most 1 MiB), or with
    none when ``ask`` (the kernel then says how much it needs): (``ifc_len``, the bytes)."""
    size = max(0, min(length, _IFCONF_MOST))
    buf = ctypes.create_string_buffer(max(size, 1))
    req = _IfConf(length if length < 0 else size, None if ask else ctypes.addressof(buf))
    if _libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(SIOCGIFCONF), ctypes.byref(req)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    got = int(req.len)
    return got, b"" if ask else buf.raw[: max(0, min(got, size))]


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]


def process_vm_read(pid: int, addr: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``addr`` in process ``pid``, as the process itself may read them:
    unlike ``/proc/PID/mem`` (which forces access), a page it cannot read (PROT_NONE) ends the
    read. Short at the first unreadable page; ``OSError`` (EFAULT) if the first is one."""
    buf = ctypes.create_string_buffer(size)
    local = _IoVec(ctypes.addressof(buf), size)
    remote = _IoVec(addr, size)
    n = int(_process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw[:n]


_process_vm_writev = _libc.process_vm_writev
_process_vm_writev.restype = ctypes.c_ssize_t
_process_vm_writev.argtypes = _process_vm_readv.argtypes


def process_vm_write(pid: int, addr: int, data: bytes) -> int:
    """Write ``data`` at ``addr`` in process ``pid`` as the process itself may: a page it cannot
    write (read-only, PROT_NONE) ends the write. The count written; ``OSError`` (EFAULT) if the
    first page is one."""
    buf = ctypes.create_string_buffer(data, len(data))
    local = _IoVec(ctypes.addressof(buf), len(data))
    remote = _IoVec(addr, len(data))
    n = int(_process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return n


_SYSINFO = struct.Struct("<q3Q")  # the head of struct sysinfo: uptime, loads[3]


def uptime_and_loads() -> tuple[int, tuple[int, int, int]]:
    """The host's sysinfo(2) uptime and load averages, as Linux gives them to a program: the
    boot-time clock's seconds rounded up, and the averages in 1/65536ths."""
    buf = ctypes.create_string_buffer(112)
    syscall(NR["sysinfo"], buf)
    uptime, *loads = _SYSINFO.unpack_from(buf.raw)
    return uptime, (loads[0], loads[1], loads[2])


def sethostname(name: bytes) -> None:
    syscall(NR["sethostname"], name, len(name))


def drop_all_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable sets of this process."""
    for cap in range(64):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break
    # struct __user_cap_header_struct {u32 version; int pid}; version 3 takes two data structs.
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    syscall(NR["capset"], ctypes.addressof(header), ctypes.addressof(data))


LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1
LANDLOCK_SCOPE_SIGNAL = 2
LANDLOCK_SCOPE_ABI = 6  # the first Landlock ABI with scopes (Linux 6.12)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where Landlock is absent or disabled."""
    try:
        return syscall(NR["landlock_create_ruleset"], None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    except OSError:
        return 0


def landlock_scope(scopes: int) -> None:
    """Put the calling process, and all it forks, in a Landlock domain of its own with
    ``scopes`` only (no file or network rights are restricted). Needs no_new_privs."""

    class RulesetAttr(ctypes.Structure):
        _fields_ = [
            ("handled_access_fs", ctypes.c_uint64),
            ("handled_access_net", ctypes.c_uint64),
            ("scoped", ctypes.c_uint64),
        ]

    attr = RulesetAttr(0, 0, scopes)
    fd = syscall(NR["landlock_create_ruleset"], ctypes.addressof(attr), ctypes.sizeof(attr), 0)
    try:
        syscall(NR["landlock_restrict_self"], fd, 0)
    finally:
        os.close(fd)


def seccomp_set_filter(flags: int, program: bytes) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, &sock_fprog); returns the listener fd if asked."""
    n = len(program) // 8
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = (ctypes.c_uint64 * 2)(n, ctypes.addressof(buf))
    return syscall(NR["seccomp"], 1, flags, ctypes.addressof(fprog))


IN_CLOSE_WRITE = 0x8
IN_CLOSE_NOWRITE = 0x10
IN_DELETE_SELF = 0x400
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_MASK_ADD = 0x20000000


def inotify_init() -> int:
    """A non-blocking, close-on-exec inotify descriptor."""
    return syscall(NR["inotify_init1"], os.O_NONBLOCK | os.O_CLOEXEC)


def inotify_add_watch(fd: int, path: bytes, mask: int) -> int:
    return syscall(NR["inotify_add_watch"], fd, path, mask)
