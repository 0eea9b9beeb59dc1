"""The seccomp filter's verdicts, by running its classic-BPF program on sample calls."""

from __future__ import annotations

import struct

from occlum.abi.syscalls import NR
from occlum.platform.seccomp import (
    AUDIT_ARCH_X86_64,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SECCOMP_RET_USER_NOTIF,
    build_filter,
)

ENOSYS, EPROTONOSUPPORT = 38, 93
AF_UNIX, AF_INET, AF_NETLINK = 1, 2, 16


def verdict(prog: bytes, name: str, *args: int) -> int:
    """Run the filter on seccomp_data for the call ``name`` with ``args``."""
    full = (list(args) + [0] * 6)[:6]
    data = struct.pack("<iIQ6Q", NR[name], AUDIT_ARCH_X86_64, 0, *full)
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


def test_netlink_families_other_than_route_are_refused() -> None:
    prog = build_filter()
    assert verdict(prog, "socket", AF_NETLINK, 3, 0) == SECCOMP_RET_ALLOW  # NETLINK_ROUTE
    for family in (4, 9, 11, 15, 16, 31, 32):  # SOCK_DIAG, AUDIT, CONNECTOR, UEVENT, GENERIC
        assert verdict(prog, "socket", AF_NETLINK, 3, family) == (
            SECCOMP_RET_ERRNO | EPROTONOSUPPORT
        )
    # the upper words of the int arguments do not count, as in the kernel
    assert verdict(prog, "socket", AF_NETLINK | 1 << 32, 3, 4) == (
        SECCOMP_RET_ERRNO | EPROTONOSUPPORT
    )
    assert verdict(prog, "socket", AF_INET, 1, 6) == SECCOMP_RET_ALLOW
    assert verdict(prog, "socket", AF_UNIX, 1, 4) == SECCOMP_RET_ALLOW


def test_calls_keep_their_class() -> None:
    prog = build_filter()
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
