"""SEFS on a full disk, through `occlum run`: the instance's run/mount is a 24 MiB tmpfs.

``sefs_full fill /root`` (tests/c/diag/sefs_full.c) writes 1 MiB files with fsync until one
fails with ENOSPC, then deletes four, fsyncs the directory, fsyncs the file that did not fit
again, writes another and truncates one; the next run sees exactly that.  A program whose
writes cannot be stored at exit makes `occlum run` fail; `occlum fsck --compact` brings the
stored size back to the live size.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"
MIB = 1 << 20


@pytest.fixture()
def inst(tmp_path: Path) -> Iterator[Instance]:
    i = Instance.new(tmp_path / "instance")
    i.configure()
    binary = libos.compile_c(DIAG / "sefs_full.c", tmp_path / "sefs_full")
    libos.place_with_dependencies(i.image, {"/bin/sefs_full": binary})
    i.build()
    mnt = i.path / "run" / "mount"
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        yield i
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def occlum(inst: Instance, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*libos._tool("occlum"), *args], cwd=inst.path, capture_output=True, text=True,
        timeout=300, check=False, env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip


def stored_bytes(inst: Instance) -> int:
    """What the root volume's objects and journal take on the host (the reserve aside)."""
    root = inst.path / "run" / "mount" / "__ROOT"
    return sum(p.stat().st_blocks * 512 for p in root.iterdir() if p.name != "reserve")


def test_a_full_disk_reports_enospc_commits_deletes_and_recovers(inst: Instance) -> None:
    res = inst.run(["/bin/sefs_full", "fill", "/root"])
    assert res.code == 0, res.describe()
    m = re.search(r"^fsync f(\d+): No space left on device$", res.stdout, re.M)
    assert m, res.stdout
    last = int(m[1])
    assert last > 8  # 24 MiB held that many 1 MiB files
    assert res.stdout.endswith(
        f"deleted: ok\nfsync f{last} again: ok\nstored g: ok\ntruncated f4: ok\n"
    ), res.stdout
    # the file that did not fit, said once in the log
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "does not fit" in lines[0] and "Traceback" not in res.stderr

    check = inst.run(["/bin/sefs_full", "check", "/root"])
    assert check.code == 0, check.describe()
    want = {f"f{n}": f"f{n} {MIB} ok" for n in range(5, last + 1)}
    want |= {"f4": "f4 1000 ok", "g": f"g {MIB} ok"}
    assert check.stdout.splitlines() == [want[k] for k in sorted(want)]

    # a program that exits 0 but whose writes cannot be stored: occlum run does not exit 0
    spill = inst.run(["/bin/sefs_full", "spill", "/root", "16"])
    assert spill.code == 1 and spill.stdout == "spilled 16 MiB\n", spill.describe()
    assert "does not fit" in spill.stderr and "exit-time commit failed" in spill.stderr
    assert len(spill.stderr.splitlines()) == 2
    after = inst.run(["/bin/sefs_full", "check", "/root"])
    assert after.code == 0 and "spill 0 ok" in after.stdout.splitlines(), after.describe()
    assert [ln for ln in after.stdout.splitlines() if not ln.startswith("spill")] == [
        want[k] for k in sorted(want)
    ]

    # stored against live: a checkpoint brings the stored size back to the live size
    live = (last - 4 + 1) * MIB + 1000
    fsck = occlum(inst, "fsck", "--compact", "--verify")
    assert fsck.returncode == 0 and "ok, compacted" in fsck.stdout, fsck.stdout + fsck.stderr
    assert live <= stored_bytes(inst) <= live + live // 50 + 256 * 1024
    spill_again = inst.run(["/bin/sefs_full", "spill", "/root", "1"])  # room again: stored
    assert spill_again.code == 0 and spill_again.stderr == "", spill_again.describe()
    final = inst.run(["/bin/sefs_full", "check", "/root"])
    assert f"spill {MIB} ok" in final.stdout.splitlines(), final.describe()


def test_fsck_needs_a_built_instance_and_says_so(tmp_path: Path) -> None:
    i = Instance.new(tmp_path / "instance")
    res = occlum(i, "fsck")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and "build" in res.stderr, res.stderr
