"""Test harness: compile C programs, make Occlum instances, and run programs natively or in them.

Everything goes through the user-facing commands (``occlum new``/``build``/``run`` and
``copy_bom``) exactly as a user types them, so the integration tests check the product, not
internals. Native runs use the same argv, environment and stdin, so outputs can be compared.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
C_DIR = REPO / "tests" / "c"
SECURITY_DIR = C_DIR / "security"

# The environment both sides see: the LibOS gets it through Occlum.json's env.default.
TEST_ENV: dict[str, str] = {
    "PATH": "/bin:/usr/bin",
    "HOME": "/root",
    "LC_ALL": "C",
    "OCCLUM": "yes",
}

RUN_TIMEOUT = float(os.environ.get("OCCLUM_TEST_TIMEOUT", "120"))


def _tool(name: str) -> list[str]:
    """The console script ``name`` of the installed package (the venv's, else on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"occlum": "occlum.cli.main", "copy_bom": "occlum.cli.copy_bom"}[name]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


# the occlum command of this environment, for tests that drive the CLI with their own env
OCCLUM_CLI = str(Path(sys.executable).parent / "occlum")


def occlum_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
    timeout: float = 120,
) -> Result:
    """``occlum ARGS`` with ``env`` (e.g. a platform key of the test's own), captured."""
    proc = subprocess.run(
        [OCCLUM_CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
        check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


class KbsServer:
    """``occlum kbs serve`` on a free port of 127.0.0.1, its log kept at ``log``."""

    def __init__(self, store: Path, root: Path, env: Mapping[str, str], log: Path) -> None:
        self.log_path = log
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [OCCLUM_CLI, "kbs", "serve", "--store", str(store), "--listen", "127.0.0.1:0",
             "--root-cert", str(root)],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), first
        self.url = first.split()[-1]
        self.port = int(first.rsplit(":", 1)[1])

    def stop(self) -> str:
        """Stop it (a second call only reads the log); what it printed and logged."""
        out = ""
        if not self.log.closed:
            if self.proc.poll() is None:
                self.proc.terminate()
            out, _ = self.proc.communicate(timeout=30)
            self.log.close()
        return out + self.log_path.read_text()


def run_native(
    argv: Sequence[str],
    *,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = RUN_TIMEOUT,
) -> Result:
    """Run on the host, the way ``occlum run`` would run it inside (same env, closed fds)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        list(argv),
        input=data if data is not None else b"",
        capture_output=True,
        env=dict(env if env is not None else TEST_ENV),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(_status(proc.returncode), _text(proc.stdout), _text(proc.stderr))


def run_killable(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None,
    stdin: bytes | None,
    env: Mapping[str, str],
    timeout: float,
) -> Result:
    """Run in a new session; on timeout kill the whole process group (the LibOS and every
    process it started) and report exit 124 with a note on stderr, so a hang fails one test
    and leaves nothing behind."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin or b"", timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        note = f"\n[harness] {' '.join(argv)} timed out after {timeout:.0f} s and was killed\n"
        return Result(124, _text(out), _text(err) + note)
    return Result(_status(proc.returncode), _text(out), _text(err))


def _status(returncode: int) -> int:
    """Exit status as a shell (and ``occlum run``) reports it: 128+N if killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# compiling


@dataclass(frozen=True, slots=True)
class Variant:
    """How a C test is built: glibc dynamic (the default), glibc static, musl static/dynamic."""

    name: str
    cc: str
    flags: tuple[str, ...]


GLIBC = Variant("glibc", "gcc", ("-O1", "-pthread"))
GLIBC_STATIC = Variant("static", "gcc", ("-O1", "-pthread", "-static"))
MUSL_STATIC = Variant("musl", "musl-gcc", ("-O1", "-pthread", "-static"))
MUSL_DYNAMIC = Variant("musl-dyn", "musl-gcc", ("-O1", "-pthread"))
VARIANTS = {v.name: v for v in (GLIBC, GLIBC_STATIC, MUSL_STATIC, MUSL_DYNAMIC)}


def compile_c(src: Path, out: Path, variant: Variant = GLIBC) -> Path:
    """Compile one C test; raises with the compiler's message on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [variant.cc, *variant.flags, "-Wall", "-o", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return out


def c_tests() -> list[str]:
    return sorted(p.stem for p in C_DIR.glob("*.c"))


def security_tests() -> list[str]:
    return sorted(p.stem for p in SECURITY_DIR.glob("*.c"))


# ---------------------------------------------------------------------------------------------
# ELF dependencies (for placing compiled tests into an image without copy_bom)


def elf_interpreter(path: Path) -> str | None:
    """PT_INTERP of an ELF64 file, or None for a static one."""
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_INTERP":
                return str(seg.get_interp_name())
    return None


_LIB_RE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def elf_dependencies(path: Path) -> list[str]:
    """Absolute host paths of the interpreter and every shared library ``path`` loads."""
    interp = elf_interpreter(path)
    if interp is None:
        return []
    proc = subprocess.run(
        [interp, "--list", str(path)], capture_output=True, text=True, check=False
    )
    deps = {interp}
    for line in proc.stdout.splitlines():
        m = _LIB_RE.search(line)
        if m:
            deps.add(m.group(1))
    return sorted(deps)


def place(image: Path, host_file: Path, inside: str) -> None:
    """Copy a host file to ``inside`` (an absolute path) in ``image``, following symlinks."""
    dest = image / inside.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copy2(host_file, dest, follow_symlinks=True)


def place_with_dependencies(image: Path, binaries: Mapping[str, Path]) -> None:
    """Copy binaries (inside path -> host path) and their libraries (at their host paths)."""
    libs: set[str] = set()
    for inside, host in binaries.items():
        place(image, host, inside)
        libs.update(elf_dependencies(host))
    for lib in sorted(libs):
        place(image, Path(lib), lib)


GCC_LIB = Path("/usr/lib/gcc/x86_64-linux-gnu/12")
# make, the shell of its recipes, and the programs the gcc driver runs (inside path -> host)
GCC_TOOLS = {
    "/usr/bin/gcc": "/usr/bin/gcc",
    "/usr/bin/make": "/usr/bin/make",
    "/bin/sh": "/bin/dash",
    "/bin/rm": "/bin/rm",
    "/usr/bin/as": "/usr/bin/as",
    "/usr/bin/x86_64-linux-gnu-as": "/usr/bin/as",
    "/usr/bin/ld": "/usr/bin/ld",
    "/usr/bin/x86_64-linux-gnu-ld": "/usr/bin/ld",
    str(GCC_LIB / "cc1"): str(GCC_LIB / "cc1"),
    str(GCC_LIB / "collect2"): str(GCC_LIB / "collect2"),
    str(GCC_LIB / "lto-wrapper"): str(GCC_LIB / "lto-wrapper"),
    str(GCC_LIB / "liblto_plugin.so"): str(GCC_LIB / "liblto_plugin.so"),
}


def _gcc_inputs(work: Path) -> set[str]:
    """The headers the C files in ``work`` include and the files the linker reads, found by
    building them natively once in ``work`` (`gcc -M`, `ld -t`)."""
    sources = [str(p) for p in sorted(work.glob("*.c"))]
    files: set[str] = set()
    for flags in ([], ["-O2"]):  # optimization pulls in more of glibc's headers
        deps = subprocess.run(
            ["gcc", *flags, "-M", *sources], cwd=work, capture_output=True, text=True, check=True
        ).stdout
        files |= {w for w in deps.replace("\\", " ").split() if w.startswith("/")}
    objs = []
    for src in sources:
        obj = src[:-2] + ".o"
        subprocess.run(["gcc", "-c", "-o", obj, src], cwd=work, check=True)
        objs.append(obj)
    trace = subprocess.run(
        ["gcc", "-o", str(work / "prog"), *objs, "-Wl,-t"],
        cwd=work, capture_output=True, text=True, check=True,
    )  # fmt: skip
    files |= {
        os.path.normpath(w)
        for w in (trace.stdout + trace.stderr).split()
        if w.startswith("/") and not w.startswith(str(work))
    }
    return files


def place_gcc_toolchain(image: Path, project: Path, scratch: Path) -> None:
    """Place make, gcc and everything building the C files of ``project`` reads (found by
    building a copy of it natively in ``scratch``), with gcc's own headers."""
    shutil.copytree(project, scratch)
    place_with_dependencies(image, {k: Path(v) for k, v in GCC_TOOLS.items()})
    for f in sorted(_gcc_inputs(scratch)):
        place(image, Path(f), f)
    # gcc's own headers (stddef.h, stdarg.h, ...) for whatever the sources include
    shutil.copytree(GCC_LIB / "include", image / str(GCC_LIB / "include").lstrip("/"),
                    dirs_exist_ok=True)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# instances


class Instance:
    """An Occlum instance directory driven through the CLI."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def image(self) -> Path:
        return self.path / "image"

    @property
    def config_path(self) -> Path:
        return self.path / "Occlum.json"

    @classmethod
    def new(cls, path: Path) -> Instance:
        proc = subprocess.run(
            [*_tool("occlum"), "new", str(path)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"occlum new {path} failed ({proc.returncode}):\n{proc.stderr}")
        inst = cls(path)
        for d in ("bin", "tmp", "host", "root", "etc"):
            (inst.image / d).mkdir(parents=True, exist_ok=True)
        return inst

    def config(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.config_path.read_text())
        return data

    def write_config(self, data: Mapping[str, object]) -> None:
        self.config_path.write_text(json.dumps(data, indent=4) + "\n")

    def configure(
        self,
        *,
        env: Mapping[str, str] = TEST_ENV,
        hostfs: Path | None = None,
        entry_points: Iterable[str] | None = None,
    ) -> None:
        """Set the default environment, point the /host mount at ``hostfs``, entry points."""
        cfg = self.config()
        env_section = cfg.setdefault("env", {})
        assert isinstance(env_section, dict)
        env_section["default"] = [f"{k}={v}" for k, v in env.items()]
        env_section.setdefault("untrusted", [])
        mounts = cfg.setdefault("mount", [])
        assert isinstance(mounts, list)
        if hostfs is not None:
            mounts[:] = [m for m in mounts if m.get("target") != "/host"]
            mounts.append({"target": "/host", "type": "hostfs", "source": str(hostfs)})
        if entry_points is not None:
            cfg["entry_points"] = list(entry_points)
        self.write_config(cfg)

    @classmethod
    def with_busybox(cls, path: Path, applets: Iterable[str]) -> Instance:
        """A new, configured, non-debuggable instance (as a packaged one is) whose /bin holds
        the host's busybox and ``applets`` linked to it; not built."""
        inst = cls.new(path)
        inst.configure()
        cfg = inst.config()
        metadata = cfg["metadata"]
        assert isinstance(metadata, dict)
        metadata["debuggable"] = False
        inst.write_config(cfg)
        bin_dir = inst.image / "bin"
        shutil.copy("/bin/busybox", bin_dir / "busybox")
        for applet in applets:
            (bin_dir / applet).symlink_to("busybox")
        return inst

    def copy_bom(self, bom: Mapping[str, object], include_dirs: Iterable[str] = ()) -> None:
        bom_file = self.path / "bom.yaml"
        bom_file.write_text(yaml.safe_dump(dict(bom), sort_keys=False))
        cmd = [*_tool("copy_bom"), "-f", str(bom_file), "--root", str(self.image)]
        for d in include_dirs:
            cmd += ["--include-dir", d]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"copy_bom failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )

    def build(self) -> Result:
        proc = subprocess.run(
            [*_tool("occlum"), "build"],
            cwd=self.path,
            capture_output=True,
            timeout=600,
            check=False,
        )
        res = Result(proc.returncode, _text(proc.stdout), _text(proc.stderr))
        if res.code != 0:
            raise RuntimeError(f"occlum build failed in {self.path}:\n{res.describe()}")
        return res

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | bytes | None = None,
        timeout: float = RUN_TIMEOUT,
        log_level: str = "error",
        extra_env: Mapping[str, str] | None = None,
    ) -> Result:
        """``occlum run argv...`` in this (built) instance."""
        data = stdin.encode() if isinstance(stdin, str) else stdin
        env = dict(os.environ)
        env["OCCLUM_LOG_LEVEL"] = log_level
        if extra_env:
            env.update(extra_env)
        return run_killable(
            [*_tool("occlum"), "run", *argv], cwd=self.path, stdin=data, env=env, timeout=timeout
        )


