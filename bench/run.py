"""Benchmarks: native vs the LibOS (and proot as a peer), pinned and unpinned, in one run.

Each workload is a small C program that measures itself (so LibOS boot time is not counted).
A row runs R repetitions; each runs every mode once, back to back, in ABBA order (native,
libos, ..., then reversed), so that a mode and native meet the same load of the machine.  The
table shows each mode's median and its ratio against native: the median of the R paired
ratios (one per repetition), with their min-max, against the targets of DESIGN.md section 4. Results are also written as JSON under bench/out/.  The file system rows
run on a SEFS mount (/data) in the LibOS and on a host tmp directory natively; the `occlum build`
rows are timed here, as whole commands (see bench/README.md for every method).

    .venv/bin/python bench/run.py [--quick] [--repeat N] [--modes native,libos,...] [--only ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
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
JDK = Path("/usr/lib/jvm/java-17-openjdk-amd64")  # openjdk-17-jdk-headless (javac too)
GO_SERVER = "go_http"  # bench/go/httpserver.go, built static into BIN when `go` is there
JAVA_SERVER = "HttpBench"  # bench/java/HttpBench.java, compiled into SHARE when javac is there
# the same JVM natively and inside: a bounded heap (the JVM sizes it from the host's memory
# otherwise), and TCP_NODELAY, without which HttpServer's keep-alive replies (headers and body
# written apart) wait for the client's delayed ACK: 40 ms a request
JAVA = [
    "{java}",
    "-Xmx256m",
    "-XX:CompressedClassSpaceSize=128m",
    "-Dsun.net.httpserver.nodelay=true",
]
WRK = ["wrk", "-t2", "-c16", "-d5s"]
WEB_URL = "http://127.0.0.1:{port}/"
PY_STDLIB = "/usr/lib/python3.11"
SQLITE3 = "/usr/bin/sqlite3"


@dataclass
class Workload:
    name: str
    unit: str
    higher_is_better: bool
    argv: list[str]  # placeholders: see PLACES
    target: float | None  # ratio against native (max for times, min for throughput)
    quick_argv: list[str] | None = None
    kind: str = "program"  # "program" (prints its figure), "build-full", "build-incremental"
    only_modes: tuple[str, ...] | None = None  # None: every mode
    abs_target: float | None = None  # an absolute figure the LibOS must reach (or beat)
    abs_note: str = ""
    client: list[str] | None = None  # kind "server": run from outside against the server


# Placeholders in argv, per side.  {disk}: a host tmp directory on disk natively; {tmpfs}:
# /dev/shm natively (sqlite's target is against native on tmpfs); both are the SEFS mount
# /data in the LibOS.  {share}: the SQL scripts.
SEFS_DIR = "/data"
OCCLUM_SEFS_WRITE = 64.0  # MiB/s, Occlum's published SEFS fio figures (the reference)
OCCLUM_SEFS_READ = 156.0
SEFS_FACTOR = 5.0


def sqlite_argv(script: str, place: str = "{tmpfs}") -> list[str]:
    """`sqlite3 DB < script` on a fresh DB (and no journal left over), timed by timeit."""
    db = f"{place}/bench.db"
    return ["{bin}/timeit", "-u", db, "-u", f"{db}-journal", f"{{share}}/{script}", SQLITE3, db]


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
    Workload(
        "Unix socket, 64 KiB writes, 1 GiB",
        "MB/s",
        True,
        ["{bin}/unixsock", "1024", "{tmpfs}/bench.sock"],
        0.95,
        ["{bin}/unixsock", "128", "{tmpfs}/bench.sock"],
    ),
    Workload(
        "spawn+exit, one LibOS instance per process",
        "us/spawn",
        False,
        ["{bin}/true_dyn"],
        None,
        kind="per-instance",
        only_modes=("native", "libos"),
    ),
    Workload(
        "occlum start to first exec output (/bin/true)",
        "ms",
        False,
        ["{bin}/true_dyn"],
        None,
        kind="service-start",
        only_modes=("native", "libos"),
    ),
    Workload(
        "occlum exec round trip (/bin/true)",
        "ms",
        False,
        ["{bin}/true_dyn"],
        None,
        kind="service-exec",
        only_modes=("native", "libos"),
    ),
    Workload(
        "run/occlum-exec round trip (/bin/true, the native client)",
        "ms",
        False,
        ["{bin}/true_dyn"],
        None,
        kind="service-exec-native",
        only_modes=("native", "libos"),
    ),
    Workload(
        "redis SET (redis-benchmark from outside)",
        "req/s",
        True,
        ["{redis}", "--port", "{port}", "--save", "", "--appendonly", "no"],
        0.9,
        kind="server",
        only_modes=("native", "libos"),
        client=["redis-benchmark", "-p", "{port}", "-t", "set", "-n", "100000", "-q"],
    ),
    Workload(
        "redis GET (redis-benchmark from outside)",
        "req/s",
        True,
        ["{redis}", "--port", "{port}", "--save", "", "--appendonly", "no"],
        0.9,
        kind="server",
        only_modes=("native", "libos"),
        client=["redis-benchmark", "-p", "{port}", "-t", "get", "-n", "100000", "-q"],
    ),
    Workload(
        "web: lighttpd, 1 KiB page (wrk -t2 -c16 from outside)",
        "req/s",
        True,
        ["{lighttpd}", "-D", "-f", "{conf}"],
        0.8,
        kind="server",
        only_modes=("native", "libos"),
        client=[*WRK, WEB_URL],
    ),
    Workload(
        "web: Go net/http, 1 KiB page, keep-alive (wrk -t2 -c16)",
        "req/s",
        True,
        ["{goserver}", "{port}"],
        0.9,
        kind="server",
        only_modes=("native", "libos"),
        client=[*WRK, WEB_URL],
    ),
    Workload(
        "web: Go net/http, 1 KiB page, Connection: close (wrk -t2 -c16)",
        "req/s",
        True,
        ["{goserver}", "{port}"],
        0.9,
        kind="server",
        only_modes=("native", "libos"),
        client=[*WRK, "-H", "Connection: close", WEB_URL],
    ),
    Workload(
        "web: Java HttpServer, 1 KiB page, keep-alive (wrk -t2 -c16)",
        "req/s",
        True,
        [*JAVA, "-cp", "{share}", JAVA_SERVER, "{port}"],
        0.9,
        kind="server",
        only_modes=("native", "libos"),
        client=[*WRK, WEB_URL],
    ),
    Workload(
        "web: Java HttpServer, 1 KiB page, Connection: close (wrk -t2 -c16)",
        "req/s",
        True,
        [*JAVA, "-cp", "{share}", JAVA_SERVER, "{port}"],
        0.9,
        kind="server",
        only_modes=("native", "libos"),
        client=[*WRK, "-H", "Connection: close", WEB_URL],
    ),
    Workload(
        "SEFS seq write 256 MiB + fsync",
        "MiB/s",
        True,
        ["{bin}/seqio", "write", "{disk}/seqio.dat", "256"],
        None,
        ["{bin}/seqio", "write", "{disk}/seqio.dat", "64"],
        abs_target=SEFS_FACTOR * OCCLUM_SEFS_WRITE,
        abs_note=f"≥ {SEFS_FACTOR:g}x Occlum's {OCCLUM_SEFS_WRITE:g}",
    ),
    Workload(
        "SEFS seq read 256 MiB (next run)",
        "MiB/s",
        True,
        ["{bin}/seqio", "read", "{disk}/seqio.dat"],
        None,
        abs_target=SEFS_FACTOR * OCCLUM_SEFS_READ,
        abs_note=f"≥ {SEFS_FACTOR:g}x Occlum's {OCCLUM_SEFS_READ:g}",
    ),
    Workload(
        "sqlite3 10k inserts, 1 transaction",
        "ms",
        False,
        sqlite_argv("insert10k.sql"),
        1.5,
    ),
    Workload(
        "sqlite3 200 transactions (1 insert each)",
        "ms",
        False,
        sqlite_argv("tx200.sql"),
        1.5,
    ),
    Workload(
        "sqlite3 200 transactions, native on disk (fsync durable)",
        "ms",
        False,
        sqlite_argv("tx200.sql", "{disk}"),
        None,
    ),
    Workload(
        "occlum build -f, python3 image",
        "s",
        False,
        [],
        None,
        kind="build-full",
        only_modes=("libos",),
    ),
    Workload(
        "occlum build, incremental (1 file changed)",
        "s",
        False,
        [],
        None,
        kind="build-incremental",
        only_modes=("libos",),
    ),
]

MODES = ["native", "native-pinned", "libos", "libos-pinned", "proot"]


@dataclass
class Measurement:
    workload: str
    mode: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None
    # this mode's figure over its base's (native, or native-pinned for a pinned mode) in each
    # repetition where both gave one, the two run back to back (see run_paired)
    ratios: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def ratio(self) -> float | None:
        """The median of the paired ratios."""
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def ratio_iqr(self) -> tuple[float, float] | None:
        """First and third quartiles of the paired ratios (inclusive method: within min-max)."""
        if len(self.ratios) < 2:
            return None
        q1, _, q3 = statistics.quantiles(self.ratios, n=4, method="inclusive")
        return q1, q3


class SampleError(Exception):
    """One repetition of one mode failed; the message is its one-line reason."""


def _no_op() -> None:
    pass


@dataclass
class Side:
    """How one mode of a row gives one figure per repetition: ``start`` and ``stop`` are
    untimed set-up and tear-down around all of the row's repetitions (a started instance),
    ``sample`` runs one repetition.  Each raises SampleError when it fails."""

    sample: Callable[[], float]
    start: Callable[[], None] = _no_op
    stop: Callable[[], None] = _no_op


def failing(reason: str) -> Side:
    """A side that cannot run at all (no instance, ...): its start fails with ``reason``."""

    def start() -> None:
        raise SampleError(reason)

    return Side(sample=lambda: 0.0, start=start)


def base_of(mode: str) -> str | None:
    """The mode a mode's ratio is taken against (None for the native modes themselves)."""
    if mode in ("native", "native-pinned"):
        return None
    return "native-pinned" if mode.endswith("pinned") else "native"


