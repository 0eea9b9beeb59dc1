"""Small C programs that ship as source with the LibOS (the default init, the native
``occlum exec`` client): compiled with the host's C compiler once per source version and
flags, and cached under ``$XDG_CACHE_HOME/occlum`` (``~/.cache/occlum``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from occlum.errors import UserError

__all__ = ["STATIC_FLAGS", "NoCompiler", "cache_dir", "compiled", "install_static"]

# a helper run at every command: static (no dynamic loader, no libraries to map at each start)
STATIC_FLAGS = ("-static", "-O2", "-s", "-Wall")


class NoCompiler(UserError):
    """The host has no C compiler (and the cache lacks the binary)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "occlum"


def compiled(
    source_name: str,
    stem: str,
    flags: tuple[str, ...],
    what: str,
    no_cc: str = "install gcc",
    libs: tuple[str, ...] = (),
) -> Path:
    """The binary of the package's ``source_name`` (e.g. ``init/init.c``), compiled now with
    ``flags`` if the cache lacks this version; a ``UserError`` naming ``what`` otherwise
    (``no_cc`` says what to do without a compiler). ``libs`` (``-lcrypto``) come after the
    source, where a static link needs them."""
    source = resources.files("occlum").joinpath(source_name).read_bytes()
    digest = hashlib.sha256(source + " ".join(flags + libs).encode()).hexdigest()[:16]
    binary = cache_dir() / f"{stem}-{digest}"
    if binary.is_file():
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise NoCompiler(f"no C compiler (cc) to build {what}: {no_cc}")
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the cache directory {binary.parent}: {e.strerror}")
    # a name of this process's own, then an atomic rename: two commands may compile at once
    tmp = binary.with_name(f".{binary.name}.tmp-{os.getpid()}")
    src = tmp.with_suffix(".c")
    try:
        src.write_bytes(source)
        try:
            done = subprocess.run(
                [cc, *flags, "-o", str(tmp), str(src), *libs],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        except OSError as e:  # the fork or exec of the compiler (EAGAIN: the process limit)
            raise UserError(f"cannot run {cc} to build {what}: {e.strerror or e}")
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise UserError(f"cannot compile {what} with {cc}: {first}")
        os.replace(tmp, binary)
    finally:
        for p in (src, tmp):
            p.unlink(missing_ok=True)
    return binary


def install_static(
    source_name: str, stem: str, what: str, target: Path, defines: tuple[str, ...] = ()
) -> None:
    """Compile ``source_name`` statically (cached, see :func:`compiled`) and put it at
    ``target`` atomically, executable. ``NoCompiler`` without a compiler, a ``UserError``
    naming ``what`` for any other failure."""
    binary = compiled(source_name, stem, (*STATIC_FLAGS, *defines), what)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(binary, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, target)
    except OSError as e:
        raise UserError(f"cannot install {what} at {target}: {e.strerror}")
    finally:
        tmp.unlink(missing_ok=True)
