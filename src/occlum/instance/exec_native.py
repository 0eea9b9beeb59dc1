"""The native ``occlum exec`` client: ``occlum/instance/native/exec_client.c``, a small C
program that speaks the server's protocol (:mod:`occlum.instance.client` is the Python one).

A Python client cannot start in less than about 10 ms (the interpreter alone), which is the
whole budget of an ``occlum exec`` round trip; the native one starts in well under 1 ms.
``occlum start`` compiles it with the host's C compiler (once per machine and source version,
cached in ``~/.cache/occlum``) and puts it at ``run/occlum-exec``, where the ``occlum``
console script hands a plain ``occlum exec`` to it, and where it can be run directly, the
fastest way in. Without a compiler the Python client does the same work, slower.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from occlum.errors import UserError
from occlum.instance.ccache import NoCompiler, install_static
from occlum.instance.wire import NATIVE_CLIENT_NAME

__all__ = ["install_native_client"]


def install_native_client(run_dir: Path) -> str | None:
    """Put the native client at ``run_dir/occlum-exec``; None, or why it could not be.

    A client left there by an earlier start goes first: the one there always speaks the
    protocol of the server that this start runs."""
    target = run_dir / NATIVE_CLIENT_NAME
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        install_static(
            "instance/native/exec_client.c", "exec-client", "the native exec client", target
        )
    except NoCompiler:
        return None  # nothing to say: the Python client serves
    except UserError as exc:
        return str(exc)
    return None
