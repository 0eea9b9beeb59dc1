"""Real applications, native vs `occlum run` vs `occlum exec`, whole commands, in one run.

Each application starts as a user would start it: the wall time of the whole command, from
the shell's fork to the exit (for the LibOS: the `occlum` command itself, its boot and its
init stage included). For each side the first run is reported apart (`first`: the first
`occlum run` after `occlum build`, the first `occlum exec` into a freshly started instance,
natively a run with whatever the host's caches held) and the `warm` figure is the median of
``--repeat`` runs after it. The warm runs alternate with native ones, so that both sides see
the same load; native warm is the median of those. Ratios are warm against native warm; for
`occlum run` the difference warm - native is shown too (the targets: warm `occlum run` <=
native + 100 ms, warm `occlum exec` <= 1.5x native).

The files an application works on (sources, the sqlite database) live in WORK, the same path
on both sides: natively a host directory on disk, inside the instance's persistent root (the
encrypted SEFS layer of the union root over the image). Applications come from Debian packages
that `scripts/setup.sh` installs (some as optional ones); one whose files are missing is
skipped, and the table says so.

    .venv/bin/python bench/apps.py [--repeat N] [--only true,java,...] [--modes run,exec]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(REPO / "tests"))

import libos  # noqa: E402  (the test harness: instances, placing host files)

JDK = Path("/usr/lib/jvm/java-17-openjdk-amd64")
PY_LIB = Path("/usr/lib/python3.11")
NUMPY = Path("/usr/lib/python3/dist-packages/numpy")
LD_SO = "/lib64/ld-linux-x86-64.so.2"
# The applications' files: a host directory on disk natively (not tmpfs), the same path on the
# instance's persistent root inside (not /tmp, which is a ramfs in the instance).
WORK = Path(f"/var/tmp/occlum-apps-{os.getpid()}")
RUN_TARGET_MS = 100.0  # warm `occlum run` <= native + this
EXEC_TARGET = 1.5  # warm `occlum exec` <= this x native
MODES = ("run", "exec")

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
SQL_TX = "".join(f"BEGIN; INSERT INTO t VALUES ({i}, 'row {i}'); COMMIT;\n" for i in range(200))


@dataclass
class App:
    name: str
    argv: list[str]  # the same paths natively and inside
    needs: list[Path]  # host files or directories that must exist
    place: Callable[[Path], None]  # puts the programs it runs into an image
    setup: Callable[[Path], None] = lambda _work: None  # writes its files into WORK/<name>
    note: str = ""
    memory: str = "300MB"  # resource_limits.user_space_size (V8 and the JVM reserve a lot)
    packages: str = ""  # the Debian packages that install ``needs`` (scripts/setup.sh)
    # absolute targets for the warm whole command, ms (the `occlum` command's own cost)
    run_max_ms: float | None = None
    exec_max_ms: float | None = None

    @property
    def work(self) -> Path:
        return WORK / self.name


def _tree(image: Path, src: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy a host directory to the same path in the image, symlinks kept."""
    dest = image / str(src).lstrip("/")
    shutil.copytree(
        src, dest, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*skip)
    )


