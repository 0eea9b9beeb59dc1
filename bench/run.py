"""Benchmarks: native vs the LibOS (and proot as a peer), pinned and unpinned, in one run.

Each workload is a small C program that measures itself (so LibOS boot time is not counted),
run R times per mode; the table shows medians and ratios against native with the targets of
DESIGN.md section 4. Results are also written as JSON under bench/out/.

    .venv/bin/python bench/run.py [--quick] [--repeat N] [--modes native,libos,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
BIN = OUT / "bin"
sys.path.insert(0, str(REPO / "tests"))

import libos  # noqa: E402  (the test harness: compile, instances, copy_bom)

PYTHON = "/usr/bin/python3"
PY_STDLIB = "/usr/lib/python3.11"


@dataclass
class Workload:
    name: str
    unit: str
    higher_is_better: bool
    argv: list[str]  # "{bin}" is replaced by the directory of the bench programs
    target: float | None  # ratio against native (max for times, min for throughput)
    quick_argv: list[str] | None = None


WORKLOADS = [
    Workload(
        "getppid (native-only syscall)",
        "ns/op",
        False,
        ["{bin}/syscall_loop", "getppid", "100000"],
        None,
    ),
    Workload(
        "uname (served syscall)",
        "ns/op",
        False,
        ["{bin}/syscall_loop", "uname", "100000"],
        None,
        ["{bin}/syscall_loop", "uname", "10000"],
    ),
    Workload(
        "faccessat (served syscall)",
        "ns/op",
        False,
        ["{bin}/syscall_loop", "faccessat", "100000"],
        None,
        ["{bin}/syscall_loop", "faccessat", "10000"],
    ),
    Workload(
        "spawn+wait, dynamic",
        "us/spawn",
        False,
        ["{bin}/spawn", "200", "{bin}/true_dyn"],
        1.5,
        ["{bin}/spawn", "20", "{bin}/true_dyn"],
    ),
    Workload(
        "spawn+wait, static",
        "us/spawn",
        False,
        ["{bin}/spawn", "200", "{bin}/true_static"],
        3.0,
        ["{bin}/spawn", "20", "{bin}/true_static"],
    ),
    Workload(
        'python3 -c "import json, sqlite3"',
        "us/run",
        False,
        ["{bin}/spawn", "10", PYTHON, "-c", "import json, sqlite3"],
        1.8,
        ["{bin}/spawn", "3", PYTHON, "-c", "import json, sqlite3"],
    ),
    Workload(
        "pipe, 64 KiB writes, 1 GiB",
        "MB/s",
        True,
        ["{bin}/pipe", "1024"],
        0.95,
        ["{bin}/pipe", "128"],
    ),
]

MODES = ["native", "native-pinned", "libos", "libos-pinned", "proot"]


@dataclass
class Measurement:
    workload: str
    mode: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def build_programs() -> None:
    BIN.mkdir(parents=True, exist_ok=True)
    flags = ("-O2",)
    for name in ("syscall_loop", "spawn", "pipe"):
        libos.compile_c(HERE / "c" / f"{name}.c", BIN / name, libos.Variant("o2", "gcc", flags))
    libos.compile_c(HERE / "c" / "true.c", BIN / "true_dyn", libos.Variant("d", "gcc", flags))
    libos.compile_c(
        HERE / "c" / "true.c", BIN / "true_static", libos.Variant("s", "gcc", (*flags, "-static"))
    )


def build_instance() -> libos.Instance:
    path = OUT / "instance"
    if path.exists():
        shutil.rmtree(path)
    inst = libos.Instance.new(path)
    inst.configure(entry_points=["/bin", "/usr/bin"])
    bom = {
        "targets": [
            {"target": "/bin", "copy": [{"files": [str(p) for p in sorted(BIN.iterdir())]}]},
            {"target": "/usr/bin", "copy": [{"files": [PYTHON]}]},
            {"target": "/usr/lib", "copy": [{"dirs": [PY_STDLIB]}]},
            {
                "target": f"{PY_STDLIB}/lib-dynload",
                "copy": [
                    {"files": sorted(str(p) for p in Path(PY_STDLIB, "lib-dynload").glob("*.so"))}
                ],
            },
        ]
    }
    inst.copy_bom(bom)
    inst.build()
    return inst


def command(w: Workload, mode: str, quick: bool, inst: libos.Instance | None) -> list[str]:
    argv = w.quick_argv if quick and w.quick_argv else w.argv
    inside = mode.startswith("libos")
    bin_dir = "/bin" if inside else str(BIN)
    args = [a.replace("{bin}", bin_dir) for a in argv]
    if inside:
        args = [*libos._tool("occlum"), "run", *args]
    elif mode == "proot":
        args = ["proot", *args]
    if mode.endswith("pinned"):
        args = ["taskset", "-c", "0", *args]
    return args


def measure(
    w: Workload, mode: str, repeat: int, quick: bool, inst: libos.Instance | None
) -> Measurement:
    m = Measurement(w.name, mode)
    argv = command(w, mode, quick, inst)
    env = dict(os.environ, OCCLUM_LOG_LEVEL="error")
    for _ in range(repeat):
        try:
            proc = subprocess.run(
                argv,
                cwd=inst.path if inst and mode.startswith("libos") else None,
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            m.error = str(e).splitlines()[0]
            break
        try:
            if proc.returncode != 0:
                raise ValueError
            m.samples.append(float(proc.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            m.error = f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"[:120]
            break
    return m


def ratio(w: Workload, native: Measurement | None, other: Measurement) -> float | None:
    if native is None or native.median is None or other.median is None or native.median == 0:
        return None
    return other.median / native.median


def verdict(w: Workload, r: float | None) -> str:
    if w.target is None or r is None:
        return ""
    ok = r >= w.target if w.higher_is_better else r <= w.target
    return "[green]meets[/green]" if ok else "[red]misses[/red]"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller iteration counts")
    ap.add_argument("--repeat", type=int, default=5, help="runs per workload and mode (median)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if "proot" in modes and not shutil.which("proot"):
        modes.remove("proot")
    console = Console(width=max(Console().width, 170))

    build_programs()
    inst: libos.Instance | None = None
    instance_error = None
    if any(m.startswith("libos") for m in modes):
        try:
            inst = build_instance()
        except Exception as e:  # report and go on with the native figures
            instance_error = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            console.print(f"[red]LibOS instance could not be built:[/red] {instance_error}")

    results: list[Measurement] = []
    for w in WORKLOADS:
        for mode in modes:
            if mode.startswith("libos") and inst is None:
                results.append(Measurement(w.name, mode, error=f"no instance: {instance_error}"))
                continue
            console.print(f"[dim]{w.name} / {mode}[/dim]")
            results.append(measure(w, mode, args.repeat, args.quick, inst))

    table = Table(title="Occlum for Python: benchmarks (medians)")
    table.add_column("workload")
    table.add_column("unit")
    for mode in modes:
        table.add_column(mode, justify="right")
        if mode != "native" and mode != "native-pinned":
            table.add_column("ratio", justify="right")
    table.add_column("target")
    table.add_column("libos")
    by = {(m.workload, m.mode): m for m in results}
    rows = []
    for w in WORKLOADS:
        cells = [w.name, w.unit]
        row: dict[str, object] = {
            "workload": w.name,
            "unit": w.unit,
            "target": w.target,
            "higher_is_better": w.higher_is_better,
            "modes": {},
        }
        libos_ratio = None
        for mode in modes:
            m = by[(w.name, mode)]
            base = by.get((w.name, "native-pinned" if mode.endswith("pinned") else "native"))
            r = ratio(w, base, m)
            cells.append(
                f"{m.median:.1f}" if m.median is not None else f"[red]{m.error or 'n/a'}[/red]"
            )
            if mode not in ("native", "native-pinned"):
                cells.append(f"{r:.2f}x" if r is not None else "")
            if mode == "libos":
                libos_ratio = r
            row["modes"][mode] = {**asdict(m), "median": m.median, "ratio": r}  # type: ignore[index]
        t = "" if w.target is None else ("≥ " if w.higher_is_better else "≤ ") + f"{w.target}x"
        cells += [t, verdict(w, libos_ratio)]
        table.add_row(*cells)
        rows.append(row)
    console.print(table)

    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {
        "time": stamp,
        "quick": args.quick,
        "repeat": args.repeat,
        "modes": modes,
        "nproc": os.cpu_count(),
        "uname": " ".join(os.uname()),
        "results": rows,
    }
    for name in (f"results-{stamp}.json", "latest.json"):
        (OUT / name).write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results: {OUT / f'results-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
