"""``occlum gdb``: a program inside under the host's GDB (batch mode), its symbols and its
libraries found, breakpoints, backtraces, variables, a crash, the exit status; a
non-debuggable instance refused; ptrace still refused to the program it debugs."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import libos
from libos import Instance, Result
from occlum.instance.client import request

pytestmark = pytest.mark.needs_root

SRC = Path(__file__).resolve().parent.parent / "c" / "gdb" / "debugee.c"
THREADS = Path(__file__).resolve().parent.parent / "c" / "gdb" / "threads.c"
FORKER = Path(__file__).resolve().parent.parent / "c" / "gdb" / "forker.c"
PTRACE_PROBE = Path(__file__).resolve().parent.parent / "c" / "security" / "ptrace.c"
DEBUG_GLIBC = libos.Variant("gdb-glibc", "gcc", ("-g", "-O0"))
DEBUG_MUSL = libos.Variant("gdb-musl", "musl-gcc", ("-g", "-O0", "-static"))
DEBUG_GLIBC_STATIC = libos.Variant("gdb-static", "gcc", ("-g", "-O0", "-static", "-pthread"))
DEBUG_MUSL_DYNAMIC = libos.Variant("gdb-musl-dyn", "musl-gcc", ("-g", "-O0"))


def line_of(text: str) -> int:
    return next(n for n, line in enumerate(SRC.read_text().splitlines(), 1) if text in line)


CRASH_LINE = line_of("CRASH LINE")
MAIN_LINE = line_of("int answer = 21;")  # main's first line
COUNTED_LINE = line_of("int letters")  # counted's first line
CALL_LINE = line_of('answer = counted("seven")')
PUTS_LINE = line_of('puts("debugee says hello")')


@dataclass(frozen=True, slots=True)
class Instances:
    debuggable: Instance
    sealed: Instance  # metadata.debuggable false


def _instance(path: Path, binaries: dict[str, Path], debuggable: bool) -> Instance:
    inst = Instance.new(path)
    script = inst.image / "bin/crash-script"
    script.write_text("#!/bin/debugee crash\n")
    script.chmod(0o755)
    inst.configure()
    cfg = inst.config()
    metadata = cfg.setdefault("metadata", {})
    assert isinstance(metadata, dict)
    metadata["debuggable"] = debuggable
    inst.write_config(cfg)
    libos.place_with_dependencies(inst.image, binaries)
    inst.build()
    return inst


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instances]:
    work = tmp_path_factory.mktemp("gdb")
    binaries = {
        "/bin/debugee": libos.compile_c(SRC, work / "debugee", DEBUG_GLIBC),
        "/bin/debugee-musl": libos.compile_c(SRC, work / "debugee-musl", DEBUG_MUSL),
        "/bin/debugee-musl-dyn": libos.compile_c(
            SRC, work / "debugee-musl-dyn", DEBUG_MUSL_DYNAMIC
        ),
        "/bin/threads": libos.compile_c(THREADS, work / "threads", DEBUG_GLIBC_STATIC),
        "/bin/forker": libos.compile_c(FORKER, work / "forker", DEBUG_GLIBC),
        "/bin/sec-ptrace": libos.compile_c(PTRACE_PROBE, work / "sec-ptrace", DEBUG_GLIBC),
    }
    yield Instances(
        _instance(work / "debuggable", binaries, True),
        _instance(work / "sealed", {"/bin/debugee": binaries["/bin/debugee"]}, False),
    )


def gdb(inst: Instance, commands: list[str], argv: list[str], pid: int | None = None) -> Result:
    args = ["gdb", "--batch", *(["--pid", str(pid)] if pid is not None else [])]
    for c in commands:
        args += ["--ex", c]
    env = dict(os.environ, OCCLUM_LOG_LEVEL="error")
    return libos.run_killable(
        [*libos._tool("occlum"), *args, *argv], cwd=inst.path, stdin=None, env=env, timeout=120
    )


def test_dynamic_glibc_program(instances: Instances) -> None:
    res = gdb(
        instances.debuggable,
        ["break main", "break puts", "continue", "next", "print answer", "watch answer",
         "continue", "continue", "bt", "info sharedlibrary", "continue", "continue"],
        ["/bin/debugee"],
    )  # fmt: skip
    out = res.stdout
    assert "Traceback" not in res.stderr, res.describe()
    # main, found in the PIE at the bias the LibOS chose
    assert re.search(
        rf"Breakpoint 1, main \(argc=1, argv=0x[0-9a-f]+\) at \S*debugee\.c:{MAIN_LINE}", out
    )
    assert "$1 = 21" in out, res.describe()
    assert re.search(r"atchpoint 3: answer\n\nOld value = 21\nNew value = 23\n", out), (
        res.describe()
    )
    # the C library's puts, found through the dynamic loader's link map, and the frames below
    assert re.search(r"Breakpoint 2, \S*puts \(str=0x[0-9a-f]+ \"debugee says hello\"\)", out)
    assert re.search(r"#0  \S*puts \(.*\) at \S+\.c:\d+", out), res.describe()
    assert re.search(rf"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:{PUTS_LINE}", out)
    assert re.search(r"Yes\s+\S+/lib/x86_64-linux-gnu/libc\.so\.6", out), res.describe()
    assert "debugee says hello" in out
    assert re.search(r"\[Inferior 1 \(process \d+\) exited with code 03\]", out), res.describe()
    assert res.code == 0, res.describe()


def test_static_musl_program(instances: Instances) -> None:
    res = gdb(
        instances.debuggable,
        ["break counted", "break puts", "continue", "bt", "finish", "next", "print answer",
         "continue", "bt", "continue"],
        ["/bin/debugee-musl"],
    )  # fmt: skip
    out = res.stdout
    assert re.search(
        rf"Breakpoint 1, counted \(word=0x[0-9a-f]+ \"seven\"\) at \S*debugee\.c:{COUNTED_LINE}",
        out,
    )
    assert re.search(rf"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:{CALL_LINE}", out), (
        res.describe()
    )
    assert "Value returned is $1 = 10" in out, res.describe()
    assert "$2 = 23" in out, res.describe()
    assert re.search(r"Breakpoint 2, 0x[0-9a-f]+ in puts \(\)", out), res.describe()
    assert re.search(rf"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:{PUTS_LINE}", out), (
        res.describe()
    )
    assert re.search(r"\[Inferior 1 \(process \d+\) exited with code 03\]", out), res.describe()


def test_dynamic_musl_program(instances: Instances) -> None:
    """musl's dynamic loader is its C library: GDB finds it by AT_BASE and its link map."""
    res = gdb(
        instances.debuggable,
        ["break main", "break puts", "continue", "continue", "bt", "info sharedlibrary",
         "continue"],
        ["/bin/debugee-musl-dyn"],
    )  # fmt: skip
    out = res.stdout
    assert re.search(rf"Breakpoint 1, main \(argc=1, .*\) at \S*debugee\.c:{MAIN_LINE}", out)
    assert re.search(
        r"Breakpoint 2, 0x[0-9a-f]+ in puts \(\) from \S+/lib/ld-musl-x86_64\.so\.1", out
    )
    assert re.search(rf"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:{PUTS_LINE}", out)
    assert re.search(r"\[Inferior 1 \(process \d+\) exited with code 03\]", out), res.describe()


