"""Arguments decoded once, by the row's kinds (``Entry.decode``): C ints, longs, and named flag
sets whose unknown bits are refused, cleared or passed on as Linux does for that call."""

from __future__ import annotations

import errno

import pytest

from occlum.abi.errors import SyscallError
from occlum.abi.flagsets import FLAG_SETS, OPENAT2, RESOLVE, XATTR, FlagSet
from occlum.abi.syscalls import NR
from occlum.kernel.api import Entry
from occlum.syscalls.table import build_table

HI = 0x5A5A_0000_0000_0000  # garbage in a register's upper half


def _errno(entry: Entry, *args: int) -> int:
    with pytest.raises(SyscallError) as info:
        entry.decode(args)
    return info.value.errno


def test_refused_bits_are_einval_before_the_handler() -> None:
    table = build_table()
    cases = {
        "newfstatat": (-100, 1, 2, 0x8),
        "statx": (-100, 1, 0x8, 0x7FF, 2),
        "faccessat2": (-100, 1, 4, 0x80000),
        "unlinkat": (-100, 1, 0x100),  # AT_SYMLINK_NOFOLLOW is not unlinkat's
        "linkat": (-100, 1, -100, 2, 0x100),
        "fchownat": (-100, 1, 0, 0, 0x400),
        "fchmodat2": (-100, 1, 0o600, 0x8),
        "utimensat": (-100, 1, 0, 0x8),
        "execveat": (-100, 1, 2, 3, 0x8),
        "renameat2": (-100, 1, -100, 2, 0x8),
        "setxattr": (1, 2, 3, 1, 0x4),
        "fsetxattr": (3, 2, 3, 1, 0x4),
        "setxattrat": (-100, 1, 0x8, 2, 3, 16),
        "removexattrat": (-100, 1, 0x8, 2),
        "msync": (0x1000, 4096, 0x8),
        "umount2": (1, 0x10),
        "pidfd_send_signal": (3, 0, 0, 0x8),
        "access": (1, 8),
        "faccessat": (-100, 1, 0x10),
    }
    for name, args in cases.items():
        assert _errno(table[NR[name]], *args) == errno.EINVAL, name


def test_exclusive_bits_and_reserved_bits() -> None:
    table = build_table()
    assert _errno(table[NR["renameat2"]], -100, 1, -100, 2, 1 | 2) == errno.EINVAL
    assert _errno(table[NR["renameat2"]], -100, 1, -100, 2, 2 | 4) == errno.EINVAL
    assert _errno(table[NR["statx"]], -100, 1, 0x6000, 0x7FF, 2) == errno.EINVAL
    assert _errno(table[NR["statx"]], -100, 1, 0, 0x8000_0000, 2) == errno.EINVAL
    assert _errno(table[NR["msync"]], 0x1000, 4096, 1 | 4) == errno.EINVAL
    assert _errno(table[NR["pidfd_send_signal"]], 3, 0, 0, 1 | 2) == errno.EINVAL
    # what the call takes goes through unchanged
    assert table[NR["statx"]].decode((-100, 1, 0x2000, 0x4000_0FFF, 2))[2:4] == (
        0x2000,
        0x4000_0FFF,  # an unknown mask bit is the kernel's to ignore
    )
    assert table[NR["newfstatat"]].decode((-100, 1, 2, 0x6000))[3] == 0x6000  # both: fine
    assert table[NR["renameat2"]].decode((-100, 1, -100, 2, HI | 2))[4] == 2


def test_open_drops_unknown_bits_openat2_refuses_them() -> None:
    table = build_table()
    for name, flags_at in (("open", 1), ("openat", 2)):
        args = [-100] * 4
        args[flags_at] = HI | 0x4000_0000 | 0x20 | 0o2000000 | 0o100 | 2
        out = table[NR[name]].decode(args[: len(table[NR[name]].kinds)])
        assert out[flags_at] == 0o2000000 | 0o100 | 2, name  # O_CLOEXEC|O_CREAT|O_RDWR
    assert OPENAT2.check(0o2000000) == 0o2000000
    for bad in (0x20, 1 << 40, 0x4000_0000):
        with pytest.raises(SyscallError) as info:
            OPENAT2.check(bad)
        assert info.value.errno == errno.EINVAL
    for bad in (0x40, 0x08 | 0x10):  # unknown; RESOLVE_BENEATH with RESOLVE_IN_ROOT
        with pytest.raises(SyscallError):
            RESOLVE.check(bad)
    with pytest.raises(SyscallError):
        XATTR.check(4)


def test_ignored_sets_pass_bits_on() -> None:
    table = build_table()
    sendto = table[NR["sendto"]]  # MSG_*: a C int, unknown bits the protocol's business
    assert sendto.decode((3, 1, 2, HI | 0x8000_0040, 0, 0))[3] == -0x8000_0000 + 0x40
    mmap = table[NR["mmap"]]  # prot and flags: unsigned long, the kernel judges them
    assert mmap.decode((0, 4096, 1 << 40 | 3, 0x22, 0xFFFF_FFFF, 0))[2:4] == (1 << 40 | 3, 0x22)


def test_kinds() -> None:
    table = build_table()
    getdents = table[NR["getdents64"]]  # an unsigned int count
    assert getdents.decode((HI | 3, 1, HI | 0xFFFF_FFFF)) == (3, 1, 0xFFFF_FFFF)
    fcntl = table[NR["fcntl"]]  # F_SETLEASE's argument is read as an int
    assert fcntl.decode((3, 1024, 0x1_0000_0002)) == (3, 1024, 2)
    getxattr = table[NR["getxattr"]]  # a size_t stays what it is
    assert getxattr.decode((1, 2, 3, 1 << 40)) == (1, 2, 3, 1 << 40)
    connect = table[NR["connect"]]  # the address length is an int
    assert connect.decode((3, 1, 0xFFFF_FFFF)) == (3, 1, -1)
    with pytest.raises(ValueError, match="unknown argument kind"):
        Entry("x", lambda *a: 0, ("fd", "flagz"), "full")


def test_names_for_the_trace() -> None:
    assert FLAG_SETS["oflags"].format(0o2200000 | 0x4) == "O_RDONLY|O_DIRECTORY|O_CLOEXEC|0x4"
    assert FLAG_SETS["at_unlink"].format(0x200) == "AT_REMOVEDIR"
    assert FLAG_SETS["at_access"].format(0x200) == "AT_EACCESS"
    assert FLAG_SETS["access_mode"].format(0) == "F_OK"
    assert FLAG_SETS["access_mode"].format(6) == "R_OK|W_OK"
    assert FLAG_SETS["map"].format(0x22) == "MAP_PRIVATE|MAP_ANONYMOUS"
    assert FLAG_SETS["rename"].format(0) == "0"
    assert FlagSet("t", ((1, "A"),), "refuse").refused == 0xFFFF_FFFE


def test_mount_flags_are_the_low_32_bits() -> None:
    mount = build_table()[NR["mount"]]
    assert mount.decode((1, 2, 3, 1 << 40 | 0xC0ED0001, 4))[3] == 0xC0ED0001
    assert FLAG_SETS["mount"].format(0xC0ED0001) == "MS_MGC_VAL|MS_RDONLY"
