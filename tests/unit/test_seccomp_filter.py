"""The seccomp filter's verdicts, by running its classic-BPF program on sample calls."""

from __future__ import annotations

import errno
import struct

import pytest

from occlum.abi.syscalls import NR
from occlum.platform import seccomp
from occlum.platform.seccomp import (
    AUDIT_ARCH_X86_64,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SECCOMP_RET_USER_NOTIF,
    X32_SYSCALL_BIT,
)
from occlum.syscalls.native import NATIVE, RULES
from occlum.syscalls.refused import REFUSED
from occlum.syscalls.table import SERVED, filter_program, make_rows, rows

ENOSYS, EPROTONOSUPPORT = 38, 93
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_ALG = 1, 2, 10, 16, 38
AUDIT_ARCH_I386 = 0x40000003


def run(prog: bytes, nr: int, args: tuple[int, ...] = (), arch: int = AUDIT_ARCH_X86_64) -> int:
    """Run the filter on seccomp_data for call number ``nr`` with ``args``."""
    full = (list(args) + [0] * 6)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *full)
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x15:  # jeq #k
            pc += jt if acc == k else jf
        elif code == 0x35:  # jge #k
            pc += jt if acc >= k else jf
        elif code == 0x45:  # jset #k
            pc += jt if acc & k else jf
        elif code == 0x05:  # ja
            pc += k
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


def verdict(prog: bytes, name: str, *args: int) -> int:
    return run(prog, NR[name], args)


def test_netlink_families_other_than_route_are_refused() -> None:
    prog = filter_program()
    assert verdict(prog, "socket", AF_NETLINK, 3, 0) == SECCOMP_RET_USER_NOTIF  # NETLINK_ROUTE
    for family in (4, 9, 11, 15, 16, 31, 32):  # SOCK_DIAG, AUDIT, CONNECTOR, UEVENT, GENERIC
        assert verdict(prog, "socket", AF_NETLINK, 3, family) == (
            SECCOMP_RET_ERRNO | EPROTONOSUPPORT
        )
    # the upper words of the int arguments do not count, as in the kernel
    assert verdict(prog, "socket", AF_NETLINK | 1 << 32, 3, 4) == (
        SECCOMP_RET_ERRNO | EPROTONOSUPPORT
    )
    # IPv4 and IPv6 are made by the supervisor (on the host's network); Unix and the rest
    # natively, in the instance's own network namespace
    assert verdict(prog, "socket", AF_INET, 1, 6) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "socket", AF_INET6 | 1 << 32, 2, 0) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "socket", AF_UNIX, 1, 4) == SECCOMP_RET_ALLOW
    assert verdict(prog, "socket", AF_ALG, 5, 0) == SECCOMP_RET_ALLOW


def test_calls_keep_their_class() -> None:
    prog = filter_program()
    assert verdict(prog, "getpid") == SECCOMP_RET_ALLOW
    assert verdict(prog, "mq_open") == SECCOMP_RET_ALLOW
    assert verdict(prog, "futex_wait") == SECCOMP_RET_ALLOW
    assert verdict(prog, "clone3") == SECCOMP_RET_ERRNO | ENOSYS
    # a call that names a path, or acts on host objects, reaches the supervisor
    for name in ("openat", "getdents", "futimesat", "inotify_add_watch", "landlock_add_rule"):
        assert verdict(prog, name) == SECCOMP_RET_USER_NOTIF, name
    assert verdict(prog, "sendto", 3, 0, 0, 0, 0, 0) == SECCOMP_RET_ALLOW
    assert verdict(prog, "sendto", 3, 0, 0, 0, 0x1000, 16) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "mmap", 0, 4096) == SECCOMP_RET_ALLOW
    assert verdict(prog, "mmap", 0, 1 << 30) == SECCOMP_RET_USER_NOTIF


def test_every_row_is_decided_as_its_class() -> None:
    """Without arguments, every number gets what its row says; calls of another ABI fail."""
    for every_exit in (False, True):
        prog = filter_program(every_exit=every_exit)
        table = rows()
        for nr in range(max(NR.values()) + 64):
            row = table.get(nr)
            got = run(prog, nr)
            if row is None or (row.kind != "native" and row.rule is None):
                want = SECCOMP_RET_USER_NOTIF  # served, refused by the LibOS, or unknown
            elif row.name == "clone3":
                want = SECCOMP_RET_ERRNO | errno.ENOSYS
            elif row.name == "exit_group" and every_exit:
                want = SECCOMP_RET_USER_NOTIF
            else:
                want = SECCOMP_RET_ALLOW  # native, or a rule's native form (all zero)
            assert got == want, (nr, row)
            assert run(prog, nr | X32_SYSCALL_BIT) == SECCOMP_RET_ERRNO | ENOSYS
            assert run(prog, nr, arch=AUDIT_ARCH_I386) == SECCOMP_RET_ERRNO | ENOSYS


