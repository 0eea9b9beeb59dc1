"""A started instance's server keeps a flat descriptor count however many programs it runs.

The server process is the LibOS: it holds descriptors for what lives as long as the instance
(its sockets, the images, each volume's journal, the page cache of files kept) and for each
running process (a pidfd and a ``/proc/PID/mem`` handle).  Run after run of the same programs
must not add to them: the count after many execs stays within a few descriptors of the count
after the first ones (those few: processes whose exit the serving loop has not polled yet).

The programs make nameless ``O_TMPFILE`` files (as Python's ``tempfile.TemporaryFile`` does)
on the root, whose upper layer is SEFS, and on the ramfs ``/tmp``, and run a shell that
creates and removes files: every one of these files is gone when the program ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"
SLACK = 8  # descriptors of processes whose exit is not handled yet
PROGRAMS = (
    ["/bin/tmpfile_cycle", "/root", "/tmp"],
    ["/bin/sh", "-c", "echo x > /root/f.$$; ls / > /tmp/l.$$; rm /root/f.$$ /tmp/l.$$"],
)


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("descriptors") / "instance")
    inst.configure()
    work = tmp_path_factory.mktemp("descriptors-bin")
    binaries = {f"/bin/{tool}": Path("/bin") / tool for tool in ("ls", "rm")}
    binaries["/bin/sh"] = Path("/bin/dash")
    binaries["/bin/tmpfile_cycle"] = libos.compile_c(
        DIAG / "tmpfile_cycle.c", work / "tmpfile_cycle"
    )
    libos.place_with_dependencies(inst.image, binaries)
    inst.build()
    env = {**os.environ, "OCCLUM_LOG_LEVEL": "error"}
    res = subprocess.run(
        [OCCLUM, "start"], cwd=inst.path, env=env, capture_output=True, check=False
    )
    assert res.returncode == 0, res.stderr.decode()
    try:
        yield inst
    finally:
        subprocess.run(
            [OCCLUM, "stop", "-t", "1"], cwd=inst.path, env=env, capture_output=True, check=False
        )


def _exec(inst: Instance, argv: list[str]) -> None:
    proc = subprocess.run(
        [OCCLUM, "exec", *argv], cwd=inst.path, stdin=subprocess.DEVNULL,
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and not proc.stderr, (
        f"occlum exec {argv}: exit {proc.returncode}\n{proc.stderr.decode(errors='replace')}"
    )


def _held(pid: int) -> Counter[str]:
    """What the server's descriptors point to, numbers in the names blanked out."""
    kinds: Counter[str] = Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kinds["".join("N" if c.isdigit() else c for c in target)] += 1
    return kinds


def _run(inst: Instance, execs: int, warm_up: int) -> None:
    pid = int((inst.path / "run" / "server.pid").read_text())
    for i in range(warm_up):
        _exec(inst, PROGRAMS[i % len(PROGRAMS)])
    before = _held(pid)
    began = time.monotonic()
    peak = sum(before.values())
    for i in range(execs):
        _exec(inst, PROGRAMS[i % len(PROGRAMS)])
        if i % 25 == 24:
            now = _held(pid)
            peak = max(peak, sum(now.values()))
            grown = now - before
            assert sum(now.values()) <= sum(before.values()) + SLACK, (
                f"after {warm_up} + {i + 1} execs the server holds {sum(now.values())} "
                f"descriptors, {sum(before.values())} after the first {warm_up}; the new ones: "
                f"{dict(grown.most_common(6))}"
            )
    print(
        f"{execs} execs in {time.monotonic() - began:.0f} s: {sum(before.values())} "
        f"descriptors after {warm_up}, at most {peak} since"
    )


def test_descriptor_count_stays_flat_across_execs(started: Instance) -> None:
    _run(started, execs=100, warm_up=20)


@pytest.mark.slow
def test_descriptor_count_stays_flat_across_1000_execs(started: Instance) -> None:
    _run(started, execs=1000, warm_up=50)
