"""Every x86-64 system call number is native, served or refused with a reason, and
docs/syscalls.md says which."""

from __future__ import annotations

from pathlib import Path

from occlum.abi.syscalls import NR
from occlum.syscalls.catalogue import catalogue, markdown
from occlum.syscalls.deviations import DEVIATIONS
from occlum.syscalls.native import NATIVE, RULES
from occlum.syscalls.refused import REFUSED
from occlum.syscalls.table import SERVED, build_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "syscalls.md"


def test_every_number_has_one_class() -> None:
    fates = catalogue()  # raises for a number in no class or in two
    assert [f.nr for f in fates] == sorted(NR.values())
    assert len(fates) == len(NR)


def test_every_listed_name_is_a_system_call() -> None:
    for names in (NATIVE, SERVED, REFUSED, RULES):
        assert not set(names) - set(NR)


def test_every_refusal_has_a_reason_the_table_shows() -> None:
    table = build_table()
    for name, (_, why) in REFUSED.items():
        assert why
        assert why in table[NR[name]].note


def test_docs_page_is_current() -> None:
    assert DOC.read_text() == markdown(), (
        "docs/syscalls.md is stale: python -m occlum.syscalls.catalogue > docs/syscalls.md"
    )


def test_legacy_calls_still_in_use_are_served() -> None:
    assert "getdents" in SERVED and "futimesat" in SERVED
    # a call taking a path is never native
    assert "inotify_add_watch" not in NATIVE


def test_deviations_name_real_calls_and_are_listed() -> None:
    text = DOC.read_text()
    assert "## Deviations that stay" in text
    for d in DEVIATIONS:
        assert d.calls and d.what and d.why
        assert not set(d.calls) - set(NR), d.calls
        assert d.what in text
    # the ones the issue named: a program's own seccomp filter, setting the clock
    named = {c for d in DEVIATIONS for c in d.calls}
    assert {"seccomp", "clock_settime"} <= named


def test_descriptor_arguments_are_decoded_as_c_ints() -> None:
    """The serving loop hands handlers fd, dirfd and s32 arguments as Linux reads them, the low
    32 bits signed, flag sets and modes unsigned; addresses and sizes keep the register's
    value (tests/unit/test_arg_decode.py has the flag sets)."""
    table = build_table()
    openat = table[NR["openat"]]
    assert [kind for kind in openat.kinds] == ["dirfd", "path", "oflags", "mode"]
    assert openat.decode((0xFFFFFFFFFFFFFF9C, 1 << 40, 0x1_0000_0002, 0o644)) == (
        -100,
        1 << 40,  # a pointer keeps the register's value
        2,
        0o644,
    )
    assert table[NR["renameat"]].decode((0x1_FFFF_FF9C, 1, 0x2_0000_0003, 2)) == (-100, 1, 3, 2)
    assert table[NR["fstat"]].decode((0x5A5A_0000_0000_0003, 0)) == (3, 0)
    mmap = table[NR["mmap"]]  # the descriptor only; the length and the masks as they are
    assert mmap.decode((0, 1 << 40, 1 << 33 | 3, 0x22, 0xFFFF_FFFF, 0)) == (
        0, 1 << 40, 1 << 33 | 3, 0x22, -1, 0,
    )  # fmt: skip
    assert table[NR["getuid"]].steps == ()
    kill = table[NR["kill"]]  # a pid and a signal: C ints
    assert kill.decode((0x5A5A_0000_FFFF_FFFF, 0x1_0000_0009)) == (-1, 9)
    truncate = table[NR["truncate"]]  # "int" is a long there: the register, signed
    assert truncate.decode((0x1000, 0xFFFF_FFFF_FFFF_FFFF)) == (0x1000, -1)
    assert truncate.decode((0x1000, 0x1_0000_0000)) == (0x1000, 1 << 32)
    assert table[NR["setresuid"]].decode((0xFFFF_FFFF_FFFF_FFFF,) * 3) == (0xFFFFFFFF,) * 3
    assert table[NR["access"]].decode((0x1000, 0x5A5A_0000_0000_0004)) == (0x1000, 4)
    unlinkat = table[NR["unlinkat"]]
    assert unlinkat.decode((0xFFFFFF9C, 7, 0x5A5A_0000_0000_0200)) == (-100, 7, 0x200)
