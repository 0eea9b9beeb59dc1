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
# built static: no dynamic loader adds served calls of its own to the ones counted
STATIC = {"openat_count"}
MiB = 1 << 20


@pytest.fixture(scope="module")
def diag_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    work = tmp_path_factory.mktemp("diag")
    binaries = {}
    for src in sorted(DIAG.glob("*.c")):
        variant = libos.GLIBC_STATIC if src.stem in STATIC else libos.GLIBC
        binaries[f"/bin/{src.stem}"] = libos.compile_c(src, work / src.stem, variant)
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
        "inotify_init1: -1 ENOSYS",
    ]
    warnings = [line for line in res.stderr.splitlines() if "not supported" in line]
    assert len(warnings) == 1, res.describe()
    assert "syscall_1000" in warnings[0] and "/bin/unserved" in warnings[0]
    # a refused call is named once, with its errno and reason
    refused = [line for line in res.stderr.splitlines() if "refused" in line]
    assert len(refused) == 1, res.describe()
    assert "inotify_init1 is refused inside the LibOS (ENOSYS: the LibOS's files" in refused[0]
    assert "/bin/unserved" in refused[0]


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
    # a flag set's bits by name: access's mode (the dynamic loader's check), statx's mask
    assert '] access("/etc/ld.so.preload", R_OK) = -1 ENOENT' in trace, trace
    assert not re.search(r"statx\(.*, 0x[0-9a-f]+, 0x", trace), trace
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
    # the direct path: the process killed is the supervisor, and the programs its descendants
    # (through the zygote see test_zygote.py: a killed client has its run killed)
    proc = subprocess.Popen(
        [OCCLUM, "run", "/bin/linger"], cwd=diag_instance.path, stdout=subprocess.PIPE,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "off", "OCCLUM_NO_ZYGOTE": "1"},
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


def _occlum(inst: Instance, *args: str, log_level: str = "warn") -> libos.Result:
    """``occlum ARGS...`` in the instance directory (as a user types it there)."""
    env = {**os.environ, "OCCLUM_LOG_LEVEL": log_level}
    return libos.run_killable(
        [OCCLUM, *args], cwd=inst.path, stdin=None, env=env, timeout=libos.RUN_TIMEOUT
    )


def _row(text: str, *cells: str) -> re.Pattern[str]:
    """A table row of rich's output with these cells, in order (padding ignored)."""
    return re.compile(r"│\s*" + r"\s*│\s*".join(re.escape(c) for c in cells) + r"\s*│")


def _row_start(text: str, *cells: str) -> re.Pattern[str]:
    """Like _row, the last cell only beginning with the last of ``cells`` (a long cell wraps)."""
    *whole, last = cells
    head = r"│\s*" + r"\s*│\s*".join(re.escape(c) for c in (text, *whole))
    return re.compile(head + r"\s*│\s*" + re.escape(last))


def test_summary_counts_each_served_call_with_its_errors(diag_instance: Instance) -> None:
    res = _occlum(diag_instance, "run", "--summary", "/bin/openat_count")
    assert res.code == 0, res.describe()
    assert res.stdout == "opened 5, failed 2\n"
    err = res.stderr
    assert "System calls served by the LibOS for /bin/openat_count" in err, err
    assert re.search(r"│\s*openat\s*│\s*7\s*│\s*2\s*│[^│]+│[^│]+│\s*full\s*│", err), err
    assert re.search(r"│\s*uname\s*│\s*3\s*│\s*0\s*│[^│]+│[^│]+│\s*full\s*│", err), err
    # one execve (the program's start); its exit_group(0) runs natively; nothing of init
    assert re.search(r"│\s*execve\s*│\s*1\s*│\s*0\s*│", err), err
    assert not re.search(r"│\s*exit_group\s*│", err), err
    assert "mount_rootfs" not in err
    assert (
        "Native system calls (read, write, mmap, futex, ...) never reach the LibOS: not counted"
        in " ".join(err.split())
    )
    # the total row adds the calls up
    rows = re.findall(r"│\s*([a-z_0-9]+)\s*│\s*(\d+)\s*│\s*\d+\s*│", err)
    total = re.search(r"│\s*total\s*│\s*(\d+)\s*│\s*(\d+)\s*│", err)
    calls = sum(int(n) for name, n in rows if name != "total")
    assert total is not None and int(total.group(1)) == calls, err


