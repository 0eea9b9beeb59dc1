"""The default init program that ``occlum new`` puts at ``initfs/bin/init``.

Its source ships with the LibOS (``occlum/init/init.c``); it is compiled once per source
version with the host's C compiler, statically so that the initfs needs no libraries, and
cached under ``$XDG_CACHE_HOME/occlum`` (``~/.cache/occlum``, see :mod:`.ccache`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from occlum.instance.ccache import compiled

__all__ = ["default_init", "init_ra_program", "install_default_init"]

_FLAGS = ("-static", "-Os", "-s", "-Wall")


def default_init() -> Path:
    """The compiled default init (compiled now if the cache lacks this version)."""
    return compiled(
        "init/init.c", "init", _FLAGS, "the default init",
        no_cc="install gcc, or put your own init program at initfs/bin/init",
    )  # fmt: skip


def init_ra_program() -> Path:
    """The compiled attested-boot init (``occlum/init/init_ra.c``, linked statically with
    OpenSSL's libcrypto), which ``occlum build --init-ra`` puts in the initfs image."""
    return compiled(
        "init/init_ra.c", "init_ra", _FLAGS, "the attested-boot init (init_ra)",
        no_cc="install gcc and libssl-dev", libs=("-lcrypto",),
    )  # fmt: skip


def install_default_init(initfs_dir: Path) -> None:
    """Put the default init at ``initfs_dir/bin/init`` (mode 0755)."""
    target = initfs_dir / "bin" / "init"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_init(), target)
    target.chmod(0o755)
