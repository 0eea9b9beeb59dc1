"""What the LibOS tells a user: crash reports, the strace-style trace, unserved syscalls."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")


@pytest.fixture(scope="module")
def diag_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    work = tmp_path_factory.mktemp("diag")
    binaries = {}
    for src in sorted(DIAG.glob("*.c")):
        binaries[f"/bin/{src.stem}"] = libos.compile_c(src, work / src.stem)
    inst = Instance.new(work / "instance")
    inst.configure()
    libos.place_with_dependencies(inst.image, binaries)
    libos.place_with_dependencies(inst.image, {"/bin/ls": Path("/bin/ls")})
    inst.build()
    yield inst


def test_crash_report_names_program_pid_signal_and_address(diag_instance: Instance) -> None:
    # The kernel rate-limits its fault records (10 per 5 s): after other crashing tests the
    # record, and so the address, may be missing; the line itself never is.
    for attempt in range(3):
        res = diag_instance.run(["/bin/segv"], log_level="off")
        assert res.code == 128 + 11
        lines = [line for line in res.stderr.splitlines() if "killed by" in line]
        assert len(lines) == 1 and lines[0].startswith(
            "occlum: /bin/segv (pid 2) killed by SIGSEGV"
        )
        assert "Traceback" not in res.stderr
        if lines[0].endswith(" at 0x1234") or attempt == 2:
            break
        time.sleep(5.5)
    assert lines == ["occlum: /bin/segv (pid 2) killed by SIGSEGV at 0x1234"], res.describe()


def test_unserved_syscall_is_enosys_and_named_once(diag_instance: Instance) -> None:
    res = diag_instance.run(["/bin/unserved"], log_level="warn")
    assert res.code == 0, res.describe()
    assert res.stdout.splitlines() == [
        "syscall 1000: -1 ENOSYS",
        "syscall 1000: -1 ENOSYS",
        "fanotify_mark: -1 ENOSYS",
    ]
    warnings = [line for line in res.stderr.splitlines() if "not supported" in line]
    assert len(warnings) == 2, res.describe()
    assert "syscall_1000" in warnings[0] and "/bin/unserved" in warnings[0]
    assert "fanotify_mark" in warnings[1]


def test_strace_decodes_paths_flags_and_results(diag_instance: Instance) -> None:
    res = diag_instance.run(["/bin/ls", "/nope", "/bin"], log_level="trace")
    assert res.code == 2  # ls: one operand missing
    trace = res.stderr
    assert re.search(
        r'\[2\] (statx|newfstatat|lstat)\(AT_FDCWD, "/nope", .*\) = -1 ENOENT', trace
    ), trace
    assert re.search(r'\[2\] openat\(AT_FDCWD, "/bin", O_RDONLY\|.*O_DIRECTORY.*\) = \d+', trace), (
        trace
    )
    assert re.search(r"\[2\] getdents64\(\d+, 0x[0-9a-f]+, \d+\) = \d+", trace), trace
    assert "segv" in res.stdout and "unserved" in res.stdout


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            if kid not in found:
                found.add(kid)
                todo.append(kid)
    return found


def test_no_program_outlives_a_killed_supervisor(diag_instance: Instance) -> None:
    proc = subprocess.Popen(
        [OCCLUM, "run", "/bin/linger"], cwd=diag_instance.path, stdout=subprocess.PIPE,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "off"},
    )  # fmt: skip
    assert proc.stdout is not None
    inside: set[int] = set()
    try:
        assert proc.stdout.readline() == b"ready\n"
        # init, the program, its child and grandchild (which the child forks after "ready")
        deadline = time.monotonic() + 10
        while len(inside := _descendants(proc.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(inside) >= 4
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in inside):
        time.sleep(0.05)
    assert not [p for p in inside if os.path.exists(f"/proc/{p}")]