def _libs_of(image: Path, objects: list[Path]) -> None:
    """Place the libraries the shared objects ``objects`` load (``libos.elf_dependencies``
    follows a program's interpreter; a library has none, so ld.so lists them directly)."""
    for obj in objects:
        out = subprocess.run([LD_SO, "--list", str(obj)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            words = [w for w in line.split() if w.startswith("/")]
            if "=>" in line and words and Path(words[0]).exists():
                libos.place(image, Path(words[0]), words[0])


def _bins(image: Path, *paths: str) -> None:
    libos.place_with_dependencies(image, {p: Path(p) for p in paths})


def _place_java(image: Path) -> None:
    _tree(image, JDK, skip=("jmods", "include", "legal", "man", "docs", "src.zip"))
    conf = Path("/etc/java-17-openjdk")
    if conf.exists():
        _tree(image, conf)
    java = JDK / "bin" / "java"
    libos.place_with_dependencies(image, {str(java): java})
    _libs_of(image, sorted((JDK / "lib").rglob("*.so")))
    link = image / "usr/bin/java"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(java)


def _place_python(image: Path, numpy: bool = False) -> None:
    """python3 and its standard library, compiled modules (__pycache__) included: the same
    files as natively, so neither side compiles anything."""
    _bins(image, "/usr/bin/python3")
    _tree(image, PY_LIB, skip=("test", "idlelib", "tkinter", "ensurepip"))
    _libs_of(image, sorted((PY_LIB / "lib-dynload").glob("*.so")))
    if numpy:
        _tree(image, NUMPY)
        _libs_of(image, sorted(NUMPY.rglob("*.so")))
        libs = Path("/usr/lib/x86_64-linux-gnu")
        for blas in ("blas", "lapack"):
            if (libs / blas).exists():
                _tree(image, libs / blas)


def _place_toolchain(app: App) -> Callable[[Path], None]:
    """make, gcc and what building the app's sources reads (found by building a scratch copy
    of them natively)."""

    def place(image: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="occlum-apps-gcc-") as scratch:
            project = Path(scratch) / "project"
            project.mkdir()
            app.setup(project)
            libos.place_gcc_toolchain(image, project, Path(scratch) / "native")

    return place


def _setup_hello(work: Path) -> None:
    (work / "hello.c").write_text(HELLO_C)


N_MODULES = 4  # make's project: main.c and these, one header


def _setup_project(work: Path) -> None:
    """A small C project for `make -j2`: N_MODULES modules, a main, a header, a Makefile whose
    rules need no shell (make runs gcc directly)."""
    names = [f"mod{i}" for i in range(N_MODULES)]
    (work / "mods.h").write_text("".join(f"long {n}(long x);\n" for n in names))
    for i, n in enumerate(names):
        (work / f"{n}.c").write_text(
            '#include <string.h>\n#include "mods.h"\n'
            f'static long step(long x) {{ return x * {i + 3} + (long)strlen("{n}"); }}\n'
            f"long {n}(long x) {{ for (int k = 0; k < 10; k++) x = step(x) % 1000003; "
            "return x; }\n"
        )
    calls = " + ".join(f"{n}({i})" for i, n in enumerate(names))
    (work / "main.c").write_text(
        '#include <stdio.h>\n#include "mods.h"\n'
        f'int main(void) {{ printf("%ld\\n", {calls}); return 0; }}\n'
    )
    objs = " ".join(f"{n}.o" for n in ["main", *names])
    (work / "Makefile").write_text(
        f"prog: {objs}\n\tgcc -o $@ {objs}\n%.o: %.c mods.h\n\tgcc -O2 -c -o $@ $<\n"
    )


def _setup_sqlite(work: Path) -> None:
    (work / "tx.sql").write_text(
        "DROP TABLE IF EXISTS t; CREATE TABLE t (a INTEGER, b TEXT);\n" + SQL_TX
    )


def _apps() -> list[App]:
    gcc = App(
        "gcc",
        ["/usr/bin/gcc", "-c", str(WORK / "gcc" / "hello.c"), "-o", str(WORK / "gcc" / "hello.o")],
        [libos.GCC_LIB / "cc1"],
        lambda _im: None,
        _setup_hello,
        note="gcc -c hello.c",
        packages="gcc libc6-dev",
    )
    gcc.place = _place_toolchain(gcc)
    make = App(
        "make",
        ["/usr/bin/make", "-B", "-j2", "-C", str(WORK / "make")],
        [libos.GCC_LIB / "cc1", Path("/usr/bin/make")],
        lambda _im: None,
        _setup_project,
        note=f"make -B -j2: {N_MODULES + 1} .c files, a link, in WORK",
        packages="make gcc libc6-dev",
        memory="1GB",
    )
    make.place = _place_toolchain(make)
    return [
        App(
            "true",
            ["/bin/true"],
            [Path("/bin/true")],
            lambda im: _bins(im, "/bin/true"),
            note="the command's own cost (targets: warm run <= 50 ms, warm exec <= 10 ms)",
            packages="coreutils",
            run_max_ms=50.0,
            exec_max_ms=10.0,
        ),
        App(
            "java",
            ["/usr/bin/java", "-version"],
            [JDK / "bin" / "java"],
            _place_java,
            note="java -version",
            packages="openjdk-17-jre-headless",
            memory="4GB",  # the JVM maps its heap and 1 GB of class space at start
        ),
        App(
            "node",
            ["/usr/bin/node", "-e", "0"],
            [Path("/usr/bin/node")],
            lambda im: _bins(im, "/usr/bin/node"),
            note="node -e 0",
            packages="nodejs",
            memory="2GB",
        ),
        App(
            "python",
            ["/usr/bin/python3", "-c", "import json, sqlite3"],
            [Path("/usr/bin/python3"), PY_LIB],
            _place_python,
            note="import json, sqlite3 (the same .pyc files)",
            packages="python3",
        ),
        App(
            "numpy",
            ["/usr/bin/python3", "-c", "import numpy"],
            [NUMPY],
            lambda im: _place_python(im, numpy=True),
            note="import numpy",
            packages="python3-numpy",
            memory="1GB",
        ),
        gcc,
        make,
        App(
            "sqlite",
            ["/usr/bin/sqlite3", str(WORK / "sqlite" / "bench.db"), f".read {WORK}/sqlite/tx.sql"],
            [Path("/usr/bin/sqlite3")],
            lambda im: _bins(im, "/usr/bin/sqlite3"),
            _setup_sqlite,
            note="200 transactions in WORK: persistent root (SEFS) / host disk",
            packages="sqlite3",
        ),
    ]


@dataclass
class Cell:
    """One side's figures in seconds; ``error`` instead when a run failed."""

    first: float | None = None
    warm: float | None = None
    error: str = ""


@dataclass
class Row:
    app: str
    note: str
    skipped: str = ""
    cells: dict[str, Cell] = field(default_factory=dict)  # "native", "run", "exec"
    max_ms: dict[str, float] = field(default_factory=dict)  # absolute targets by mode

    def record(self) -> dict[str, object]:
        """The JSON row: flat columns, milliseconds, None where there is no figure."""
        rec: dict[str, object] = {"app": self.app, "note": self.note, "skipped": self.skipped}
        base = self.cells.get("native", Cell()).warm
        for side in ("native", *MODES):
            c = self.cells.get(side, Cell())
            rec[f"{side}_first_ms"] = _ms(c.first)
            rec[f"{side}_warm_ms"] = _ms(c.warm)
            rec[f"{side}_error"] = c.error
            if side == "native":
                continue
            rec[f"{side}_ratio"] = round(c.warm / base, 3) if c.warm and base else None
            if side == "run":
                rec["run_minus_native_ms"] = _ms(c.warm - base) if c.warm and base else None
            if side in self.max_ms:
                rec[f"{side}_max_ms"] = self.max_ms[side]
                rec[f"{side}_meets_max"] = c.warm is not None and c.warm * 1e3 <= self.max_ms[side]
        return rec


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 2)


def _timed(
    side: str, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=600,
        check=False,
    )  # fmt: skip
    took = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{side}: exit {proc.returncode}: {err[-1] if err else '(no output)'}")
    return took


FAILURES = (RuntimeError, subprocess.TimeoutExpired)


def _series(
    run: Callable[[], float], repeat: int, native: Callable[[], float], samples: list[float]
) -> Cell:
    """The first run, then ``repeat`` more, each after a native run whose time goes to
    ``samples``: interleaved, both sides see the same load of the machine (which drifts over
    a bench of several minutes)."""
    try:
        first = run()
        times = []
        for _ in range(repeat):
            samples.append(native())
            times.append(run())
    except FAILURES as exc:
        return Cell(error=str(exc).splitlines()[0])
    return Cell(first, statistics.median(times))


def _occlum(*args: str) -> list[str]:
    return [str(REPO / ".venv" / "bin" / "occlum"), *args]


def _instance(app: App, base: Path) -> libos.Instance:
    inst = libos.Instance.new(base / app.name)
    inst.configure(entry_points=["/"])
    cfg = inst.config()
    limits = cfg.setdefault("resource_limits", {})
    assert isinstance(limits, dict)
    limits["user_space_size"] = app.memory
    inst.write_config(cfg)
    app.place(inst.image)
    work = inst.image / str(app.work).lstrip("/")
    work.mkdir(parents=True, exist_ok=True)
    app.setup(work)
    inst.build()
    return inst


def _run_mode(
    inst: libos.Instance, app: App, repeat: int, native: Callable[[], float], samples: list[float]
) -> Cell:
    run = _occlum("run", *app.argv)
    return _series(lambda: _timed("occlum run", run, inst.path), repeat, native, samples)


def _exec_mode(
    inst: libos.Instance, app: App, repeat: int, native: Callable[[], float], samples: list[float]
) -> Cell:
    try:
        subprocess.run(
            _occlum("start"), cwd=inst.path, check=True, capture_output=True, timeout=120
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return Cell(error=f"occlum start failed: {exc}")
    try:
        run = _occlum("exec", *app.argv)
        return _series(lambda: _timed("occlum exec", run, inst.path), repeat, native, samples)
    finally:
        subprocess.run(_occlum("stop"), cwd=inst.path, capture_output=True, timeout=120)


def _measure(app: App, modes: list[str], repeat: int, base: Path, console: Console) -> Row:
    row = Row(app.name, app.note)
    for mode, limit in (("run", app.run_max_ms), ("exec", app.exec_max_ms)):
        if limit is not None:
            row.max_ms[mode] = limit
    missing = [str(p) for p in app.needs if not p.exists()]
    if missing:
        row.skipped = f"not installed: {', '.join(missing)} (Debian: {app.packages})"
        console.print(f"[yellow]{app.name}: skipped ({row.skipped})")
        return row
    console.print(f"{app.name}: native, then building its instance")
    app.work.mkdir(parents=True)
    app.setup(app.work)

    def native() -> float:
        # the environment the instance gives its programs (Occlum.json env.default)
        return _timed("native", app.argv, env=dict(libos.TEST_ENV))

    try:
        first = native()
    except FAILURES as exc:
        row.cells["native"] = Cell(error=str(exc).splitlines()[0])
        return row
    samples: list[float] = []
    try:
        inst = _instance(app, base)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        row.skipped = f"instance not built: {str(exc).splitlines()[0]}"
        return row
    if "run" in modes:
        row.cells["run"] = _run_mode(inst, app, repeat, native, samples)
    if "exec" in modes:
        row.cells["exec"] = _exec_mode(inst, app, repeat, native, samples)
    shutil.rmtree(inst.path, ignore_errors=True)
    try:
        while len(samples) < repeat:  # every mode failed before its warm runs
            samples.append(native())
    except FAILURES as exc:
        row.cells["native"] = Cell(first, error=str(exc).splitlines()[0])
        return row
    row.cells["native"] = Cell(first, statistics.median(samples))
    return row


def main() -> int:
    apps = _apps()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="warm runs per cell (default 5)")
    ap.add_argument("--only", default="", help="comma-separated application names")
    ap.add_argument("--modes", default="run,exec", help="run, exec or both")
    ap.add_argument("--out", type=Path, default=OUT, help="directory of the JSON results")
    args = ap.parse_args()
    only = [n for n in args.only.split(",") if n]
    modes = [m for m in args.modes.split(",") if m]
    names = [a.name for a in apps]
    unknown = [n for n in only if n not in names] + [m for m in modes if m not in MODES]
    if unknown or not modes or args.repeat < 1:
        what = f"unknown {', '.join(unknown)}" if unknown else "nothing to measure"
        print(
            f"apps.py: {what} (applications: {', '.join(names)}; modes: run, exec; "
            "--repeat at least 1)",
            file=sys.stderr,
        )
        return 2
    # wide enough for every column when the output goes to a file
    console = Console(width=None if sys.stdout.isatty() else 170)
    load = os.getloadavg()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="occlum-apps-") as tmp:
            for app in apps:
                if not only or app.name in only:
                    rows.append(_measure(app, modes, args.repeat, Path(tmp), console))
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    _show(console, rows, modes, args.repeat, load)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {
        "time": stamp,
        "repeat": args.repeat,
        "modes": modes,
        "nproc": os.cpu_count(),
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
        "work": str(WORK),
        "targets": {"run_minus_native_ms": RUN_TARGET_MS, "exec_ratio": EXEC_TARGET},
        "results": [r.record() for r in rows],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (f"apps-{stamp}.json", "apps.json"):
        (args.out / name).write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results: {args.out / f'apps-{stamp}.json'}")
    return 0


def _show(
    console: Console, rows: list[Row], modes: list[str], repeat: int, load: tuple[float, ...]
) -> None:
    table = Table(
        title=f"Applications, whole commands, ms (first run; warm: median of {repeat} after it)",
        caption=f"targets: warm run <= native + {RUN_TARGET_MS:.0f} ms, warm exec <= "
        f"{EXEC_TARGET}x native.  WORK = {WORK}.  load average at start "
        f"{load[0]:.2f} ({os.cpu_count()} CPUs), at end {os.getloadavg()[0]:.2f}",
    )
    table.add_column("app")
    table.add_column("native first", justify="right")
    table.add_column("native warm", justify="right")
    for mode in modes:
        table.add_column(f"{mode} first", justify="right")
        table.add_column(f"{mode} warm", justify="right")
        table.add_column(f"{mode} ratio", justify="right")
        if mode == "run":
            table.add_column("run - native", justify="right")
    table.add_column("note")
    for r in rows:
        rec = r.record()
        if r.skipped:
            table.add_row(r.app, *[""] * (2 + sum(4 if m == "run" else 3 for m in modes)),
                          f"[yellow]skipped: {r.skipped}")  # fmt: skip
            continue
        cells = [_fmt(rec["native_first_ms"]), _fmt(rec["native_warm_ms"])]
        errors = [f"native: {rec['native_error']}"] if rec["native_error"] else []
        for mode in modes:
            ratio, delta = rec[f"{mode}_ratio"], rec.get("run_minus_native_ms")
            warm = _fmt(rec[f"{mode}_warm_ms"])
            if f"{mode}_meets_max" in rec and warm:
                warm = f"[{'green' if rec[f'{mode}_meets_max'] else 'red'}]{warm}"
            cells += [_fmt(rec[f"{mode}_first_ms"]), warm]
            if isinstance(ratio, float):
                ok = mode == "run" or ratio <= EXEC_TARGET
                cells.append(f"[{'green' if ok else 'red'}]{ratio:.2f}x")
            else:
                cells.append("")
            if mode == "run":
                ok = isinstance(delta, float) and delta <= RUN_TARGET_MS
                cells.append(
                    f"[{'green' if ok else 'red'}]{delta:+.0f}" if delta is not None else ""
                )
            if rec[f"{mode}_error"]:
                errors.append(f"{mode}: {rec[f'{mode}_error']}")
        note = r.note + "".join(f"\n[red]{e}" for e in errors)
        table.add_row(r.app, *cells, note)
    console.print(table)


def _fmt(ms: object) -> str:
    if not isinstance(ms, float):
        return ""
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


if __name__ == "__main__":
    sys.exit(main())