def test_crash_stops_at_the_faulting_line(instances: Instances) -> None:
    res = gdb(
        instances.debuggable,
        ["continue", "bt", "print answer", "continue"],
        ["/bin/debugee", "crash"],
    )
    out = res.stdout
    assert "Program received signal SIGSEGV, Segmentation fault." in out, res.describe()
    assert re.search(rf"in main \(argc=2, .*\) at \S*debugee\.c:{CRASH_LINE}\n", out)
    assert "*nowhere = answer; /* CRASH LINE */" in out, res.describe()
    assert "$1 = 21" in out, res.describe()
    assert "Program terminated with signal SIGSEGV" in out, res.describe()


def test_signals_and_following_a_fork(instances: Instances) -> None:
    res = gdb(
        instances.debuggable,
        ["set follow-fork-mode child", "break child_work", "continue", "continue", "bt",
         "continue"],
        ["/bin/forker"],
    )  # fmt: skip
    out = res.stdout
    assert "Program received signal SIGUSR1, User defined signal 1." in out, res.describe()
    assert re.search(r"\[Attaching after .* fork to child process \d+\]", out), res.describe()
    child_line = next(
        n for n, line in enumerate(FORKER.read_text().splitlines(), 1) if "CHILD LINE" in line
    )
    assert re.search(rf"hit Breakpoint 1, child_work \(n=2\) at \S*forker\.c:{child_line}", out)
    assert re.search(r"#1  0x[0-9a-f]+ in main \(\) at \S*forker\.c:\d+", out), res.describe()
    assert "got SIGUSR1" in out and "child exited with 5" in res.stderr, res.describe()
    assert re.search(r"\[Inferior 2 \(process \d+\) exited with code 05\]", out), res.describe()


