"""Assemble a LibOS and boot it: the entry point the CLI calls (``run(spec) -> exit status``).

This is the one place that knows both the kernel and the syscall handlers: it hands the kernel
the syscall table, the seccomp filter made from it and the exec check, so that imports only point down (``syscalls/`` uses the
kernel's services; ``kernel/`` never imports a handler module).
"""

from __future__ import annotations

import errno
import os

from occlum.abi.errors import SyscallError
from occlum.errors import UserError
from occlum.kernel import stages
from occlum.kernel.libos import LibOS
from occlum.kernel.spec import RunSpec
from occlum.syscalls.exec import MissingInterpreter
from occlum.syscalls.exec import check_program as check_exec
from occlum.syscalls.table import build_table, filter_program

__all__ = ["new_libos", "prepare", "run"]

# The seccomp filter depends on the syscall table alone: made once per process (the zygote
# makes it before it forks its runs, each of which paid 1-2 ms for it).
_FILTERS: dict[bool, bytes] = {}


def _filter(every_exit: bool) -> bytes:
    program = _FILTERS.get(every_exit)
    if program is None:
        program = _FILTERS[every_exit] = filter_program(every_exit=every_exit)
    return program


def prepare() -> None:
    """What every boot needs and no instance changes, made now (the zygote's warm-up)."""
    _filter(False)


def new_libos(spec: RunSpec) -> LibOS:
    """A LibOS for ``spec``, not yet running."""
    program = _filter(spec.diagnose)  # `occlum doctor` measures every exit
    return LibOS(spec, build_table(), check_program, program)


def run(spec: RunSpec) -> int:
    """Boot a LibOS for ``spec``, run its program, return the exit status ``occlum run`` gives."""
    libos = new_libos(spec)
    profile_to = os.environ.get("OCCLUM_PROFILE")
    if not profile_to:
        return stages.run(libos)
    import cProfile  # the supervisor's own profile, for LibOS developers

    prof = cProfile.Profile()
    try:
        return prof.runcall(stages.run, libos)
    finally:
        prof.dump_stats(profile_to)


def check_program(libos: LibOS, path: bytes, stage: str, image: str | None) -> None:
    """Fail early, with one clear line, when the program cannot be started."""
    root = libos.mounts.root()
    try:
        check_exec(libos, root, path)
    except SyscallError as exc:
        name = path.decode(errors="replace")
        missing = (
            exc.why.removeprefix(f"{name}: ")
            if isinstance(exc, MissingInterpreter)
            else f"no such file in {stage}"
        )
        what = {
            errno.ENOENT: missing,
            errno.ENOEXEC: exc.why or "not an executable",
            errno.EACCES: "permission denied (not executable)",
        }.get(exc.errno, str(exc))
        if exc.errno == errno.EIO and image is not None:  # the stage's only file system
            what += f" ({image} is corrupted or changed since `occlum build`)"
        raise UserError(f"cannot run {name}: {what}", 127)
