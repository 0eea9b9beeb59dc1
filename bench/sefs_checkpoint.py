"""The slices of a SEFS checkpoint at scale: how long the longest one stops the serving loop.

A volume of N files of 16 bytes in one directory, each committed (as ``manyfiles`` with
fsync makes it: one journal record a file, so the checkpoint moves their data out of the
journal), then one checkpoint made in slices as the serving loop makes it
(``kernel/commits.py``: one slice a turn).  Prints, per N, the checkpoint's slices, the
longest (wall time, and how much of it the garbage collector took: a full collection walks
every object, so it grows with the inodes wherever it falls) and the total, in
milliseconds; in process, no program:

    .venv/bin/python bench/sefs_checkpoint.py [--files 20000 100000]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from occlum.fs.sefs import SefsFs
from occlum.fs.sefs.checkpoint import checkpoint_steps
from occlum.fs.sefs.closes import CloseWatch

KEY = bytes(range(32))


def volume(d: Path, n: int) -> SefsFs:
    fs = SefsFs(d, KEY)
    watch = fs.close_watch = CloseWatch()  # as in the LibOS: closed files become clean
    top = fs.root.mkdir(b"many", 0o755, 0, 0)
    for i in range(n):
        f = top.create(b"f%d" % i, 0o644, 0, 0)
        fd = f.open_host_fd(os.O_RDWR)
        os.write(fd, b"%16d" % i)
        os.close(fd)
        if i % 100 == 99:
            watch.read()
            fs.sync()  # a journal record per 100 files: the data is in the journal
    watch.read()
    fs.sync()
    return fs


class Collections:
    """Time the cyclic garbage collector took: a full collection walks every object, so its
    pause grows with the heap (the inodes) wherever it happens to fall."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


def slices(fs: SefsFs) -> list[tuple[float, float]]:
    """Each slice's wall seconds, and of those the collector's."""
    out: list[tuple[float, float]] = []
    collections = Collections()
    gc.callbacks.append(collections)
    try:
        steps = checkpoint_steps(fs)
        done = False
        while not done:
            t, g = time.perf_counter(), collections.total
            try:
                next(steps)
            except StopIteration:
                done = True
            out.append((time.perf_counter() - t, collections.total - g))
        return out
    finally:
        gc.callbacks.remove(collections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, nargs="+", default=[20_000, 100_000])
    args = ap.parse_args()
    print(
        f"{'files':>8} {'slices':>7} {'longest ms':>11} {'of it GC':>9} "
        f"{'longest w/o GC':>15} {'total ms':>9}"
    )
    for n in args.files:
        d = Path(tempfile.mkdtemp(prefix="sefs-ckpt-"))
        try:
            fs = volume(d / "vol", n)
            watch = fs.close_watch
            assert watch is not None
            s = slices(fs)
            fs.close(commit=False)
            watch.close()
            wall, in_gc = max(s)
            own = max(w - g for w, g in s)
            total = sum(w for w, _ in s)
            print(
                f"{n:>8} {len(s):>7} {wall * 1e3:>11.1f} {in_gc * 1e3:>9.1f} "
                f"{own * 1e3:>15.1f} {total * 1e3:>9.1f}"
            )
            sys.stdout.flush()
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
