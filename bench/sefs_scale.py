"""SEFS at scale: many small files in one directory on the root, and a sparse 1 TiB file.

Runs the same C program natively (a directory on the host disk) and inside the LibOS (a
directory of the root, whose writable layer is SEFS), in one run, and prints each phase's time
and the ratio LibOS / native:

- ``manyfiles DIR N fsync``: N files created one by one (open, 16-byte write, fsync, close),
  listed, deleted; the same fsync pattern on both sides (bench/c/manyfiles.c);
- the same without the fsync (inside, the last close of each file still commits it);
- ``truncate -s 1T x; sync; ls -l x`` inside, wall time of the whole `occlum exec` of a started
  instance (the issue's figure: under 2 s).

    .venv/bin/python bench/sefs_scale.py [--files 100000] [--nofsync-files 20000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

import libos  # noqa: E402  (the test harness: compile, instances)

OCCLUM = str(Path(sys.executable).parent / "occlum")


def phases(out: str) -> dict[str, float]:
    """The "phase seconds" lines a bench program prints (bench/c/manyfiles.c, bigfsync.c)."""
    return {k: float(v) for k, v in (line.split() for line in out.splitlines() if line)}


def native(prog: Path, n: int, mode: str, under: str = "/var/tmp") -> dict[str, float]:
    """manyfiles on the host, in a fresh directory under ``under`` (host disk by default)."""
    d = Path(tempfile.mkdtemp(prefix="manyfiles-", dir=under))
    try:
        res = subprocess.run([str(prog), str(d), str(n), mode], capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"native manyfiles failed: {res.stderr.strip()}")
        return phases(res.stdout)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def inside(
    inst: libos.Instance, n: int, mode: str, tag: str, under: str = "/root"
) -> dict[str, float]:
    """manyfiles inside, in ``under``/``tag`` (the persistent root by default)."""
    script = f"mkdir {under}/{tag} && /bin/manyfiles {under}/{tag} {n} {mode}"
    res = inst.run(["/bin/sh", "-c", script], timeout=3600)
    if res.code != 0:
        raise SystemExit(f"manyfiles inside failed ({res.code}): {res.stderr.strip()}")
    return phases(res.stdout)


def sparse(inst: libos.Instance) -> float:
    subprocess.run([OCCLUM, "start"], cwd=inst.path, check=True, capture_output=True)
    try:
        t = time.monotonic()
        res = subprocess.run(
            [OCCLUM, "exec", "/bin/sh", "-c", "truncate -s 1T /root/x; sync; ls -l /root/x"],
            cwd=inst.path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        took = time.monotonic() - t
        if res.returncode != 0 or "1099511627776" not in res.stdout:
            raise SystemExit(f"sparse file inside failed: {res.stdout} {res.stderr}")
        return took
    finally:
        subprocess.run([OCCLUM, "stop"], cwd=inst.path, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000, help="files with fsync each")
    ap.add_argument("--nofsync-files", type=int, default=20_000, help="files without fsync")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sefs-scale-inst-"))
    try:
        prog = libos.compile_c(HERE / "c" / "manyfiles.c", work / "manyfiles")
        inst = libos.Instance.new(work / "instance")
        inst.configure()
        libos.place_with_dependencies(
            inst.image,
            {
                "/bin/manyfiles": prog,
                "/bin/sh": Path("/bin/dash"),
                "/bin/truncate": Path("/usr/bin/truncate"),
                "/bin/sync": Path("/bin/sync"),
                "/bin/ls": Path("/bin/ls"),
                "/bin/mkdir": Path("/bin/mkdir"),
            },
        )
        inst.build()
        rows: list[tuple[str, float, float]] = []
        for n, mode, tag in ((args.files, "fsync", "a"), (args.nofsync_files, "nofsync", "b")):
            nat, lib = native(prog, n, mode), inside(inst, n, mode, tag)
            for phase in ("create", "list", "delete"):
                rows.append((f"{n} files, {mode}: {phase}", nat[phase], lib[phase]))
        print(f"{'workload':<34} {'native s':>10} {'libos s':>10} {'ratio':>7}")
        for name, a, b in rows:
            print(f"{name:<34} {a:>10.3f} {b:>10.3f} {b / a if a else float('inf'):>7.2f}")
        print(f"{'truncate -s 1T; sync; ls -l (exec)':<34} {'':>10} {sparse(inst):>10.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
