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
