"""Real applications, native vs `occlum run` vs `occlum exec`, whole commands, in one run.

Each application starts as a user would start it: the wall time of the whole command, from
the shell's fork to the exit (for the LibOS: the `occlum` command itself, its boot and its
init stage included). Every cell is the median of ``--repeat`` runs after one first run, which
is reported apart (`first`): the first `occlum run` after `occlum build`, the first
`occlum exec` into a freshly started instance. Ratios are against the native median.
`occlum run` goes through the user's zygote (see docs/internals.md), whose first run of a
new build verifies the image files it reads and keeps them; `direct` is `occlum run` with
``OCCLUM_NO_ZYGOTE=1``, the whole command in one process.

Applications come from Debian packages that `scripts/setup.sh` installs; one whose files
are missing is skipped, and the table says so.

    .venv/bin/python bench/apps.py [--repeat N] [--only true,java,...] [--modes run,direct,exec]
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(REPO / "tests"))

import libos  # noqa: E402  (the test harness: instances, placing host files)

JDK = Path("/usr/lib/jvm/java-17-openjdk-amd64")
GCC_LIB = Path("/usr/lib/gcc/x86_64-linux-gnu/12")
PY_LIB = Path("/usr/lib/python3.11")
NUMPY = Path("/usr/lib/python3/dist-packages/numpy")
HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
SQL_TX = "".join(f"BEGIN; INSERT INTO t VALUES ({i}, 'row {i}'); COMMIT;\n" for i in range(200))


@dataclass
class App:
    name: str
    argv: list[str]  # the same paths natively and inside
    needs: list[Path]  # host files or directories that must exist
    place: Callable[[Path], None]  # puts what it needs into an image
    setup: Callable[[Path], None] = lambda _root: None  # per-run inputs, natively at root /
    note: str = ""
    memory: str = "300MB"  # resource_limits.user_space_size (V8 and the JVM reserve a lot)


def _tree(image: Path, src: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy a host directory to the same path in the image, symlinks kept."""
    dest = image / str(src).lstrip("/")
    shutil.copytree(
        src, dest, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*skip)
    )


LD_SO = "/lib64/ld-linux-x86-64.so.2"


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
    _bins(image, "/usr/bin/python3")
    _tree(image, PY_LIB, skip=("__pycache__", "test", "idlelib", "tkinter", "ensurepip"))
    _libs_of(image, sorted((PY_LIB / "lib-dynload").glob("*.so")))
    if numpy:
        _tree(image, NUMPY)
        _libs_of(image, sorted(NUMPY.rglob("*.so")))
        libs = Path("/usr/lib/x86_64-linux-gnu")
        for blas in ("blas", "lapack"):
            if (libs / blas).exists():
                _tree(image, libs / blas)


def _place_gcc(image: Path) -> None:
    tools = ["/usr/bin/gcc", "/usr/bin/as", str(GCC_LIB / "cc1")]
    _bins(image, *tools)
    link = image / "usr/bin/x86_64-linux-gnu-as"
    link.unlink(missing_ok=True)
    link.symlink_to("as")
    _tree(image, GCC_LIB / "include")
    for header in ("stdio.h",):
        deps = subprocess.run(
            ["gcc", "-M", "-x", "c", "-"], input=f"#include <{header}>\n",
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for word in deps.replace("\\", " ").split():
            if word.startswith("/") and Path(word).is_file():
                libos.place(image, Path(word), os.path.normpath(word))


def _setup_gcc(root: Path) -> None:
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "tmp" / "hello.c").write_text(HELLO_C)


def _setup_sqlite(root: Path) -> None:
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "tmp" / "tx.sql").write_text(
        "DROP TABLE IF EXISTS t; CREATE TABLE t (a INTEGER, b TEXT);\n" + SQL_TX
    )


APPS = [
    App("true", ["/bin/true"], [Path("/bin/true")], lambda im: _bins(im, "/bin/true")),
    App(
        "java",
        ["/usr/bin/java", "-version"],
        [JDK / "bin" / "java"],
        _place_java,
        note="OpenJDK 17 (openjdk-17-jre-headless)",
        memory="4GB",  # the JVM reserves 1 GiB of class space beside its heap
    ),
    App(
        "node",
        ["/usr/bin/node", "-e", "0"],
        [Path("/usr/bin/node")],
        lambda im: _bins(im, "/usr/bin/node"),
        note="nodejs",
        memory="2GB",
    ),
    App(
        "python",
        ["/usr/bin/python3", "-c", "import json, sqlite3"],
        [Path("/usr/bin/python3"), PY_LIB],
        _place_python,
    ),
    App(
        "numpy",
        ["/usr/bin/python3", "-c", "import numpy"],
        [NUMPY],
        lambda im: _place_python(im, numpy=True),
        note="python3-numpy",
        memory="1GB",
    ),
    App(
        "gcc",
        ["/usr/bin/gcc", "-c", "/tmp/hello.c", "-o", "/tmp/hello.o"],
        [GCC_LIB / "cc1"],
        _place_gcc,
        _setup_gcc,
        note="gcc -c hello.c",
    ),
    App(
        "sqlite",
        ["/usr/bin/sqlite3", "/tmp/bench.db", ".read /tmp/tx.sql"],
        [Path("/usr/bin/sqlite3")],
        lambda im: _bins(im, "/usr/bin/sqlite3"),
        _setup_sqlite,
        note="200 transactions, on /tmp",
    ),
]