def abba(modes: list[str], rep: int) -> list[str]:
    """The order of the modes in repetition ``rep``: as given, then reversed, and so on (ABBA),
    so that no mode always runs first (after a pause, with caches cold) or always second."""
    return list(modes) if rep % 2 == 0 else list(reversed(modes))


def run_paired(
    workload: str,
    sides: dict[str, Side],
    repeat: int,
    announce: Callable[[str, int], None] = lambda mode, rep: None,
) -> list[Measurement]:
    """Run every mode of a row once per repetition, back to back in ABBA order, and pair each
    mode's figure with its base's of the same repetition.  On a machine whose load changes
    over minutes, the two runs of a pair meet the same load, where all native repetitions
    and then all LibOS ones would not (one row gave 0.77x and 1.82x in two such runs).  A
    mode that fails keeps its figures so far and its error and is not run again; the others
    go on."""
    got = {mode: Measurement(workload, mode) for mode in sides}
    started: list[str] = []
    try:
        for mode, side in sides.items():
            try:
                side.start()
                started.append(mode)
            except SampleError as e:
                got[mode].error = str(e)
        for rep in range(repeat):
            this: dict[str, float] = {}
            for mode in abba(list(sides), rep):
                m = got[mode]
                if m.error is not None:
                    continue
                announce(mode, rep)
                try:
                    value = sides[mode].sample()
                except SampleError as e:
                    m.error = str(e)
                    continue
                m.samples.append(value)
                this[mode] = value
            for mode, value in this.items():
                base = base_of(mode)
                if base is not None and this.get(base):
                    got[mode].ratios.append(value / this[base])
    finally:
        for mode in reversed(started):
            try:
                sides[mode].stop()
            except SampleError:
                pass  # the figures are taken; a failed tear-down does not undo them
    return list(got.values())