def test_gdb_ending_kills_the_program_it_holds(instances: Instances) -> None:
    """As GDB kills a program it ran when it exits (it would detach from an attached one)."""
    res = gdb(instances.debuggable, ["break counted", "continue"], ["/bin/debugee"])
    assert "Breakpoint 1, counted" in res.stdout, res.describe()
    assert "debugee says hello" not in res.stdout, res.describe()
    assert res.code == 0, res.describe()


def test_a_script_is_debugged_as_its_interpreter(instances: Instances) -> None:
    res = gdb(instances.debuggable, ["continue", "bt", "continue"], ["/bin/crash-script"])
    out = res.stdout
    assert "Program received signal SIGSEGV, Segmentation fault." in out, res.describe()
    assert re.search(rf"in main \(argc=3, .*\) at \S*debugee\.c:{CRASH_LINE}\n", out), (
        res.describe()
    )


def test_threads_of_a_static_glibc_program(instances: Instances) -> None:
    worker_line = next(
        n for n, line in enumerate(THREADS.read_text().splitlines(), 1) if "WORKER LINE" in line
    )
    res = gdb(
        instances.debuggable,
        [f"break threads.c:{worker_line}", "continue", "info threads", "print mine",
         "continue", "continue"],
        ["/bin/threads"],
    )  # fmt: skip
    out = res.stdout
    assert re.search(
        rf"hit Breakpoint 1, worker \(arg=0x[0-9a-f]+\) at \S*threads\.c:{worker_line}", out
    )
    assert re.search(r"\n  1    Thread 0x[0-9a-f]+ \(LWP \d+\)", out), res.describe()  # main's
    assert re.search(r"\$1 = [34]\n", out), res.describe()
    assert "shared 7" in out, res.describe()
    assert re.search(r"\[Inferior 1 \(process \d+\) exited normally\]", out), res.describe()


def test_ptrace_still_refused_to_the_debugged_program(instances: Instances) -> None:
    res = gdb(instances.debuggable, ["continue"], ["/bin/sec-ptrace", "", "", str(os.getpid())])
    lines = [ln for ln in libos.parse_probe_lines(res.stdout) if ln[0].startswith("ptrace(")]
    assert len(lines) == 5, res.describe()
    assert all(v == "refused" for _, v, _ in lines), res.describe()
    assert any(d == "EPERM" for _, _, d in lines), res.describe()
    assert "ALL REFUSED" in res.stdout, res.describe()
    assert re.search(r"\[Inferior 1 \(process \d+\) exited normally\]", res.stdout)


def test_non_debuggable_instance_refuses(instances: Instances) -> None:
    res = gdb(instances.sealed, ["continue"], ["/bin/debugee"])
    assert res.code != 0, res.describe()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not debuggable" in lines[0], res.describe()
    assert "debugee says hello" not in res.stdout


