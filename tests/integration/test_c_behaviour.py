"""Every C behaviour test runs natively and inside the LibOS; outputs and exit codes must match.

Natively the scratch directory is a fresh pytest tmp dir; inside the LibOS it is /tmp/<name>
(a ramfs). The programs print nothing that differs between the two (see tests/c/common.h).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import libos
from libos import LIBOS_SCRATCH, CBuild, Instance, behaviour_cases, inside_name

pytestmark = pytest.mark.needs_root

CASES = behaviour_cases()


@pytest.mark.parametrize(("name", "variant"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_native_then_libos(
    name: str, variant: str, c_build: CBuild, c_instance: Instance, tmp_path: Path
) -> None:
    prog = inside_name(name, variant)
    native = libos.run_native([str(c_build.host(prog)), str(tmp_path / name)])
    # The test must pass on Linux first: a failing native run is a bug in the test.
    assert native.code == 0, f"native run of {prog} failed:\n{native.describe()}"
    assert native.stdout.rstrip().endswith("PASS")

    inside = c_instance.run([prog, f"{LIBOS_SCRATCH}/{name}-{variant}"])
    assert "Traceback" not in inside.stderr, inside.describe()
    assert inside.stdout == native.stdout, (
        f"{prog}: output inside the LibOS differs from native\n"
        f"--- native ---\n{native.stdout}\n--- libos ---\n{inside.describe()}"
    )
    assert inside.code == native.code, inside.describe()


def test_every_c_file_is_covered() -> None:
    names = {n for n, _ in CASES}
    assert names == set(libos.c_tests())
    assert len(names) >= 29
