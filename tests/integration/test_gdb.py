"""``occlum gdb``: a program inside under the host's GDB (batch mode), its symbols and its
libraries found, breakpoints, backtraces, variables, a crash, the exit status; a
non-debuggable instance refused; ptrace still refused to the program it debugs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import libos
from libos import Instance, Result

pytestmark = pytest.mark.needs_root

SRC = Path(__file__).resolve().parent.parent / "c" / "gdb" / "debugee.c"
PTRACE_PROBE = Path(__file__).resolve().parent.parent / "c" / "security" / "ptrace.c"
DEBUG_GLIBC = libos.Variant("gdb-glibc", "gcc", ("-g", "-O0"))
DEBUG_MUSL = libos.Variant("gdb-musl", "musl-gcc", ("-g", "-O0", "-static"))
CRASH_LINE = next(
    n for n, line in enumerate(SRC.read_text().splitlines(), 1) if "CRASH LINE" in line
)


@dataclass(frozen=True, slots=True)
class Instances:
    debuggable: Instance
    sealed: Instance  # metadata.debuggable false


def _instance(path: Path, binaries: dict[str, Path], debuggable: bool) -> Instance:
    inst = Instance.new(path)
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
        "/bin/sec-ptrace": libos.compile_c(PTRACE_PROBE, work / "sec-ptrace", DEBUG_GLIBC),
    }
    yield Instances(
        _instance(work / "debuggable", binaries, True),
        _instance(work / "sealed", {"/bin/debugee": binaries["/bin/debugee"]}, False),
    )


def gdb(inst: Instance, commands: list[str], argv: list[str]) -> Result:
    args = ["gdb", "--batch"]
    for c in commands:
        args += ["--ex", c]
    env = dict(os.environ, OCCLUM_LOG_LEVEL="error")
    return libos.run_killable(
        [*libos._tool("occlum"), *args, *argv], cwd=inst.path, stdin=None, env=env, timeout=120
    )


def test_dynamic_glibc_program(instances: Instances) -> None:
    res = gdb(
        instances.debuggable,
        ["break main", "break puts", "continue", "next", "print answer", "continue", "bt",
         "info sharedlibrary", "continue"],
        ["/bin/debugee"],
    )  # fmt: skip
    out = res.stdout
    assert "Traceback" not in res.stderr, res.describe()
    # main, found in the PIE at the bias the LibOS chose
    assert re.search(r"Breakpoint 1, main \(argc=1, argv=0x[0-9a-f]+\) at \S*debugee\.c:14", out)
    assert "$1 = 21" in out, res.describe()
    # the C library's puts, found through the dynamic loader's link map, and the frames below
    assert re.search(r"Breakpoint 2, \S*puts \(str=0x[0-9a-f]+ \"debugee says hello\"\)", out)
    assert re.search(r"#0  \S*puts \(.*\) at \S+\.c:\d+", out), res.describe()
    assert re.search(r"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:20", out)
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
        r"Breakpoint 1, counted \(word=0x[0-9a-f]+ \"seven\"\) at \S*debugee\.c:9", out
    )
    assert re.search(r"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:19", out), res.describe()
    assert "Value returned is $1 = 10" in out, res.describe()
    assert "$2 = 21" in out, res.describe()
    assert re.search(r"Breakpoint 2, 0x[0-9a-f]+ in puts \(\)", out), res.describe()
    assert re.search(r"#1  0x[0-9a-f]+ in main \(.*\) at \S*debugee\.c:20", out), res.describe()
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