SHARE = OUT / "share"
BUILD_INSTANCE = OUT / "build-instance"


def native_places() -> dict[str, str]:
    disk = Path("/tmp") / f"occlum-bench-{os.getuid()}"
    shm = Path("/dev/shm")
    tmpfs = shm / f"occlum-bench-{os.getuid()}" if shm.is_dir() else disk
    for d in (disk, tmpfs):
        d.mkdir(parents=True, exist_ok=True)
    return {"{bin}": str(BIN), "{disk}": str(disk), "{tmpfs}": str(tmpfs), "{share}": str(SHARE)}


LIBOS_PLACES = {"{bin}": "/bin", "{disk}": SEFS_DIR, "{tmpfs}": SEFS_DIR, "{share}": "/bench"}


def write_sql() -> None:
    """The sqlite3 workloads, as scripts for the sqlite3 CLI."""
    SHARE.mkdir(parents=True, exist_ok=True)
    table = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v INTEGER);\n"
    rows = [
        f"INSERT INTO t(name, v) VALUES('name-{i:06d}', {i * 7919 % 100003});\n"
        for i in range(10000)
    ]
    (SHARE / "insert10k.sql").write_text(table + "BEGIN;\n" + "".join(rows) + "COMMIT;\n")
    (SHARE / "tx200.sql").write_text(table + "".join(rows[:200]))  # autocommit: 200 commits


