"""`make -j2` building a small C project with gcc, entirely inside the LibOS: the make, shell,
gcc driver, cc1, as and ld processes all run there, on the encrypted writable root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = [pytest.mark.slow, pytest.mark.needs_root]

PROJECT = Path(__file__).resolve().parent.parent / "apps" / "make_project"


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    if not (libos.GCC_LIB / "cc1").exists():
        pytest.fail(f"gcc 12 is expected at {libos.GCC_LIB}: run scripts/setup.sh")
    base = tmp_path_factory.mktemp("make")
    inst = Instance.new(base / "instance")
    inst.configure(entry_points=["/"])
    libos.place_gcc_toolchain(inst.image, PROJECT, base / "native")
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
