"""`make -j2` building a small C project with gcc, entirely inside the LibOS: the make, shell,
gcc driver, cc1, as and ld processes all run there, on the encrypted writable root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = [pytest.mark.slow, pytest.mark.needs_root]

PROJECT = Path(__file__).resolve().parent.parent / "apps" / "make_project"
GCC_LIB = Path("/usr/lib/gcc/x86_64-linux-gnu/12")
TOOLS = {
    "/usr/bin/gcc": "/usr/bin/gcc",
    "/usr/bin/make": "/usr/bin/make",
    "/bin/sh": "/bin/dash",
    "/bin/rm": "/bin/rm",
    "/usr/bin/as": "/usr/bin/as",
    "/usr/bin/x86_64-linux-gnu-as": "/usr/bin/as",
    "/usr/bin/ld": "/usr/bin/ld",
    "/usr/bin/x86_64-linux-gnu-ld": "/usr/bin/ld",
    str(GCC_LIB / "cc1"): str(GCC_LIB / "cc1"),
    str(GCC_LIB / "collect2"): str(GCC_LIB / "collect2"),
    str(GCC_LIB / "lto-wrapper"): str(GCC_LIB / "lto-wrapper"),
    str(GCC_LIB / "liblto_plugin.so"): str(GCC_LIB / "liblto_plugin.so"),
}


def _native_inputs(work: Path) -> set[str]:
    """The headers the project includes and the files the linker reads, found by building it
    natively once (`gcc -M`, `ld -t`)."""
    sources = [str(p) for p in sorted(work.glob("*.c"))]
    files: set[str] = set()
    for flags in ([], ["-O2"]):  # optimization pulls in more of glibc's headers
        deps = subprocess.run(
            ["gcc", *flags, "-M", *sources], cwd=work, capture_output=True, text=True, check=True
        ).stdout
        files |= {w for w in deps.replace("\\", " ").split() if w.startswith("/")}
    objs = []
    for src in sources:
        obj = src[:-2] + ".o"
        subprocess.run(["gcc", "-c", "-o", obj, src], cwd=work, check=True)
        objs.append(obj)
    trace = subprocess.run(
        ["gcc", "-o", str(work / "prog"), *objs, "-Wl,-t"],
        cwd=work, capture_output=True, text=True, check=True,
    )  # fmt: skip
    files |= {
        os.path.normpath(w)
        for w in (trace.stdout + trace.stderr).split()
        if w.startswith("/") and not w.startswith(str(work))
    }
    return files


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    if not (GCC_LIB / "cc1").exists():
        pytest.fail(f"gcc 12 is expected at {GCC_LIB}: run scripts/setup.sh")
    base = tmp_path_factory.mktemp("make")
    work = base / "native"
    shutil.copytree(PROJECT, work)
    inputs = _native_inputs(work)
    inst = Instance.new(base / "instance")
    inst.configure(entry_points=["/"])
    libos.place_with_dependencies(inst.image, {k: Path(v) for k, v in TOOLS.items()})
    for f in sorted(inputs):
        libos.place(inst.image, Path(f), f)
    # gcc's own headers (stddef.h, stdarg.h, ...) for whatever the sources include
    shutil.copytree(GCC_LIB / "include", inst.image / str(GCC_LIB / "include").lstrip("/"),
                    dirs_exist_ok=True)  # fmt: skip
    shutil.copytree(PROJECT, inst.image / "root" / "project")
    inst.build()
    return inst


def test_make_j2_builds_and_runs_a_c_project(toolchain: Instance) -> None:
    res = toolchain.run(
        ["/bin/sh", "-c", "cd /root/project && make -j2 && ./prog && make clean >/dev/null"],
        timeout=300,
    )
    assert res.code == 0, res.describe()
    lines = res.stdout.splitlines()
    assert "gcc -O2 -c -o a.o a.c" in lines and "gcc -O2 -c -o lib.o lib.c" in lines
    assert lines[-1] == "sum 42, built inside"
