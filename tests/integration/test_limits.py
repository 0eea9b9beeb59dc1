"""Resource limits from Occlum.json: a fork bomb, a thread bomb and a memory hog inside hit
them, get Linux's errno, and the LibOS names the key to raise; nothing else is harmed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import libos
from libos import Instance
from occlum.platform.limits import pids_parent

pytestmark = pytest.mark.needs_root

DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"
THREADS = 8
MEMORY_MB = 64


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    base = tmp_path_factory.mktemp("limits")
    i = Instance.new(base / "instance")
    i.configure()
    cfg = json.loads(i.config_path.read_text())
    cfg["resource_limits"]["max_num_of_threads"] = THREADS
    cfg["resource_limits"]["user_space_size"] = f"{MEMORY_MB}MB"
    i.config_path.write_text(json.dumps(cfg))
    hog = libos.compile_c(DIAG / "hog.c", base / "hog", libos.Variant("o", "gcc", ("-pthread",)))
    libos.place_with_dependencies(
        i.image, {"/bin/hog": hog, "/bin/echo": Path("/bin/echo"), "/bin/sleep": Path("/bin/sleep")}
    )
    i.build()
    return i


@pytest.mark.skipif(os.geteuid() != 0, reason="the thread limit needs a pids cgroup (root)")
@pytest.mark.parametrize("kind", ["fork", "thread"])
def test_process_and_thread_bombs_get_eagain_and_a_named_key(inst: Instance, kind: str) -> None:
    res = inst.run(["/bin/hog", kind])
    assert res.code == 0, res.describe()
    verb = "fork" if kind == "fork" else "pthread_create"
    first = res.stdout.splitlines()[0]
    assert first.startswith(f"{verb} refused after "), res.describe()
    assert first.endswith("Resource temporarily unavailable")
    assert int(first.split()[3].rstrip(":")) <= THREADS + 1
    assert f"resource_limits.max_num_of_threads = {THREADS}" in res.stderr
    assert "raise it in Occlum.json" in res.stderr
    # the instance is fine afterwards: the next run works
    again = inst.run(["/bin/echo", "still here"])
    assert again.code == 0 and again.stdout == "still here\n", again.describe()


def test_a_memory_hog_gets_enomem_and_a_named_key(inst: Instance) -> None:
    res = inst.run(["/bin/hog", "memory"])
    assert res.code == 2, res.describe()
    line = res.stdout.strip()
    assert line.startswith("malloc refused after ") and line.endswith("Cannot allocate memory")
    assert int(line.split()[3]) < MEMORY_MB
    assert f"resource_limits.user_space_size = {MEMORY_MB}MB" in res.stderr
    assert f'raise user_space_size in Occlum.json (e.g. to "{2 * MEMORY_MB}MB")' in res.stderr


def _cgroup_of(pid: int) -> list[Path]:
    parent = pids_parent()
    assert parent is not None
    return sorted(parent.glob(f"occlum-{pid}-*"))


@pytest.mark.skipif(pids_parent() is None, reason="needs a writable pids cgroup (root)")
def test_a_killed_run_leaves_no_pids_cgroup_behind(inst: Instance) -> None:
    """kill -9 of `occlum run` cannot clean up: the next start removes the empty group."""
    proc = subprocess.Popen(
        [*libos._tool("occlum"), "run", "/bin/sleep", "60"], cwd=inst.path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [
            g for g in _cgroup_of(proc.pid) if (g / "cgroup.procs").read_text().split()
        ]:
            time.sleep(0.1)
        groups = _cgroup_of(proc.pid)
        assert groups, "the program's tree never got a pids cgroup"
    finally:
        proc.kill()
        proc.wait()
    for g in groups:  # whatever of the tree outlived its supervisor goes too
        for _ in range(100):
            pids = (g / "cgroup.procs").read_text().split()
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(p), signal.SIGKILL)
            time.sleep(0.05)
    assert _cgroup_of(proc.pid) == groups  # left behind, empty
    res = inst.run(["/bin/echo", "next"])
    assert res.code == 0, res.describe()
    assert _cgroup_of(proc.pid) == []