def build_programs() -> None:
    BIN.mkdir(parents=True, exist_ok=True)
    write_sql()
    flags = ("-O2",)
    for name in ("syscall_loop", "spawn", "pipe", "unixsock", "seqio", "timeit"):
        libos.compile_c(HERE / "c" / f"{name}.c", BIN / name, libos.Variant("o2", "gcc", flags))
    libos.compile_c(HERE / "c" / "true.c", BIN / "true_dyn", libos.Variant("d", "gcc", flags))
    libos.compile_c(
        HERE / "c" / "true.c", BIN / "true_static", libos.Variant("s", "gcc", (*flags, "-static"))
    )
    build_web_servers()


def build_web_servers() -> None:
    """The Go and Java web servers, each only where its toolchain is installed (golang-go,
    openjdk-17-jdk-headless: scripts/setup.sh's optional packages); a server that could not be
    built is skipped by its rows, which say so."""
    go = shutil.which("go")
    if go is not None:
        cache = OUT / "go-cache"
        env = dict(os.environ, CGO_ENABLED="0", GOCACHE=str(cache), GOPATH=str(cache / "path"))
        subprocess.run(
            [go, "build", "-o", str(BIN / GO_SERVER), str(HERE / "go" / "httpserver.go")],
            env=env, cwd=OUT, capture_output=True, check=False,
        )  # fmt: skip
    javac = JDK / "bin" / "javac"
    if javac.exists():
        subprocess.run(
            [str(javac), "-d", str(SHARE), str(HERE / "java" / f"{JAVA_SERVER}.java")],
            capture_output=True, check=False,
        )  # fmt: skip


PYTHON_BOM = [
    {"target": "/usr/bin", "copy": [{"files": [PYTHON]}]},
    {"target": "/usr/lib", "copy": [{"dirs": [PY_STDLIB]}]},
    {
        "target": f"{PY_STDLIB}/lib-dynload",
        "copy": [{"files": sorted(str(p) for p in Path(PY_STDLIB, "lib-dynload").glob("*.so"))}],
    },
]


def build_instance() -> libos.Instance:
    path = OUT / "instance"
    if path.exists():
        shutil.rmtree(path)
    inst = libos.Instance.new(path)
    inst.configure(entry_points=["/bin", "/usr/bin"])
    cfg = inst.config()
    mounts = cfg["mount"]
    assert isinstance(mounts, list)
    mounts.append({"target": SEFS_DIR, "type": "sefs", "source": "./run/mount/data"})
    inst.write_config(cfg)
    bom = {
        "targets": [
            {"target": "/bin", "copy": [{"files": [str(p) for p in sorted(BIN.iterdir())]}]},
            {"target": "/bench", "copy": [{"files": [str(p) for p in sorted(SHARE.iterdir())]}]},
            {"target": "/usr/bin", "copy": [{"files": [SQLITE3]}]},
            *PYTHON_BOM,
        ]
    }
    inst.copy_bom(bom)
    (inst.image / SEFS_DIR.lstrip("/")).mkdir(exist_ok=True)
    servers = {inside: Path(host) for inside, host in SERVERS.items() if Path(host).exists()}
    libos.place_with_dependencies(inst.image, servers)
    write_www(inst.image / "www", inst.image / "etc" / "lighttpd.conf", "/www", "/tmp")
    inst.build()
    return inst


WEB_INSTANCE = OUT / "web-instance"


def uses_web_instance(w: Workload) -> bool:
    """The Go and Java servers run in an instance of their own (the JDK is large, and the
    JVM reserves more memory than the main instance allows)."""
    return w.kind == "server" and w.argv[0] in ("{goserver}", JAVA[0])


def build_web_instance() -> libos.Instance:
    from apps import _place_java  # the JDK as bench/apps.py places it

    if WEB_INSTANCE.exists():
        shutil.rmtree(WEB_INSTANCE)
    inst = libos.Instance.new(WEB_INSTANCE)
    inst.configure(entry_points=["/"])
    cfg = inst.config()
    limits = cfg.setdefault("resource_limits", {})
    assert isinstance(limits, dict)
    limits["user_space_size"] = "3GB"
    inst.write_config(cfg)
    if (BIN / GO_SERVER).exists():
        libos.place(inst.image, BIN / GO_SERVER, f"/bin/{GO_SERVER}")
    if (SHARE / f"{JAVA_SERVER}.class").exists():
        _place_java(inst.image)
        libos.place(inst.image, SHARE / f"{JAVA_SERVER}.class", f"/bench/{JAVA_SERVER}.class")
    inst.build()
    return inst


