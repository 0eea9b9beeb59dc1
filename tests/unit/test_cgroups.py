"""The cgroups an instance makes: a killed instance's are removed by the next one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from occlum.platform.limits import remove_stale


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_groups_of_a_supervisor_that_is_gone_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    assert not os.path.exists(f"/proc/{dead}")
    for name in (f"occlum-{dead}-1", f"occlum-{dead}-2", f"occlum-{os.getpid()}-1", "other-1"):
        (tmp_path / name).mkdir()
    (tmp_path / f"occlum-{dead}-2" / "busy").mkdir()  # a group that still holds something
    remove_stale(tmp_path, "occlum")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"occlum-{dead}-2", f"occlum-{os.getpid()}-1", "other-1"])


def test_memory_usage_is_read_from_one_open_file(tmp_path: Path) -> None:
    """sysinfo asks for the group's usage at every call: the file is opened once and read
    again at each call (a value the kernel changes is seen), and closed at the removal."""
    from occlum.platform.limits import MemoryCgroup

    group = tmp_path / "occlum-1-1"
    group.mkdir()
    usage = group / "memory.usage_in_bytes"
    usage.write_text("4096\n")
    mem = MemoryCgroup(group, 1 << 30, v2=False)
    assert mem.usage() == 4096
    held = os.readlink(f"/proc/self/fd/{mem._usage_fd}")
    assert held == str(usage)
    with open(usage, "r+") as f:  # the same file, new contents (as the kernel's)
        f.write("8192\n")
    usage.rename(group / "moved")  # opened by path no more: only the open file has it
    assert mem.usage() == 8192
    (group / "moved").unlink()
    mem.remove()
    assert mem._usage_fd == -1 and not group.exists()
