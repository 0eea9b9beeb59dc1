"""Random system calls with random arguments inside the LibOS (tests/c/fuzz/syscall_fuzz.c):
every call gets an answer, none is failed by an error of the LibOS's own ("internal error
serving ..."), no Python traceback reaches the user, a program stuck in a call still dies by
SIGKILL, and the LibOS serves files afterwards. Seeds are fixed so a failure replays:
``occlum run /bin/syscall_fuzz SEED CHILDREN CALLS /tmp/fz``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = [pytest.mark.slow, pytest.mark.needs_root]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    work = tmp_path_factory.mktemp("fuzz")
    prog = libos.compile_c(REPO / "tests" / "c" / "fuzz" / "syscall_fuzz.c", work / "fuzz")
    i = Instance.new(work / "instance")
    i.configure()
    libos.place_with_dependencies(i.image, {"/bin/syscall_fuzz": prog})
    i.build()
    yield i
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize(("seed", "scratch"), [(1, "/tmp/fz"), (2, "/root/fz"), (3, "/tmp/fz")])
def test_random_calls_leave_the_libos_serving(inst: Instance, seed: int, scratch: str) -> None:
    res = inst.run(
        ["/bin/syscall_fuzz", str(seed), "20", "1500", scratch], log_level="warn", timeout=600
    )
    assert "Traceback" not in res.stderr, res.describe()
    assert "internal error" not in res.stderr, res.describe()
    assert res.code == 0 and res.stdout.rstrip().endswith("PASS"), res.describe()