def build_python_instance() -> libos.Instance:
    """A separate instance holding python3 and its standard library, for the build times."""
    if BUILD_INSTANCE.exists():
        shutil.rmtree(BUILD_INSTANCE)
    inst = libos.Instance.new(BUILD_INSTANCE)
    inst.configure(entry_points=["/usr/bin"])
    inst.copy_bom({"targets": PYTHON_BOM})
    return inst


def measure_build(w: Workload, repeat: int, inst: libos.Instance | None) -> Measurement:
    """Wall time of `occlum build -f`, or of `occlum build` after one image file changed."""
    m = Measurement(w.name, "libos")
    if inst is None:
        m.error = "no python3 instance"
        return m
    force = w.kind == "build-full"
    if not force:  # start from an up-to-date build (untimed)
        subprocess.run([*libos._tool("occlum"), "build"], cwd=inst.path, capture_output=True)
    for i in range(repeat):
        if not force:
            (inst.image / "etc").mkdir(exist_ok=True)
            (inst.image / "etc" / "bench-stamp").write_text(f"{time.time_ns()} {i}\n")
        a = time.monotonic()
        proc = subprocess.run(
            [*libos._tool("occlum"), "build", *(["-f"] if force else [])],
            cwd=inst.path,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        elapsed = time.monotonic() - a
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            m.error = f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"[:120]
            break
        m.samples.append(elapsed)
    return m


# servers: inside the LibOS -> on the host
SERVERS = {"/bin/redis-server": "/usr/bin/redis-server", "/bin/lighttpd": "/usr/sbin/lighttpd"}
WEB_PORT_PLACEHOLDER = "{port}"


def write_www(www: Path, conf: Path, root: str, upload: str) -> None:
    """A 1 KiB page and a lighttpd configuration serving it from ``root`` on {port}."""
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text("<html>" + "x" * 1011 + "</html>\n")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f'server.document-root = "{root}"\n'
        f"server.port = {WEB_PORT_PLACEHOLDER}\n"
        'server.bind = "127.0.0.1"\n'
        f'server.upload-dirs = ( "{upload}" )\n'
        'index-file.names = ( "index.html" )\n'
        'mimetype.assign = ( ".html" => "text/html" )\n'
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OSError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise OSError(f"nothing listens on port {port}")


def client_figure(out: str) -> float:
    """requests per second from redis-benchmark -q or wrk."""
    for line in out.replace("\r", "\n").splitlines():
        if "requests per second" in line:  # redis-benchmark: "SET: 32594.52 requests per ..."
            return float(line.split(":")[1].split()[0])
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise ValueError("no requests per second in the client's output")


def server_places(inside: bool) -> dict[str, str]:
    """Where each server is, inside the LibOS or natively."""
    return {
        "{redis}": "/bin/redis-server" if inside else SERVERS["/bin/redis-server"],
        "{lighttpd}": "/bin/lighttpd" if inside else SERVERS["/bin/lighttpd"],
        "{goserver}": f"/bin/{GO_SERVER}" if inside else str(BIN / GO_SERVER),
        "{java}": str(JDK / "bin" / "java"),
        "{share}": "/bench" if inside else str(SHARE),
    }


def server_missing(w: Workload) -> str | None:
    """Why the server or its client cannot run here (a missing package), or None."""
    assert w.client is not None
    places = server_places(inside=False)
    tool = substitute(w.argv[0], places)
    if shutil.which(w.client[0]) is None:
        return f"{w.client[0]} missing (scripts/setup.sh installs it)"
    if w.argv[0] == "{goserver}" and not Path(tool).exists():
        return "no Go server: golang-go missing (scripts/setup.sh's optional packages)"
    if w.argv[0] == "{java}" and not (SHARE / f"{JAVA_SERVER}.class").exists():
        return "no Java server: openjdk-17-jdk-headless missing (setup.sh's optional packages)"
    if shutil.which(tool) is None:
        return f"{tool} missing (scripts/setup.sh installs it)"
    return None


def measure_server(w: Workload, mode: str, repeat: int, inst: libos.Instance | None) -> Measurement:
    """Start the server (natively or in the LibOS), drive it from outside, stop it."""
    m = Measurement(w.name, mode)
    assert w.client is not None
    inside = mode.startswith("libos")
    if inside and inst is None:
        m.error = "no instance"
        return m
    native_conf = OUT / "lighttpd-native.conf"
    if not inside:
        write_www(OUT / "www", native_conf, str(OUT / "www"), "/tmp")
    missing = server_missing(w)
    if missing:
        m.error = missing
        return m
    for _ in range(repeat):
        port = free_port()
        conf = inst.image / "etc" / "lighttpd.conf" if inside and inst else native_conf
        places = {
            **server_places(inside),
            "{conf}": "/etc/lighttpd.conf" if inside else str(native_conf),
            "{port}": str(port),
        }
        if "{lighttpd}" in w.argv[0]:
            text = conf.read_text()
            conf.write_text(re.sub(r"server.port = \S+", f"server.port = {port}", text))
            if inside and inst is not None:
                subprocess.run(
                    [*libos._tool("occlum"), "build"], cwd=inst.path, capture_output=True
                )
        argv = [substitute(a, places) for a in w.argv]
        if inside:
            argv = [*libos._tool("occlum"), "run", *argv]
        server = subprocess.Popen(
            argv,
            cwd=inst.path if inside and inst else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, OCCLUM_LOG_LEVEL="error"),
        )
        try:
            wait_for_port(port, server)
            client = [substitute(a, places) for a in w.client]
            if client[0] == "wrk":  # untimed: the server's first requests (a JIT's warm-up)
                warm = [a if a != WRK[-1] else "-d2s" for a in client]
                subprocess.run(warm, capture_output=True, timeout=300, check=False)
            out = subprocess.run(client, capture_output=True, text=True, timeout=300)
            m.samples.append(client_figure(out.stdout))
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            m.error = str(e).splitlines()[0][:120]
            break
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return m


