"""Many files in /tmp: a ramfs inside the LibOS, a host tmpfs and ext4 natively, in one run.

``manyfiles DIR N nofsync`` (bench/c/manyfiles.c): N files created one by one (open, 16-byte
write, close), listed, deleted. Natively in a directory of ``/dev/shm`` (tmpfs, the kind of
file system /tmp is inside) and of ``/var/tmp`` (ext4 here); inside in ``/tmp``. Each
repetition runs native and LibOS back to back; the medians and the ratio LibOS / native tmpfs
are printed. Inside, past 1024 files the ones nobody holds let their memfd go (their bytes move
into the supervisor), so the run also shows what that costs.

    .venv/bin/python bench/tmp_scale.py [--files 30000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from sefs_scale import inside, native  # noqa: E402  (manyfiles on the host and inside)

import libos  # noqa: E402  (the test harness: compile, instances)

PHASES = ("create", "list", "delete")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tmp-scale-inst-"))
    try:
        prog = libos.compile_c(HERE / "c" / "manyfiles.c", work / "manyfiles")
        inst = libos.Instance.new(work / "instance")
        inst.configure()
        libos.place_with_dependencies(
            inst.image,
            {
                "/bin/manyfiles": prog,
                "/bin/sh": Path("/bin/dash"),
                "/bin/mkdir": Path("/bin/mkdir"),
            },
        )
        inst.build()
        runs: dict[str, list[dict[str, float]]] = {"tmpfs": [], "ext4": [], "libos": []}
        for i in range(args.repeat):
            runs["tmpfs"].append(native(prog, args.files, "nofsync", "/dev/shm"))
            runs["ext4"].append(native(prog, args.files, "nofsync", "/var/tmp"))
            runs["libos"].append(inside(inst, args.files, "nofsync", f"r{i}", "/tmp"))
        print(f"{args.files} files, medians of {args.repeat}")
        head = (
            f"{'phase':<8} {'tmpfs s':>9} {'ext4 s':>9} {'libos s':>9} {'/tmpfs':>7} {'/ext4':>7}"
        )
        print(head)
        for p in PHASES:
            t, e, lib = (
                statistics.median(r[p] for r in runs[k]) for k in ("tmpfs", "ext4", "libos")
            )
            print(f"{p:<8} {t:>9.3f} {e:>9.3f} {lib:>9.3f} {lib / t:>7.1f} {lib / e:>7.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
