"""The runtime layer of a self-contained OCI image: a Python and the LibOS, nothing else.

``occlum package --oci`` puts this layer under the instance's own layer, so that the image runs
on a host that has only a container engine (no registry to pull a base image from is needed).
It is made from what runs ``occlum package`` itself, as ``copy_bom`` makes an image from the
host's programs:

- the interpreter running this code (``sys.base_prefix``: its binary and its standard library,
  without the test suites, IDLE, Tk, lib2to3, ensurepip and the static ``libpython``), at
  :data:`PYTHON_PREFIX`, where the interpreter finds its library by its own rules (the
  ``lib/python3.X/os.py`` landmark beside its ``bin/``);
- in its ``site-packages``: the ``occlum`` package exactly as installed (every file the LibOS
  digest covers, so MRENCLAVE is the same inside the image as on the build machine) and the
  distributions it requires, transitively, copied as installed (their ``RECORD``'s files);
- the shared libraries of the interpreter, of its extension modules and of the packages'
  extension modules, found by the dynamic loader's own rules (:mod:`.elfdeps`), under
  ``/usr/lib/x86_64-linux-gnu`` (a directory the loader searches without ``ld.so.cache``),
  the loader at ``/usr/lib64`` (``/lib`` and ``/lib64`` are links, as on a merged-``/usr``
  Debian);
- bytecode for every module, compiled with hash-based invalidation (no source mtimes in it),
  so that no command in a fresh container compiles the standard library first;
- ``/usr/bin/occlum`` and ``/usr/bin/occlum-container`` (the image's entrypoint,
  :mod:`occlum.cli.container`), ``/usr/bin/sh`` (the host's dash, for the engines' health
  checks), ``/etc/passwd`` and ``/etc/group`` with root only, ``/tmp``,
  ``/root``, the empty mount point of the platform directory, and the native ``occlum exec``
  client compiled for the cache the LibOS looks in.

The layer is reproducible: entries sorted, owner 0:0 without names, modes normalized, one mtime
(``$SOURCE_DATE_EPOCH``, else 0: unlike the instance's layer it does not depend on a build),
bytecode compiled by a fresh interpreter with a fixed hash seed. The same inputs give the same
bytes, so two instances packaged on one machine share the layer in the engine's storage. The
layer is cached under ``~/.cache/occlum`` by a digest of its inputs (names, sizes, mtimes of
every source file).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from occlum.errors import UserError
from occlum.instance.blobs import HashingWriter, reproducible_gzip

__all__ = [
    "CONTAINER_BIN",
    "PLATFORM_DIR",
    "PYTHON_PREFIX",
    "RuntimeEntry",
    "RuntimeLayer",
    "runtime_entries",
]

PYTHON_PREFIX = "usr/lib/occlum/python"
LIB_DIR = "usr/lib/x86_64-linux-gnu"
LOADER_DIR = "usr/lib64"
CONTAINER_BIN = "/usr/bin/occlum-container"
# where the host's platform directory (key and monotonic counters) is mounted: see
# docs/deploy.md; the image holds it empty
PLATFORM_DIR = "/var/lib/occlum/platform"
CACHE_HOME = "/var/cache"
# bumped when the layout of the layer changes: part of the cache key
FORMAT = 1

# the standard library's parts that no LibOS command imports
_STDLIB_SKIP_TOP = {
    "site-packages", "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
    "pydoc_data", "turtle.py", "__phello__",
}  # fmt: skip
_STDLIB_SKIP_DIR = {"__pycache__", "test", "tests", "idle_test"}
_DYNLOAD_SKIP = re.compile(r"^(_test|_xxtest|xx|_tkinter|_ctypes_test|_testcapi)")
_DIST_SKIP_FILES = {"direct_url.json", "INSTALLER", "REQUESTED"}  # a path of this machine


@dataclass(slots=True, frozen=True)
class RuntimeEntry:
    """One entry of the layer: ``name`` (no leading slash), and exactly one of ``source`` (a
    file copied), ``data`` (bytes written), ``link`` (a symlink's target), or none (a
    directory)."""

    name: str
    mode: int
    source: Path | None = None
    data: bytes | None = None
    link: str = ""

    @property
    def is_dir(self) -> bool:
        return self.source is None and self.data is None and not self.link


@dataclass(slots=True, frozen=True)
class RuntimeLayer:
    """The layer's blob (gzip'd tar) in the cache, its descriptor fields and diff_id."""

    blob: Path
    digest: str  # sha256:... of the blob
    size: int
    diff_id: str  # sha256:... of the uncompressed tar


# --- what goes into the layer -----------------------------------------------------------------


def _python_version() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def _interpreter() -> Path:
    """The real binary of the base interpreter (not a venv's link to it)."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    real = Path(os.path.realpath(exe))
    if not real.is_file():
        raise UserError(f"cannot find the Python interpreter binary ({exe})")
    return real


def _mode(st: os.stat_result) -> int:
    return 0o755 if st.st_mode & 0o111 else 0o644


def _walk_files(
    root: Path, skip_dirs: set[str], skip_top: frozenset[str] | set[str] = frozenset()
) -> Iterator[tuple[str, Path]]:
    """Regular files and symlinks below ``root`` as (relative posix path, full path)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        top = rel_dir == Path(".")
        dirnames[:] = sorted(
            d for d in dirnames if d not in skip_dirs and not (top and d in skip_top)
        )
        for name in sorted(filenames):
            if top and name in skip_top:
                continue
            if name.endswith((".pyc", ".pyo")):
                continue
            full = Path(dirpath) / name
            yield (rel_dir / name).as_posix(), full


def _stdlib(out: dict[str, RuntimeEntry]) -> list[Path]:
    """The standard library (and lib-dynload) under the prefix; returns the extension
    modules, whose libraries the layer needs."""
    stdlib = Path(sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix}))
    if not (stdlib / "os.py").is_file():
        raise UserError(f"cannot find the Python standard library (no os.py in {stdlib})")
    dest = f"{PYTHON_PREFIX}/lib/{_python_version()}"
    skip_top = set(_STDLIB_SKIP_TOP) | {
        d.name for d in stdlib.iterdir() if d.name.startswith("config-")
    }
    extensions: list[Path] = []
    for rel, full in _walk_files(stdlib, _STDLIB_SKIP_DIR, skip_top):
        if rel.startswith("lib-dynload/"):
            if _DYNLOAD_SKIP.match(rel.removeprefix("lib-dynload/")):
                continue
            extensions.append(full)
        _add_file(out, f"{dest}/{rel}", full)
    return extensions


def _add_file(out: dict[str, RuntimeEntry], name: str, full: Path) -> None:
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        out[name] = RuntimeEntry(name, 0o777, link=os.readlink(full))
    elif stat.S_ISREG(st.st_mode):
        out[name] = RuntimeEntry(name, _mode(st), source=full)


def _required_distributions() -> list[metadata.Distribution]:
    """The installed distributions ``occlum`` requires, transitively (extras left out). A
    requirement under an environment marker is taken when it is installed: one more package
    than needed does no harm, one missing would fail an import in the container."""
    seen: dict[str, metadata.Distribution] = {}
    try:
        todo = [str(r) for r in (metadata.requires("occlum") or [])]
    except metadata.PackageNotFoundError:
        raise UserError(
            "occlum is not installed as a Python distribution (pip install it, or "
            "scripts/setup.sh): the runtime layer takes its dependencies from its metadata"
        )
    while todo:
        req = todo.pop()
        if "extra ==" in req.replace("extra==", "extra =="):
            continue
        name = re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0]
        key = re.sub(r"[-_.]+", "-", name).lower()
        if not key or key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if ";" in req:
                continue  # a marker that does not hold here
            raise UserError(f"the LibOS needs the Python package {name}, which is not installed")
        seen[key] = dist
        todo += [str(r) for r in (dist.requires or [])]
    return [seen[k] for k in sorted(seen)]


def _site_packages(out: dict[str, RuntimeEntry]) -> list[Path]:
    """``occlum`` and its dependencies in the prefix's site-packages; returns the extension
    modules among them."""
    from occlum import __version__
    from occlum.enclave.measure import package_root

    site = f"{PYTHON_PREFIX}/lib/{_python_version()}/site-packages"
    extensions: list[Path] = []
    for rel, full in _walk_files(package_root(), {"__pycache__"}):
        _add_file(out, f"{site}/occlum/{rel}", full)
    meta = f"Metadata-Version: 2.1\nName: occlum\nVersion: {__version__}\n".encode()
    out[f"{site}/occlum-{__version__}.dist-info/METADATA"] = RuntimeEntry(
        f"{site}/occlum-{__version__}.dist-info/METADATA", 0o644, data=meta
    )
    for dist in _required_distributions():
        for f in dist.files or []:
            rel = f.as_posix()
            if rel.startswith("..") or "__pycache__" in f.parts or rel.endswith((".pyc", ".pyo")):
                continue  # console scripts outside site-packages, bytecode
            if f.name in _DIST_SKIP_FILES and f.parts[0].endswith(".dist-info"):
                continue
            full = Path(str(dist.locate_file(f)))
            if not full.is_file():
                continue
            _add_file(out, f"{site}/{rel}", full)
            if ".so" in f.name:
                extensions.append(full)
    return extensions


def _libraries(out: dict[str, RuntimeEntry], objects: list[Path]) -> None:
    """The shared libraries and loader ``objects`` need, where the loader finds them."""
    from occlum.instance.elfdeps import LibraryResolver

    resolver = LibraryResolver()
    inside = {os.path.realpath(e.source) for e in out.values() if e.source is not None}
    for obj in objects:
        deps = resolver.find_dependencies(str(obj))
        if deps.missing:
            name, needed_by = deps.missing[0]
            raise UserError(f"{needed_by} needs {name}, which the dynamic loader cannot find")
        for path in deps.paths:
            real = os.path.realpath(path)
            if real in inside:
                continue  # shipped with its package (found through $ORIGIN)
            base = os.path.basename(path)
            name = f"{LOADER_DIR}/{base}" if base.startswith("ld-linux") else f"{LIB_DIR}/{base}"
            if name not in out:
                out[name] = RuntimeEntry(name, 0o755, source=Path(real))


def _exec_client() -> Path | None:
    """The native ``occlum exec`` client, compiled as the LibOS's cache holds it."""
    # the flags are part of the cached binary's name: the ones `occlum start` compiles with
    from occlum.instance.ccache import STATIC_FLAGS, NoCompiler, compiled

    try:
        return compiled(
            "instance/native/exec_client.c", "exec-client", STATIC_FLAGS, "the native exec client"
        )
    except NoCompiler:
        return None  # the Python client serves in the container


# the site directory named outright: an interpreter patched as Debian's looks in dist-packages
_OCCLUM_SCRIPT = """#!/{prefix}/bin/python3 -sE
# the occlum command of the image (the runtime layer of occlum package --oci)
import sys

if "/{site}" not in sys.path:
    sys.path.append("/{site}")
from occlum.cli.entry import main

main()
"""
_CONTAINER_SCRIPT = """#!/{prefix}/bin/python3 -sE
# the entrypoint of the image: see docs/deploy.md
import sys

if "/{site}" not in sys.path:
    sys.path.append("/{site}")
from occlum.cli.container import main

main()
"""


def runtime_entries() -> list[RuntimeEntry]:
    """Every entry of the runtime layer, sorted by name, parents before children."""
    out: dict[str, RuntimeEntry] = {}
    interp = _interpreter()
    py = f"{PYTHON_PREFIX}/bin/python3"
    out[py] = RuntimeEntry(py, 0o755, source=interp)
    objects = [interp, *_stdlib(out), *_site_packages(out)]
    # a POSIX shell for the engine's health checks: podman runs a pod's exec probe as
    # `/bin/sh -c "COMMAND || exit 1"`; Debian's dash needs only the C library
    dash = shutil.which("dash")
    if dash is not None:
        sh = Path(os.path.realpath(dash))
        out["usr/bin/sh"] = RuntimeEntry("usr/bin/sh", 0o755, source=sh)
        objects.append(sh)
    _libraries(out, objects)
    for name, link in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("bin", "usr/bin")):
        out[name] = RuntimeEntry(name, 0o777, link=link)
    out["usr/bin/python3"] = RuntimeEntry(
        "usr/bin/python3", 0o777, link="../lib/occlum/python/bin/python3"
    )
    for name, text in (
        ("usr/bin/occlum", _OCCLUM_SCRIPT), (CONTAINER_BIN.lstrip("/"), _CONTAINER_SCRIPT)
    ):  # fmt: skip
        site = f"{PYTHON_PREFIX}/lib/{_python_version()}/site-packages"
        script = text.format(prefix=PYTHON_PREFIX, site=site)
        out[name] = RuntimeEntry(name, 0o755, data=script.encode())
    out["etc/passwd"] = RuntimeEntry(
        "etc/passwd", 0o644, data=b"root:x:0:0:root:/root:/bin/false\n"
    )
    out["etc/group"] = RuntimeEntry("etc/group", 0o644, data=b"root:x:0:\n")
    for name, mode in (
        ("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700),
        (PLATFORM_DIR.lstrip("/"), 0o700), ("proc", 0o755), ("dev", 0o755), ("sys", 0o755),
    ):  # fmt: skip
        out[name] = RuntimeEntry(name, mode)
    client = _exec_client()
    if client is not None:
        name = f"{CACHE_HOME.lstrip('/')}/occlum/{client.name}"
        out[name] = RuntimeEntry(name, 0o755, source=client)
    # every parent directory, 0755 unless named above
    for name in list(out):
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in out:
                out[parent] = RuntimeEntry(parent, 0o755)
    return [out[k] for k in sorted(out)]


def environment() -> list[str]:
    """The image's ``Env``."""
    return [
        "PATH=/usr/bin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        f"OCCLUM_PLATFORM_KEY={PLATFORM_DIR}/platform.key",
        f"XDG_CACHE_HOME={CACHE_HOME}",
        # a container runs one instance: no zygote process to keep for later runs
        "OCCLUM_NO_ZYGOTE=1",
    ]


# --- bytecode ---------------------------------------------------------------------------------

_COMPILER = r"""
import importlib.util, json, py_compile, sys
for src, cfile, dfile in json.load(sys.stdin):
    try:
        py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeDecodeError):
        pass  # a module that does not compile would not import either
"""


def _bytecode(entries: list[RuntimeEntry], work: Path) -> list[RuntimeEntry]:
    """A ``__pycache__/*.pyc`` entry for every ``.py`` module of the prefix, compiled in a
    fresh interpreter with a fixed hash seed (marshal's output depends on the order objects
    were made in; a fresh process makes them in the same order every time)."""
    tag = sys.implementation.cache_tag
    jobs: list[tuple[str, str, str]] = []
    names: list[tuple[str, Path]] = []
    for e in entries:
        if e.source is None or not e.name.endswith(".py") or not e.name.startswith(PYTHON_PREFIX):
            continue
        head, _, base = e.name.rpartition("/")
        pyc = f"{head}/__pycache__/{base[:-3]}.{tag}.pyc"
        cfile = work / pyc
        jobs.append((str(e.source), str(cfile), "/" + e.name))
        names.append((pyc, cfile))
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", _COMPILER], input=json.dumps(jobs), text=True,
        capture_output=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise UserError(f"compiling the runtime's bytecode failed: {done.stderr.strip()[-300:]}")
    out = []
    dirs = set()
    for pyc, cfile in names:
        if cfile.is_file():
            out.append(RuntimeEntry(pyc, 0o644, source=cfile))
            dirs.add(pyc.rpartition("/")[0])
    out += [RuntimeEntry(d, 0o755) for d in dirs]
    return out


def _stripped(entries: list[RuntimeEntry], work: Path) -> list[RuntimeEntry]:
    """ELF files without their debugging sections (``strip --strip-debug``: symbols stay),
    when the host has ``strip``; a pyenv-built libpython is 23 MB with them, 4 MB without."""
    from occlum.instance.elfdeps import is_elf

    tool = shutil.which("strip")
    if tool is None:
        return entries
    out = []
    for e in entries:
        if e.source is not None and (e.mode & 0o111 or ".so" in e.name) and is_elf(str(e.source)):
            target = work / e.name
            target.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [tool, "--strip-debug", "-o", str(target), str(e.source)],
                capture_output=True, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                e = RuntimeEntry(e.name, e.mode, source=target)
        out.append(e)
    return out


# --- the layer, cached ------------------------------------------------------------------------


def _inputs_key(entries: list[RuntimeEntry], mtime: int) -> str:
    h = hashlib.sha256(f"occlum runtime layer {FORMAT} {sys.version} {mtime}\n".encode())
    for e in entries:
        h.update(f"{e.name}\0{e.mode}\0{e.link}\0".encode())
        if e.source is not None:
            st = os.stat(e.source)
            h.update(f"{e.source}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        if e.data is not None:
            h.update(hashlib.sha256(e.data).digest())
        h.update(b"\n")
    return h.hexdigest()


def runtime_mtime() -> int:
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        if not env.isdigit():
            raise UserError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds")
        return int(env)
    return 0


def _write_layer(path: Path, entries: list[RuntimeEntry], mtime: int) -> tuple[str, int, str]:
    """``entries`` as a gzip'd tar at ``path``: (digest, size, diff_id)."""
    with open(path, "wb") as raw:
        compressed = HashingWriter(raw)
        with reproducible_gzip(compressed) as gz:
            plain = HashingWriter(gz)
            with tarfile.TarFile(fileobj=plain, mode="w", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[arg-type]
                for e in entries:
                    info = tarfile.TarInfo(e.name)
                    info.mtime = mtime
                    info.mode = e.mode
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if e.link:
                        info.type = tarfile.SYMTYPE
                        info.linkname = e.link
                        tar.addfile(info)
                    elif e.is_dir:
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif e.data is not None:
                        info.size = len(e.data)
                        tar.addfile(info, io.BytesIO(e.data))
                    else:
                        assert e.source is not None
                        with open(e.source, "rb") as f:
                            info.size = os.fstat(f.fileno()).st_size
                            tar.addfile(info, f)
    digest = "sha256:" + compressed.sha256.hexdigest()
    return digest, compressed.size, "sha256:" + plain.sha256.hexdigest()


def build_runtime_layer() -> RuntimeLayer:
    """The runtime layer, from the cache or made now."""
    from occlum.instance.ccache import cache_dir

    mtime = runtime_mtime()
    entries = runtime_entries()
    key = _inputs_key(entries, mtime)
    cache = cache_dir()
    blob = cache / f"runtime-{key[:32]}.tar.gz"
    meta = cache / f"runtime-{key[:32]}.json"
    try:
        known = json.loads(meta.read_text())
        if blob.stat().st_size == known["size"]:
            return RuntimeLayer(blob, known["digest"], known["size"], known["diff_id"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the cache directory {cache}: {e.strerror}")
    with tempfile.TemporaryDirectory(prefix="occlum-runtime-") as tmp:
        work = Path(tmp)
        entries = _stripped(entries, work / "strip")
        everything = sorted(entries + _bytecode(entries, work / "pyc"), key=lambda e: e.name)
        # a directory named twice (a __pycache__ of a package): one entry
        unique = {e.name: e for e in everything}
        ordered = [unique[k] for k in sorted(unique)]
        tmp_blob = work / "layer.tar.gz"
        digest, size, diff_id = _write_layer(tmp_blob, ordered, mtime)
        partial = blob.with_name(f".{blob.name}.{os.getpid()}")
        shutil.copyfile(tmp_blob, partial)
        os.replace(partial, blob)
    meta.write_text(json.dumps({"digest": digest, "size": size, "diff_id": diff_id}))
    return RuntimeLayer(blob, digest, size, diff_id)