def server_side(w: Workload, mode: str, inst: libos.Instance | None) -> Side:
    """One start of the server, one client run against it, its stop: one figure."""

    def sample() -> float:
        one = measure_server(w, mode, 1, inst)
        if one.error is not None or not one.samples:
            raise SampleError(one.error or "no figure")
        return one.samples[0]

    return Side(sample)


def _whole_commands(
    w: Workload, mode: str, inst: libos.Instance | None
) -> tuple[bool, list[str], dict[str, str]]:
    """For workloads timed as whole commands: (whether it runs in the LibOS, the program's
    argv with its places filled in, the environment)."""
    inside = mode.startswith("libos")
    places = LIBOS_PLACES if inside else native_places()
    argv = [substitute(a, places) for a in w.argv]
    return inside, argv, dict(os.environ, OCCLUM_LOG_LEVEL="error")


def per_instance_side(w: Workload, mode: str, inst: libos.Instance | None, count: int = 20) -> Side:
    """Spawning a program that exits at once, each in an instance of its own (`occlum run`
    per process, the design sharing one instance is compared against) or natively: the mean
    over ``count`` spawns is one figure."""
    inside, argv, env = _whole_commands(w, mode, inst)
    if inside and inst is None:
        return failing("no instance")
    if inside:
        argv = [*libos._tool("occlum"), "run", *argv]

    def sample() -> float:
        a = time.monotonic()
        for _ in range(count):
            proc = subprocess.run(
                argv, cwd=inst.path if inside and inst else None, env=env, check=False,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if proc.returncode != 0:
                raise SampleError(f"exit {proc.returncode}")
        return (time.monotonic() - a) / count * 1e6

    return Side(sample)


def service_side(w: Workload, mode: str, inst: libos.Instance | None, count: int = 20) -> Side:
    """A started instance: `occlum start` until the first `occlum exec` returned (one figure
    per start), or the round trip of one `occlum exec` (client start, request, spawn, exit
    status back; the median of ``count`` is one figure, the instance started once for the
    row); natively, the same program run as a process of its own (the comparison the
    interface is judged by), as many times per figure."""
    inside, prog, env = _whole_commands(w, mode, inst)
    if inside and inst is None:
        return failing("no instance")
    occlum = libos._tool("occlum")
    cwd = inst.path if inside and inst else None
    batch = 1 if w.kind == "service-start" else count

    def call(argv: list[str]) -> None:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, check=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SampleError(
                f"{' '.join(argv[:3])}: exit {proc.returncode}: {proc.stderr[-200:]!r}"
            )

    def timed_batch(argv: list[str]) -> float:
        times = []
        for _ in range(batch):
            a = time.monotonic()
            call(argv)
            times.append(time.monotonic() - a)
        return statistics.median(times) * 1e3

    if not inside:
        return Side(lambda: timed_batch(prog))

    def stop() -> None:
        subprocess.run([*occlum, "stop", "-t", "1"], cwd=cwd, env=env, check=False,
                       capture_output=True)  # fmt: skip

    if w.kind == "service-start":

        def start_to_first_output() -> float:
            a = time.monotonic()
            call([*occlum, "start"])
            try:
                call([*occlum, "exec", *prog])
                return (time.monotonic() - a) * 1e3
            finally:
                stop()

        return Side(start_to_first_output)
    # the console script, or the native client that `occlum start` put in run/
    client = (
        [str(inst.path / "run" / "occlum-exec")]
        if w.kind == "service-exec-native" and inst
        else [*occlum, "exec"]
    )
    return Side(lambda: timed_batch([*client, *prog]), start=lambda: call([*occlum, "start"]),
                stop=stop)  # fmt: skip


def substitute(arg: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        arg = arg.replace(key, value)
    return arg


def command(w: Workload, mode: str, quick: bool, inst: libos.Instance | None) -> list[str]:
    argv = w.quick_argv if quick and w.quick_argv else w.argv
    inside = mode.startswith("libos")
    places = LIBOS_PLACES if inside else native_places()
    args = [substitute(a, places) for a in argv]
    if inside:
        args = [*libos._tool("occlum"), "run", *args]
    elif mode == "proot":
        args = ["proot", *args]
    if mode.endswith("pinned"):
        args = ["taskset", "-c", "0", *args]
    return args


def program_side(w: Workload, mode: str, quick: bool, inst: libos.Instance | None) -> Side:
    """One run of a program that measures itself and prints its figure last."""
    argv = command(w, mode, quick, inst)
    env = dict(os.environ, OCCLUM_LOG_LEVEL="error")
    cwd = inst.path if inst and mode.startswith("libos") else None

    def sample() -> float:
        try:
            proc = subprocess.run(
                argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env,
                check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SampleError(str(e).splitlines()[0]) from None
        try:
            if proc.returncode != 0:
                raise ValueError
            return float(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            why = f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"[:120]
            raise SampleError(why) from None

    return Side(sample)


def row_sides(
    w: Workload,
    modes: list[str],
    quick: bool,
    inst: libos.Instance | None,
    web_inst: libos.Instance | None,
    instance_error: str | None,
) -> dict[str, Side]:
    """A (non-build) row's modes, each as the Side that measures it."""
    sides: dict[str, Side] = {}
    for mode in modes:
        if w.kind == "server":
            sides[mode] = server_side(w, mode, web_inst if uses_web_instance(w) else inst)
        elif w.kind.startswith("service"):
            sides[mode] = service_side(w, mode, inst)
        elif w.kind == "per-instance":
            sides[mode] = per_instance_side(w, mode, inst)
        elif mode.startswith("libos") and inst is None:
            sides[mode] = failing(f"no instance: {instance_error}")
        else:
            sides[mode] = program_side(w, mode, quick, inst)
    return sides


def ratio_of_medians(native: Measurement | None, other: Measurement) -> float | None:
    """The ratio the bench gave before runs were paired, kept in the JSON for comparison."""
    if native is None or native.median is None or other.median is None or native.median == 0:
        return None
    return other.median / native.median


def ratio_cell(m: Measurement) -> str:
    """The paired median ratio and, from two pairs on, the range of the pairs' ratios."""
    r = m.ratio
    if r is None:
        return ""
    if len(m.ratios) < 2:
        return f"{r:.2f}x"
    return f"{r:.2f}x ({min(m.ratios):.2f}-{max(m.ratios):.2f})"


def verdict(w: Workload, r: float | None, libos_median: float | None = None) -> str:
    if w.abs_target is not None:
        if libos_median is None:
            return ""
        ok = libos_median >= w.abs_target if w.higher_is_better else libos_median <= w.abs_target
    elif w.target is None or r is None:
        return ""
    else:
        ok = r >= w.target if w.higher_is_better else r <= w.target
    return "[green]meets[/green]" if ok else "[red]misses[/red]"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller iteration counts")
    ap.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="repetitions per workload, each running every mode once (medians; at most 3 for "
        "servers and whole commands)",
    )
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    ap.add_argument(
        "--only", default="", help="comma list of substrings: run only workloads named so"
    )
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat must be at least 1, not {args.repeat}")
    only = [o.strip().lower() for o in args.only.split(",") if o.strip()]
    workloads = [w for w in WORKLOADS if not only or any(o in w.name.lower() for o in only)]
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

    web_inst: libos.Instance | None = None
    web_rows = [w for w in workloads if uses_web_instance(w) and server_missing(w) is None]
    if "libos" in modes and web_rows:
        try:
            web_inst = build_web_instance()
        except Exception as e:
            console.print(f"[red]Go/Java web instance could not be built:[/red] {e}")

    build_inst: libos.Instance | None = None
    if "libos" in modes and any(w.kind.startswith("build") for w in workloads):
        try:
            build_inst = build_python_instance()
        except Exception as e:
            console.print(f"[red]python3 build instance could not be made:[/red] {e}")

    results: list[Measurement] = []
    load_start = os.getloadavg()
    for w in workloads:
        ours = [m for m in modes if w.only_modes is None or m in w.only_modes]
        results += [Measurement(w.name, m, error="—") for m in modes if m not in ours]
        if w.kind.startswith("build"):  # the LibOS alone: nothing to pair with
            if "libos" in ours:
                console.print(f"[dim]{w.name} / libos[/dim]")
                results.append(measure_build(w, args.repeat, build_inst))
            continue
        # whole commands and servers take longer: at most three repetitions
        repeat = args.repeat if w.kind == "program" else min(args.repeat, 3)
        sides = row_sides(w, ours, args.quick, inst, web_inst, instance_error)

        def announce(mode: str, rep: int, w: Workload = w, repeat: int = repeat) -> None:
            console.print(f"[dim]{w.name} / {mode} ({rep + 1}/{repeat})[/dim]")

        results += run_paired(w.name, sides, repeat, announce)
    load_end = os.getloadavg()

    table = Table(
        title="Occlum for Python: benchmarks (medians; ratio: the median of the per-repetition "
        "ratios of back-to-back runs, min-max in brackets)",
        caption=f"load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end "
        f"({os.cpu_count()} CPUs): on a loaded machine the figures say little",
    )
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
    for w in workloads:
        cells = [w.name, w.unit]
        row: dict[str, object] = {
            "workload": w.name,
            "unit": w.unit,
            "target": w.target,
            "higher_is_better": w.higher_is_better,
            "modes": {},
        }
        libos_ratio = libos_median = None
        for mode in modes:
            m = by[(w.name, mode)]
            base_mode = base_of(mode)
            base = by.get((w.name, base_mode)) if base_mode else None
            r = m.ratio
            if m.median is not None:
                cells.append(f"{m.median:.2f}" if w.unit == "s" else f"{m.median:.1f}")
            elif m.error == "—":
                cells.append("—")
            else:
                cells.append(f"[red]{m.error or 'n/a'}[/red]")
            if base_mode is not None:
                cells.append(ratio_cell(m))
            if mode == "libos":
                libos_ratio, libos_median = r, m.median
            iqr = m.ratio_iqr
            row["modes"][mode] = {  # type: ignore[index]
                **asdict(m),
                "median": m.median,
                "ratio": r,
                "ratio_min": min(m.ratios) if m.ratios else None,
                "ratio_max": max(m.ratios) if m.ratios else None,
                "ratio_iqr": list(iqr) if iqr else None,
                "ratio_of_medians": ratio_of_medians(base, m),
            }
        if w.abs_target is not None:
            t = f"≥ {w.abs_target:g} {w.unit} ({w.abs_note})"
            row["abs_target"] = w.abs_target
        else:
            t = "" if w.target is None else ("≥ " if w.higher_is_better else "≤ ") + f"{w.target}x"
        cells += [t, verdict(w, libos_ratio, libos_median)]
        table.add_row(*cells)
        rows.append(row)
    console.print(table)
    console.print(
        f"SEFS reference (the issue's): Occlum's published SEFS fio figures are "
        f"{OCCLUM_SEFS_WRITE:g} MiB/s write and {OCCLUM_SEFS_READ:g} MiB/s read; the target is "
        f"≥ {SEFS_FACTOR:g}x those ({SEFS_FACTOR * OCCLUM_SEFS_WRITE:g} / "
        f"{SEFS_FACTOR * OCCLUM_SEFS_READ:g} MiB/s).  Native SEFS rows: the same program on a "
        f"host tmp directory ({native_places()['{disk}']}); sqlite native on "
        f"{native_places()['{tmpfs}']}; the LibOS on the SEFS mount {SEFS_DIR}."
    )

    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {
        "time": stamp,
        "quick": args.quick,
        "repeat": args.repeat,
        "modes": modes,
        "pairing": "abba",
        "loadavg": {"start": list(load_start), "end": list(load_end)},
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
