"""The names and the address of a started instance's server, shared by the server and its
clients (a module of its own: ``occlum exec`` imports nothing heavier)."""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

from occlum.errors import UserError

if TYPE_CHECKING:  # not imported at run time: occlum exec loads this module
    from occlum.instance.layout import Instance

SOCKET_NAME = "occlum.sock"
PID_NAME = "server.pid"
LOG_NAME = "server.log"
LOCK_NAME = "server.lock"
NATIVE_CLIENT_NAME = "occlum-exec"  # the native `occlum exec` client (instance/exec_native.py)
MAX_MESSAGE = 1 << 20


def socket_address(run_dir: str | os.PathLike[str]) -> tuple[str, int]:
    """An address for run/occlum.sock that fits sun_path whatever the instance's path length:
    the directory is reached through a descriptor (the caller closes it)."""
    dirfd = os.open(os.fspath(run_dir), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dirfd}/{SOCKET_NAME}", dirfd


def lock_holder(run_dir: str | os.PathLike[str]) -> int | None:
    """The pid of the live server of this instance, or None."""
    try:
        fd = os.open(os.path.join(run_dir, LOCK_NAME), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(_read(os.path.join(run_dir, PID_NAME)).split()[0])
        except (OSError, ValueError, IndexError):
            return -1
    finally:
        os.close(fd)
    return None


def refuse_if_started(run_dir: str | os.PathLike[str]) -> None:
    """``occlum run`` and ``occlum doctor`` refuse an instance that is started: its programs run
    with ``occlum exec``."""
    holder = lock_holder(run_dir)
    if holder is not None:
        raise UserError(
            f"the instance is started (server pid {holder}): run programs in it with "
            "occlum exec, or occlum stop it first"
        )


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def refuse_if_in_use(inst: Instance) -> None:
    """Refuse, in one line, while the instance is started or an ``occlum run`` of it runs."""
    holder = lock_holder(inst.run_dir)
    if holder is not None:
        raise UserError(f"the instance is started (server pid {holder}): occlum stop it first")
    pids = inst.running_pids()
    if pids:
        raise UserError(f"the instance is running (occlum run, pid {pids[0]}): wait for it to exit")
