"""The native front of the ``occlum`` command (``cli/native/front.c``): what
``scripts/setup.sh`` puts in place of the console script, so that ``occlum run`` (through the
zygote) and ``occlum exec`` (through the native client) start no Python at all; every other
command line it hands to :mod:`occlum.cli.entry`, as the console script does.

``python -m occlum.cli.front TARGET`` compiles it for this interpreter and package (their
paths and the version are compiled in: the identity a zygote checks, see
:func:`occlum.cli.zygote_wire.identity`) and puts it at ``TARGET`` atomically. Without a C
compiler it leaves ``TARGET`` as it is (the console script serves, slower) and says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import occlum
from occlum.cli import zygote_wire
from occlum.errors import UserError
from occlum.instance.ccache import NoCompiler, install_static

__all__ = ["c_string", "install"]


def c_string(value: str) -> str:
    """``value`` as a C string literal (octal escapes for every byte but plain ASCII)."""
    out = []
    for byte in os.fsencode(value):
        ch = chr(byte)
        out.append(ch if 0x20 <= byte < 0x7F and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def install(target: Path) -> str | None:
    """Put the front at ``target``; None, or why it could not be."""
    defines = (
        f"-DOCCLUM_PYTHON={c_string(sys.executable)}",
        f"-DOCCLUM_PACKAGE={c_string(zygote_wire.package_dir())}",
        f"-DOCCLUM_VERSION={c_string(occlum.__version__)}",
    )
    try:
        install_static("cli/native/front.c", "front", "the native occlum front", target, defines)
    except NoCompiler as exc:
        return f"{exc} (the Python console script stays)"
    except UserError as exc:
        return str(exc)
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m occlum.cli.front TARGET", file=sys.stderr)
        return 2
    why = install(Path(argv[0]))
    if why is not None:
        print(f"occlum: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