@dataclass
class Row:
    app: str
    note: str
    native: float | None = None
    cells: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> first, median
    skipped: str = ""


def _timed(argv: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    return took


def _occlum(*args: str) -> list[str]:
    return [str(REPO / ".venv" / "bin" / "occlum"), *args]


def _native(app: App, repeat: int) -> float:
    app.setup(Path("/"))
    _timed(app.argv)  # warm the host's caches as a first run inside would not be
    return statistics.median(_timed(app.argv) for _ in range(repeat))


def _instance(app: App, base: Path) -> libos.Instance:
    inst = libos.Instance.new(base / app.name)
    inst.configure(entry_points=["/"])
    cfg = inst.config()
    limits = cfg.setdefault("resource_limits", {})
    assert isinstance(limits, dict)
    limits["user_space_size"] = app.memory
    inst.write_config(cfg)
    app.place(inst.image)
    app.setup(inst.image)
    inst.build()
    return inst


def _run_mode(
    inst: libos.Instance, app: App, repeat: int, direct: bool = False
) -> dict[str, float]:
    argv = _occlum("run", *app.argv)
    if direct:
        argv = ["env", "OCCLUM_NO_ZYGOTE=1", *argv]
    first = _timed(argv, inst.path)
    return {"first": first, "median": statistics.median(_timed(argv, inst.path)
                                                        for _ in range(repeat))}  # fmt: skip


def _exec_mode(inst: libos.Instance, app: App, repeat: int) -> dict[str, float]:
    subprocess.run(_occlum("start"), cwd=inst.path, check=True, capture_output=True, timeout=120)
    try:
        argv = _occlum("exec", *app.argv)
        first = _timed(argv, inst.path)
        times = [_timed(argv, inst.path) for _ in range(repeat)]
    finally:
        subprocess.run(_occlum("stop"), cwd=inst.path, capture_output=True, timeout=120)
    return {"first": first, "median": statistics.median(times)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated application names")
    ap.add_argument("--modes", default="run,direct,exec", help="run, direct, exec (any of)")
    args = ap.parse_args()
    only = {n for n in args.only.split(",") if n}
    modes = [m for m in args.modes.split(",") if m]
    rows: list[Row] = []
    console = Console()
    with tempfile.TemporaryDirectory(prefix="occlum-apps-") as tmp:
        for app in APPS:
            if only and app.name not in only:
                continue
            row = Row(app.name, app.note)
            rows.append(row)
            missing = [str(p) for p in app.needs if not p.exists()]
            if missing:
                row.skipped = f"not installed: {', '.join(missing)}"
                console.print(f"[yellow]{app.name}: skipped ({row.skipped})")
                continue
            console.print(f"{app.name}: native, then building its instance")
            row.native = _native(app, args.repeat)
            inst = _instance(app, Path(tmp))
            if "run" in modes:
                row.cells["occlum run"] = _run_mode(inst, app, args.repeat)
            if "direct" in modes:
                row.cells["occlum direct"] = _run_mode(inst, app, args.repeat, direct=True)
            if "exec" in modes:
                row.cells["occlum exec"] = _exec_mode(inst, app, args.repeat)
            shutil.rmtree(inst.path, ignore_errors=True)
    _show(console, rows, modes)
    OUT.mkdir(exist_ok=True)
    (OUT / "apps.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


def _show(console: Console, rows: list[Row], modes: list[str]) -> None:
    table = Table(title="Applications, whole commands (medians; first run apart)")
    table.add_column("app")
    table.add_column("native ms", justify="right")
    names = [m for m in ("occlum run", "occlum direct", "occlum exec") if m.split()[1] in modes]
    for name in names:
        table.add_column(f"{name} first ms", justify="right")
        table.add_column(f"{name} ms", justify="right")
        table.add_column("ratio", justify="right")
    table.add_column("note")
    for r in rows:
        if r.skipped or r.native is None:
            table.add_row(r.app, "", *([""] * 3 * len(names)), r.skipped)
            continue
        cells: list[str] = []
        for name in names:
            c = r.cells.get(name)
            if c is None:
                cells += ["", "", ""]
                continue
            cells += [f"{c['first'] * 1e3:.0f}", f"{c['median'] * 1e3:.0f}",
                      f"{c['median'] / r.native:.1f}x"]  # fmt: skip
        table.add_row(r.app, f"{r.native * 1e3:.1f}", *cells, r.note)
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
