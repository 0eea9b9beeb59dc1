"""The default init program that ``occlum new`` puts at ``initfs/bin/init``.

Its source ships with the LibOS (``occlum/init/init.c``); it is compiled once per source
version with the host's C compiler, statically so that the initfs needs no libraries, and
cached under ``$XDG_CACHE_HOME/occlum`` (``~/.cache/occlum``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from occlum.errors import UserError

__all__ = ["default_init", "install_default_init"]

_FLAGS = ("-static", "-Os", "-s", "-Wall")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "occlum"


def default_init() -> Path:
    """The compiled default init (compiled now if the cache lacks this version)."""
    source = resources.files("occlum").joinpath("init/init.c").read_bytes()
    digest = hashlib.sha256(source + " ".join(_FLAGS).encode()).hexdigest()[:16]
    binary = _cache_dir() / f"init-{digest}"
    if binary.is_file():
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise UserError(
            "no C compiler (cc) to build the default init: install gcc, or put your own "
            "init program at initfs/bin/init"
        )
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the cache directory {binary.parent}: {e.strerror}")
    tmp = binary.with_name(f".{binary.name}.tmp-{os.getpid()}")
    src = tmp.with_suffix(".c")
    try:
        src.write_bytes(source)
        try:
            done = subprocess.run(
                [cc, *_FLAGS, "-o", str(tmp), str(src)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        except OSError as e:  # the fork or exec of the compiler (EAGAIN: the process limit)
            raise UserError(f"cannot run {cc} to build the default init: {e.strerror or e}")
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise UserError(f"cannot compile the default init with {cc}: {first}")
        os.replace(tmp, binary)
    finally:
        for p in (src, tmp):
            p.unlink(missing_ok=True)
    return binary


def install_default_init(initfs_dir: Path) -> None:
    """Put the default init at ``initfs_dir/bin/init`` (mode 0755)."""
    target = initfs_dir / "bin" / "init"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_init(), target)
    target.chmod(0o755)
