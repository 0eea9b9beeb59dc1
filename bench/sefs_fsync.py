"""SEFS: fsync of a 4 KiB change in a big file, native vs inside, in one run.

Runs bench/c/bigfsync.c natively (a file on the host disk, /var/tmp) and inside the LibOS (a
file of the root, whose writable layer is SEFS): it writes the file and fsyncs it ("fill"),
then changes 4 KiB at a random offset and fsyncs, several times ("fsync4k", the median).
A commit finds what changed by reading back the data of the file it syncs (the LibOS does not
see the program's native writes), so inside "fsync4k" grows with the file's size.

    .venv/bin/python bench/sefs_fsync.py [--mib 1024] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from sefs_scale import phases  # noqa: E402  (the phase lines of bench/c programs)

import libos  # noqa: E402  (the test harness: compile, instances)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="size of the file")
    ap.add_argument("--reps", type=int, default=5, help="4 KiB changes, each fsync'd")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sefs-fsync-"))
    try:
        prog = libos.compile_c(HERE / "c" / "bigfsync.c", work / "bigfsync")
        host = Path(tempfile.mkdtemp(prefix="sefs-fsync-", dir="/var/tmp"))
        try:
            cmd = [str(prog), str(host / "big"), str(args.mib), str(args.reps)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise SystemExit(f"native bigfsync failed: {res.stderr.strip()}")
            nat = phases(res.stdout)
        finally:
            shutil.rmtree(host, ignore_errors=True)
        inst = libos.Instance.new(work / "instance")
        inst.configure()
        cfg = json.loads(inst.config_path.read_text())
        # the file's contents are in the instance's page cache, counted as its memory
        cfg.setdefault("resource_limits", {})["user_space_size"] = f"{args.mib + 512}MB"
        inst.config_path.write_text(json.dumps(cfg))
        libos.place_with_dependencies(inst.image, {"/bin/bigfsync": prog})
        inst.build()
        run = inst.run(["/bin/bigfsync", "/root/big", str(args.mib), str(args.reps)], timeout=3600)
        if run.code != 0:
            raise SystemExit(f"bigfsync inside failed ({run.code}): {run.stderr.strip()}")
        lib = phases(run.stdout)
        print(f"{'workload':<40} {'native s':>10} {'libos s':>10} {'ratio':>8}")
        for key, name in (
            ("fill", f"write {args.mib} MiB + fsync"),
            ("fsync4k", "4 KiB change + fsync"),
        ):
            a, b = nat[key], lib[key]
            print(f"{name:<40} {a:>10.4f} {b:>10.4f} {b / a if a else float('inf'):>8.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