def test_attach_to_a_process_of_a_started_instance(instances: Instances) -> None:
    inst = instances.debuggable
    cli = [*libos._tool("occlum"), "--instance-dir", str(inst.path)]
    assert subprocess.run([*cli, "start"], capture_output=True, check=False).returncode == 0
    try:
        waiter = subprocess.Popen(
            [*cli, "exec", "/bin/debugee", "wait"], stdout=subprocess.PIPE, text=True
        )
        assert waiter.stdout is not None and waiter.stdout.readline() == "waiting\n"
        ps = subprocess.run([*cli, "ps"], capture_output=True, text=True, check=False).stdout
        pid = next(int(m[1]) for m in re.finditer(r"(\d+) .* debugee wait", ps))
        # another host user cannot attach to it (nor to anything of the instance)
        host_pid = request(inst.path / "run", {"op": "host_pid", "pid": pid})["host_pid"]
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        other = subprocess.run(
            [*nobody, "gdb", "-q", "-batch", "-p", str(host_pid)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert "ptrace: Operation not permitted" in other.stdout + other.stderr
        # the LibOS's own init is no program of the instance
        init = gdb(inst, ["bt"], [], pid=1)
        assert init.code != 0 and "no process 1 in the instance" in init.stderr, init.describe()
        res = gdb(
            inst,
            ["bt", "print waiting", "set var waiting = 0", "break puts", "continue", "bt",
             "continue"],
            [],
            pid=pid,
        )  # fmt: skip
        out = res.stdout
        assert re.search(r"#\d+  0x[0-9a-f]+ in main \(argc=2, .*\) at \S*debugee\.c:\d+", out)
        assert "$1 = 1" in out, res.describe()
        assert re.search(
            r"Breakpoint 1, \S*puts \(str=0x[0-9a-f]+ \"debugee says hello\"\)", out
        ), res.describe()
        assert re.search(rf"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:{PUTS_LINE}", out)
        assert re.search(r"\[Inferior 1 \(process \d+\) exited with code 03\]", out)
        # the program's own caller sees it end as it would without the debugger
        rest, _ = waiter.communicate(timeout=60)
        assert rest == "debugee says hello\n" and waiter.returncode == 3
        gone = gdb(inst, ["bt"], [], pid=pid)
        assert gone.code != 0 and f"no process {pid} in the instance" in gone.stderr
    finally:
        subprocess.run([*cli, "stop", "-t", "1"], capture_output=True, check=False)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "occlum gdb takes a PROGRAM to run, or --pid N of a started instance"),
        (["--pid", "3", "/bin/debugee"], "occlum gdb takes a PROGRAM to run, or --pid N"),
        (["--pid", "3"], "--pid needs a started instance (occlum start)"),
        (["/bin/nope"], "cannot run /bin/nope: no such file in the instance"),
    ],
)
def test_bad_invocations_say_one_line(instances: Instances, argv: list[str], says: str) -> None:
    res = gdb(instances.debuggable, [], argv)
    assert res.code != 0, res.describe()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.describe()


def test_interactive_session_on_a_terminal(instances: Instances) -> None:
    """GDB's prompt on the terminal; Ctrl-C stops the running program, as natively."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(instances.debuggable.path)
        os.environ["OCCLUM_LOG_LEVEL"] = "error"
        os.execv(libos._tool("occlum")[0], ["occlum", "gdb", "--ex", "set style enabled off",
                                            "/bin/debugee", "wait"])  # fmt: skip
    seen = bytearray()

    def expect(text: bytes) -> None:
        deadline = time.monotonic() + 60
        while text not in seen:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no {text!r} in:\n{seen.decode(errors='replace')}"
            try:
                seen.extend(os.read(fd, 4096))
            except OSError:  # the terminal closed
                assert text in seen, seen.decode(errors="replace")
        del seen[: seen.index(text) + len(text)]

    try:
        for send, answer in [
            (b"", b"(gdb) "),
            (b"continue\n", b"waiting"),
            (b"\x03", b"Program received signal SIGINT"),
            (b"", b"(gdb) "),
            (b"bt\n", b"in main (argc=2"),
            (b"set var waiting = 0\n", b"(gdb) "),
            (b"continue\n", b"debugee says hello"),
            (b"", b"exited with code 03]"),
            (b"quit\n", b""),
        ]:
            if send == b"\x03":
                time.sleep(0.3)  # the program in its loop
            os.write(fd, send)
            expect(answer)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


# An unprivileged user's LibOS (in a user namespace of its own) under that user's GDB: the
# PR_SET_MM_MAP needs no privilege, and the owner of the namespace may attach. The driver
# drops to nobody before booting, as tests/integration/test_nonroot.py does, and plays the
# debugger's part of `occlum gdb` (which needs a built instance nobody cannot read).
_NONROOT_DRIVER = """
import os, subprocess, sys, time
from pathlib import Path
import occlum.boot, occlum.kernel.libos, occlum.kernel.procinfo, occlum.kernel.strace
import occlum.syscalls.table, occlum.syscalls.exec, occlum.syscalls.fs, occlum.syscalls.info
from occlum.cli.gdb import _attached, _waiting_at_gate, gdb_script
from occlum.kernel.spec import DebugStop, RunSpec
root, work = sys.argv[1:]
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
os.chdir("/")
pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
libos = os.fork()
if libos == 0:
    os.close(pid_r)
    os.close(gate_w)
    spec = RunSpec(instance_dir=root, root_dir=root, argv=("/bin/debugee",),
                   env=(("PATH", "/bin"),), log_level="error", debug=DebugStop(pid_w, gate_r))
    os._exit(occlum.boot.run(spec))