def test_argument_rules_decide() -> None:
    prog = filter_program()
    assert verdict(prog, "clone", 0x11 | 0x20000000) == SECCOMP_RET_USER_NOTIF  # CLONE_NEWPID
    assert verdict(prog, "clone", 0x11 | 0x00010000 | 0x100) == SECCOMP_RET_ALLOW
    assert verdict(prog, "exit_group", 1) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "exit_group", 1 << 32) == SECCOMP_RET_ALLOW  # an int: the low word
    assert verdict(filter_program(every_exit=True), "exit_group", 0) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "ioctl", 0, 0x5412) == SECCOMP_RET_ERRNO | errno.EIO
    assert verdict(prog, "ioctl", 0, 0x541C) == SECCOMP_RET_ERRNO | errno.EPERM
    assert verdict(prog, "ioctl", 0, 0x5401) == SECCOMP_RET_ALLOW
    # the network device requests, SIOCGIFNAME .. SIOCGIFMAP, are served; the rest native
    for request in (0x8910, 0x8933, 0x8970, 0x8912 | 1 << 32):
        assert verdict(prog, "ioctl", 0, request) == SECCOMP_RET_USER_NOTIF, hex(request)
    for request in (0x890F, 0x8971, 0x541B, 0x8906):
        assert verdict(prog, "ioctl", 0, request) == SECCOMP_RET_ALLOW, hex(request)
    assert verdict(prog, "fcntl", 0, 1028) == SECCOMP_RET_ERRNO | errno.EINVAL
    assert verdict(prog, "fcntl", 0, 1024) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "fcntl", 0, 1) == SECCOMP_RET_ALLOW
    for option in (7, 8, 23, 24):
        assert verdict(prog, "prctl", option) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "prctl", 15) == SECCOMP_RET_ALLOW  # PR_SET_NAME
    assert verdict(prog, "sendto", 3, 0, 0, 0, 1 << 32) == SECCOMP_RET_USER_NOTIF  # high word
    # a server's data path: native with an address buffer too
    for name in ("accept", "accept4", "recvfrom", "recvmsg", "getsockname", "getpeername"):
        assert verdict(prog, name, 3, 0x1000, 0x2000, 0, 0x3000, 0x4000) == SECCOMP_RET_ALLOW
    assert verdict(prog, "mmap", 0, 1 << 32) == SECCOMP_RET_USER_NOTIF
    assert verdict(prog, "mmap", 0, (64 << 20) - 1) == SECCOMP_RET_ALLOW


def test_rows_refuse_a_number_in_two_classes_or_none() -> None:
    native = [n for n in NATIVE if n != "getpid"]
    with pytest.raises(ValueError, match=r"getpid .*no class"):
        make_rows(native, SERVED, REFUSED, RULES)
    with pytest.raises(ValueError, match=r"openat .*native, served"):
        make_rows([*NATIVE, "openat"], SERVED, REFUSED, RULES)
    with pytest.raises(ValueError, match="not x86-64 system calls: no_such_call"):
        make_rows([*NATIVE, "no_such_call"], SERVED, REFUSED, RULES)
    # a rule that can send a call to the supervisor needs a handler for it
    rules = {**RULES, "getpid": (seccomp.served_unless_zero(0), "")}
    with pytest.raises(ValueError, match=r"getpid .*nothing serves it"):
        make_rows(NATIVE, SERVED, REFUSED, rules)


def test_large_mmaps_the_supervisor_only_lets_through_stay_native() -> None:
    """sys_mmap looks at a large mapping only when it is neither MAP_FIXED nor one of
    malloc's arena reservations: the filter keeps those native, and sends the rest."""
    prog = filter_program()
    mib = 1 << 20
    private_anon, noreserve, fixed = 0x22, 0x4000, 0x10
    for size in (64 * mib, 128 * mib):  # new_heap: PROT_NONE, MAP_NORESERVE
        assert verdict(prog, "mmap", 0, size, 0, private_anon | noreserve) == SECCOMP_RET_ALLOW
        assert verdict(prog, "mmap", 0, size, 1, private_anon | noreserve) == (
            SECCOMP_RET_USER_NOTIF
        )
        assert verdict(prog, "mmap", 0, size, 1 << 32, private_anon | noreserve) == (
            SECCOMP_RET_USER_NOTIF
        )
        assert verdict(prog, "mmap", 0, size, 0, private_anon) == SECCOMP_RET_USER_NOTIF
    for size in (96 * mib, 256 * mib, 1 << 30):  # another size: a JVM's, Go's reservation
        assert verdict(prog, "mmap", 0, size, 0, private_anon | noreserve) == (
            SECCOMP_RET_USER_NOTIF
        )
    for size in (64 * mib, 1 << 30, 5 << 30):
        assert verdict(prog, "mmap", 0xC0000000, size, 3, private_anon | fixed) == (
            SECCOMP_RET_ALLOW
        )
    assert verdict(prog, "mmap", 0, 5 << 30, 0, private_anon | noreserve) == (
        SECCOMP_RET_USER_NOTIF
    )
    assert verdict(prog, "mmap", 0, 4096, 3, private_anon) == SECCOMP_RET_ALLOW