def test_summary_and_strace_together(diag_instance: Instance) -> None:
    res = _occlum(diag_instance, "run", "--strace", "--summary", "/bin/openat_count")
    assert res.code == 0, res.describe()
    # no mode shown: the open does not create (the argument is whatever the register held)
    traced = re.findall(
        r"\[2\] openat\(AT_FDCWD, \"(/bin|/no/such/file)\", O_RDONLY\|O_DIRECTORY\|O_CLOEXEC\) "
        r"= (\S+)",
        res.stderr,
    )
    assert len(traced) == 7, res.stderr
    assert sum(1 for _, r in traced if r == "-1") == 2
    assert re.search(r"│\s*openat\s*│\s*7\s*│\s*2\s*│", res.stderr), res.stderr


def test_doctor_names_unserved_partial_and_refused_calls(diag_instance: Instance) -> None:
    res = _occlum(diag_instance, "doctor", "/bin/unserved")
    assert res.code == 0, res.describe()
    assert res.stdout.splitlines()[-1] == "inotify_init1: -1 ENOSYS"  # the program's own output
    err = res.stderr
    assert "System calls the LibOS does not fully support" in err, err
    assert _row_start("inotify_init1", "refused", "1", "1", "ENOSYS:").search(err), err
    assert _row("syscall_1000", "unsupported", "2", "2").search(err), err
    assert "fails with ENOSYS" in err
    # nothing fully supported is listed there (execve, exit_group...)
    assert not re.search(r"│\s*exit_group\s*│", err), err

    res = _occlum(diag_instance, "doctor", "/bin/lacking")
    assert res.code == 0, res.describe()
    assert res.stdout.splitlines() == [
        "getxattr: -1 No data available",
        "ptrace: -1 Operation not permitted",
        "unshare: -1 Operation not permitted",
    ]
    assert _row("getxattr", "partial", "1", "1", "no system.* (ACLs)").search(res.stderr), (
        res.stderr
    )
    # a refused call's errno and reason
    assert _row_start("ptrace", "refused", "1", "1", "EPERM: tracing").search(res.stderr), (
        res.stderr
    )
    assert _row_start("unshare", "refused", "1", "1", "EPERM: new").search(res.stderr), res.stderr


def test_doctor_reports_a_fully_supported_program_and_enough_limits(
    diag_instance: Instance,
) -> None:
    res = _occlum(diag_instance, "doctor", "/bin/openat_count")
    assert res.code == 0, res.describe()
    assert "is fully supported" in res.stderr, res.stderr
    assert "not fully support" not in res.stderr
    assert "The configured limits are enough for this run." in res.stderr
    if os.geteuid() == 0:  # counted in a pids cgroup
        assert re.search(r"max_num_of_threads\s*│\s*\d+\s*│\s*1\s*│\s*enough", res.stderr), (
            res.stderr
        )


