"""The slices of a SEFS checkpoint at scale: how long the longest one stops the serving loop.

A volume of N files of 16 bytes in one directory, each committed (as ``manyfiles`` with
fsync makes it: one journal record a file, so the checkpoint moves their data out of the
journal), then one checkpoint made in slices as the serving loop makes it
(``kernel/commits.py``: one slice a turn).  Prints, per N, the checkpoint's slices, the
longest (wall time, and how much of it the garbage collector took: a full collection walks
every object, so it grows with the inodes wherever it falls) and the total, in
milliseconds; in process, no program.  Each N runs twice: with Python's collector as it
comes (``python``), and as the supervisor sets it (``supervisor``, ``kernel/collector.py``:
the loop's steps between calls, one per file made and between slices, whose longest is a
stall of the loop as well, shown as ``longest step``):

    .venv/bin/python bench/sefs_checkpoint.py [--files 20000 100000] [--collector supervisor]
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
from occlum.kernel.collector import Collector

KEY = bytes(range(32))


def volume(d: Path, n: int, loop: Collector | None) -> SefsFs:
    fs = SefsFs(d, KEY)
    watch = fs.close_watch = CloseWatch()  # as in the LibOS: closed files become clean
    top = fs.root.mkdir(b"many", 0o755, 0, 0)
    for i in range(n):
        if loop is not None and loop.due():  # the serving loop's turn between calls
            loop.step()
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


def slices(fs: SefsFs, loop: Collector | None) -> list[tuple[float, float]]:
    """Each slice's wall seconds, and of those the collector's."""
    out: list[tuple[float, float]] = []
    collections = Collections()
    gc.callbacks.append(collections)
    try:
        steps = checkpoint_steps(fs)
        done = False
        while not done:
            if loop is not None and loop.due():
                loop.step()
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
    ap.add_argument(
        "--collector", choices=["python", "supervisor"], nargs="+", default=["python", "supervisor"]
    )
    args = ap.parse_args()
    print(
        f"{'files':>8} {'collector':>10} {'slices':>7} {'longest ms':>11} {'of it GC':>9} "
        f"{'longest w/o GC':>15} {'total ms':>9} {'longest step':>13}"
    )
    for n in args.files:
        for how in args.collector:
            run(n, Collector() if how == "supervisor" else None)
            gc.collect()  # the volume's objects are gone: the next run starts empty


def run(n: int, loop: Collector | None) -> None:
    d = Path(tempfile.mkdtemp(prefix="sefs-ckpt-"))
    if loop is not None:
        loop.start()
    try:
        fs = volume(d / "vol", n, loop)
        watch = fs.close_watch
        assert watch is not None
        s = slices(fs, loop)
        fs.close(commit=False)
        watch.close()
        wall, in_gc = max(s)
        own = max(w - g for w, g in s)
        total = sum(w for w, _ in s)
        how, step = ("supervisor", f"{loop.longest * 1e3:.1f}") if loop else ("python", "-")
        print(
            f"{n:>8} {how:>10} {len(s):>7} {wall * 1e3:>11.1f} {in_gc * 1e3:>9.1f} "
            f"{own * 1e3:>15.1f} {total * 1e3:>9.1f} {step:>13}"
        )
        sys.stdout.flush()
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if loop is not None:  # the next run starts from Python's own settings
            loop.stop()
            gc.unfreeze()


if __name__ == "__main__":
    main()