def parse_probe_lines(stdout: str) -> list[tuple[str, str, str]]:
    """(probe, verdict, detail) from a security test's output lines of the form
    ``<probe>: refused|contained|ESCAPED <detail>``; the summary line is skipped."""
    out = []
    for line in stdout.splitlines():
        if line in ("ALL REFUSED",) or line.startswith("ESCAPES:"):
            continue
        probe, sep, rest = line.rpartition(": ")
        if not sep:
            out.append((line, "unparsed", ""))
            continue
        verdict, _, detail = rest.partition(" ")
        out.append((probe, verdict, detail))
    return out


# ---------------------------------------------------------------------------------------------
# the session's C programs (built by the fixtures in conftest.py)

# C tests also built as glibc static, musl static and musl dynamic programs: the basics, and
# those where the C libraries differ (wrappers that retry, emulate or check arguments
# themselves; thread start and exit; signal frames).
MULTI_VARIANT = (
    "open", "stat", "readdir", "pipe", "fork", "exec", "pthread", "spawn",
    "spawn_attrs", "exit_group", "tls", "futex", "signal", "sigtimedwait", "pselect", "sleep",
    "epoll", "sched", "time", "posix_shm", "pty",
)  # fmt: skip
# Scratch directory inside the LibOS (a ramfs).
LIBOS_SCRATCH = "/tmp"