def test_doctor_passes_the_exit_status_and_says_in_one_line_what_is_missing(
    diag_instance: Instance, tmp_path: Path
) -> None:
    res = _occlum(diag_instance, "doctor", "/bin/segv")
    assert res.code == 128 + 11, res.describe()
    assert "ended with exit status 139" in res.stderr
    assert "ended without exit_group" in res.stderr  # its peaks could not be read

    res = _occlum(diag_instance, "doctor", "/bin/no-such-program")
    assert res.code == 127, res.describe()
    assert res.stderr.strip().splitlines() == [
        "occlum: error: cannot run /bin/no-such-program: no such file in the instance"
    ]
    unbuilt = Instance.new(tmp_path / "unbuilt")
    res = _occlum(unbuilt, "doctor", "/bin/true")
    assert res.code != 0
    assert res.stderr.strip().splitlines() == [
        "occlum: error: instance not built: run `occlum build` first"
    ], res.describe()
    res = _occlum(unbuilt, "doctor", "--instance-dir", str(tmp_path / "none"), "/bin/true")
    assert res.code != 0 and len(res.stderr.strip().splitlines()) == 1, res.describe()
    assert "Traceback" not in res.stderr


def test_doctor_measures_what_a_program_needs_and_the_values_it_names_work(
    tmp_path: Path,
) -> None:
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    cfg = inst.config()
    limits = cfg["resource_limits"]
    assert isinstance(limits, dict)
    limits["user_space_size"] = "128MB"
    limits["max_num_of_threads"] = 8
    inst.write_config(cfg)
    alloc = libos.compile_c(DIAG / "alloc.c", tmp_path / "alloc")
    libos.place_with_dependencies(inst.image, {"/bin/alloc": alloc})
    inst.build()
    # 300 MiB touched by one process, then 12 threads at once
    argv = ["/bin/alloc", "300", "12"]
    cut = inst.run(argv)
    assert cut.code == 1 and cut.stdout.startswith("malloc failed after "), cut.describe()
    if os.geteuid() == 0:  # the thread limit is a pids cgroup
        cut = inst.run(["/bin/alloc", "0", "12"])
        assert cut.code == 1 and "pthread_create failed after" in cut.stdout, cut.describe()

    res = _occlum(inst, "doctor", *argv)
    assert res.code == 0, res.describe()  # the limits were raised for the measurement
    assert res.stdout == "touched 300 MiB\n12 threads at once\n"
    err = res.stderr
    assert re.search(
        r"resource_limits\.user_space_size\s*│\s*128MB\s*│\s*\d+MB\s*│\s*too small", err
    ), err
    size = re.search(r'resource_limits\.user_space_size: "(\d+)MB"  \(now "128MB"\)', err)
    assert size is not None, err
    assert int(size.group(1)) * MiB > 300 * MiB
    threads = None
    if os.geteuid() == 0:
        assert re.search(r"max_num_of_threads\s*│\s*8\s*│\s*13\s*│\s*too small", err), err
        threads = re.search(r"resource_limits\.max_num_of_threads: (\d+)  \(now 8\)", err)
        assert threads is not None, err
        assert int(threads.group(1)) >= 13

    cfg = inst.config()
    limits = cfg["resource_limits"]
    assert isinstance(limits, dict)
    limits["user_space_size"] = f"{size.group(1)}MB"
    if threads is not None:
        limits["max_num_of_threads"] = int(threads.group(1))
    inst.write_config(cfg)
    inst.build()
    ok = inst.run(argv)
    assert ok.code == 0, ok.describe()
    assert ok.stdout == "touched 300 MiB\n12 threads at once\n"
    again = _occlum(inst, "doctor", *argv)
    assert again.code == 0 and "The configured limits are enough for this run." in again.stderr, (
        again.describe()
    )


def test_summary_gives_a_refused_calls_reason(diag_instance: Instance) -> None:
    res = _occlum(diag_instance, "run", "--summary", "/bin/unserved")
    assert res.code == 0, res.describe()
    err = res.stderr
    assert re.search(
        r"│\s*inotify_init1\s*│\s*1\s*│\s*1\s*│[^│]+│[^│]+│\s*refused \(ENOSYS:", err
    ), err
    # the reason, wrapped over the rows of its cell
    cells = re.findall(r"│([^│\n]*)│\s*$", err, re.MULTILINE)
    assert "CONFIG_INOTIFY_USER" in "".join(" ".join(cells).split()), err