os.close(pid_w)
os.close(gate_r)
host_pid = int(os.read(pid_r, 64))
while not _waiting_at_gate(host_pid):
    time.sleep(0.002)
script = Path(work, "attach.gdb")
script.write_text(gdb_script(Path(root), Path(root, "bin/debugee"), host_pid))
gdb = subprocess.Popen(["gdb", "-q", "-batch", "-x", str(script), "-ex", "break puts",
                        "-ex", "continue", "-ex", "bt", "-ex", "continue"])
while not _attached(host_pid):
    time.sleep(0.002)
os.write(gate_w, b"g")
gdb.wait()
_, status = os.waitpid(libos, 0)
print("libos", os.waitstatus_to_exitcode(status), "gdb", gdb.returncode)
"""


def test_unprivileged_user_debugs_its_own_libos(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = Path(tempfile.mkdtemp(prefix="occlum-gdb-nonroot-", dir="/tmp"))
    try:
        os.chmod(work, 0o777)
        root = work / "root"
        binaries = {"/bin/debugee": libos.compile_c(SRC, work / "debugee", DEBUG_GLIBC)}
        libos.place_with_dependencies(root, binaries)
        for d in ("dev", "proc", "tmp", "sys"):  # where the LibOS mounts its own
            (root / d).mkdir(exist_ok=True)
        for d, _, files in os.walk(work):
            for name in (d, *(os.path.join(d, f) for f in files)):
                os.chmod(name, os.stat(name).st_mode | 0o755)
        proc = subprocess.run(
            [sys.executable, "-c", _NONROOT_DRIVER, str(root), str(work)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        out = proc.stdout
        assert re.search(
            r"Breakpoint 1, \S*puts \(str=0x[0-9a-f]+ \"debugee says hello\"\)", out
        ), proc.stdout + proc.stderr
        assert re.search(rf"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:{PUTS_LINE}", out)
        assert "exited with code 03]" in out and "libos 3 gdb 0" in out, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_encrypted_image_with_its_key(instances: Instances, tmp_path: Path) -> None:
    inst = Instance.new(tmp_path / "encrypted")
    inst.configure()
    libos.place_with_dependencies(
        inst.image, {"/bin/debugee": instances.debuggable.image / "bin/debugee"}
    )
    cli = [*libos._tool("occlum"), "--instance-dir", str(inst.path)]
    subprocess.run([*cli, "gen-image-key", "image_key"], check=True, capture_output=True)
    subprocess.run([*cli, "build", "--image-key", "image_key"], check=True, capture_output=True)
    res = gdb(
        inst,
        ["break puts", "continue", "bt", "continue"],
        ["--image-key", "image_key", "/bin/debugee"],
    )
    assert re.search(rf"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:{PUTS_LINE}", res.stdout)
    assert "exited with code 03]" in res.stdout, res.describe()
    without = gdb(inst, ["continue"], ["/bin/debugee"])
    lines = without.stderr.strip().splitlines()
    assert without.code != 0 and len(lines) == 1 and "image key" in lines[0], without.describe()