@dataclass
class CBuild:
    """The compiled C tests: host paths keyed by the program's path inside the LibOS."""

    root: Path
    binaries: dict[str, Path] = field(default_factory=dict)

    def host(self, inside: str) -> Path:
        return self.binaries[inside]


def behaviour_cases() -> list[tuple[str, str]]:
    cases = [(name, "glibc") for name in c_tests()]
    for name in MULTI_VARIANT:
        cases += [(name, v) for v in ("static", "musl", "musl-dyn")]
    return cases


def inside_name(name: str, variant: str) -> str:
    return f"/bin/{name}" if variant == "glibc" else f"/bin/{name}-{variant}"


@dataclass
class HostShare:
    """A host directory exposed as the hostfs mount /host, and a secret file beside it that
    the LibOS must never show."""

    share: Path
    secret: Path


def examples(n: int) -> int:
    """A property test's example count under the Hypothesis profile in use: ``n`` for "ci"
    (scripts/test.sh), an eighth of it (at least 3) for "dev" (scripts/quick.sh)."""
    return max(3, n // 8) if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else n


@contextlib.contextmanager
def zygote_runtime_dir(prefix: str) -> Iterator[Path]:
    """A runtime directory of its own (``XDG_RUNTIME_DIR``: the zygote a test talks to is one
    it started; short, for the socket's path to fit sun_path); its zygotes ended after."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield d
    finally:
        for pid_file in (d / "occlum").glob("*.pid"):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ValueError, OSError):
                pass
        subprocess.run(["rm", "-rf", str(d)], check=False)
