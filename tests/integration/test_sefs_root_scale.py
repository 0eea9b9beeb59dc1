"""SEFS at scale inside the LibOS: a 1 TiB sparse file on the root, tens of thousands of files
in one directory of the root (more than the supervisor has descriptors)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, dict[str, Path]]]:
    work = tmp_path_factory.mktemp("sefs-scale")
    progs = {
        "manyfiles": libos.compile_c(REPO / "bench" / "c" / "manyfiles.c", work / "manyfiles"),
        "sparse_holes": libos.compile_c(REPO / "tests" / "c" / "sparse_holes.c", work / "sparse"),
    }
    i = Instance.new(work / "instance")
    i.configure()
    libos.place_with_dependencies(
        i.image,
        {
            "/bin/manyfiles": progs["manyfiles"],
            "/bin/sparse_holes": progs["sparse_holes"],
            "/bin/sh": Path("/bin/dash"),
            "/bin/truncate": Path("/usr/bin/truncate"),
            "/bin/sync": Path("/bin/sync"),
            "/bin/ls": Path("/bin/ls"),
            "/bin/mkdir": Path("/bin/mkdir"),
        },
    )
    i.build()
    yield i, progs


def test_a_sparse_file_on_the_root(inst: tuple[Instance, dict[str, Path]], tmp_path: Path) -> None:
    i, progs = inst
    # holes, SEEK_DATA/SEEK_HOLE and a punched hole as natively; the second run loads the
    # file from storage and must see the same layout
    for mode in ("keep", "check"):
        native = libos.run_native([str(progs["sparse_holes"]), str(tmp_path / "sp"), mode])
        assert native.code == 0 and native.stdout.endswith("PASS\n"), native.describe()
        inside = i.run(["/bin/sparse_holes", "/root/sp", mode])
        assert inside.stdout == native.stdout, inside.describe()
        assert inside.code == 0
    start = time.monotonic()
    res = i.run(["/bin/sh", "-c", "truncate -s 1T /root/x && sync && ls -l /root/x"], timeout=60)
    took = time.monotonic() - start
    assert res.code == 0 and " 1099511627776 " in res.stdout, res.describe()
    assert took < 15, f"{took:.1f} s for a 1 TiB sparse file (boot included)"


@pytest.mark.slow
def test_tens_of_thousands_of_files_in_one_directory(
    inst: tuple[Instance, dict[str, Path]],
) -> None:
    # 25 000: more than the supervisor's descriptors (each file kept a memfd: EMFILE near
    # RLIMIT_NOFILE less 64); created one by one, each closed (a commit), listed, deleted
    i, _ = inst
    res = i.run(["/bin/sh", "-c", "mkdir /root/many && /bin/manyfiles /root/many 25000 nofsync"],
                timeout=1200)  # fmt: skip
    assert res.code == 0, res.describe()
    assert [line.split()[0] for line in res.stdout.splitlines()] == ["create", "list", "delete"]
    res = i.run(["/bin/ls", "-a", "/root/many"])
    assert res.code == 0 and res.stdout == ".\n..\n", res.describe()


def test_no_full_collection_of_the_heap_in_a_served_call(
    inst: tuple[Instance, dict[str, Path]],
) -> None:
    # thousands of files made and deleted: the supervisor's heap grows with the inodes, and
    # Python's full collections (which walk all of it) are only the loop's steps between calls,
    # each over what is not frozen (kernel/collector.py); none is triggered inside a call
    i, _ = inst
    res = i.run(["/bin/sh", "-c", "mkdir /root/gc && /bin/manyfiles /root/gc 10000 nofsync"],
                timeout=600, log_level="debug")  # fmt: skip
    assert res.code == 0, res.describe()
    m = re.search(r"collector: (\d+) steps, (\d+) unplanned full collections, longest", res.stderr)
    assert m, res.describe()
    assert int(m[1]) >= 1 and int(m[2]) == 0, m[0]
