"""LibOS processes and threads: the per-process state the host kernel cannot hold for us.

Application processes are real host processes in the instance's PID namespace, so pids, signals,
``wait4`` and process groups are the kernel's. What the LibOS adds is the state that names its
file systems (root, cwd, umask), the program it loaded (exe, argv), and an exec in progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

# an exec in progress is the loader's (re-exported: the kernel's exec cache holds CachedProgram)
from occlum.loader.program import CachedProgram as CachedProgram
from occlum.loader.program import ExecRequest, FileIdentity
from occlum.platform.memory import TaskMemory
from occlum.vfs.cred import ROOT, Cred

if TYPE_CHECKING:
    from occlum.loader.plan import ArgArea
    from occlum.vfs.path import Location


@dataclass(slots=True, eq=False)
class Process:
    host_pid: int
    pid: int
    ppid: int
    root: Location
    cwd: Location
    umask: int = 0o022
    exe_path: bytes = b""
    exe_id: FileIdentity | None = None  # the file exe_path named when it was executed
    argv: list[bytes] = field(default_factory=list)
    envp: list[bytes] = field(default_factory=list)
    # where the LibOS put argv and envp in the program's memory (None: not loaded by it)
    arg_area: ArgArea | None = None
    pidfd: int = -1
    _mem: TaskMemory | None = None
    _fd_dir: int = -1
    pending_exec: ExecRequest | None = None
    tids: set[int] = field(default_factory=set)
    cred: Cred = ROOT  # what a thread of this process not met yet has (the latest set)

    @property
    def mem(self) -> TaskMemory:
        m = self._mem
        if m is None:
            m = self._mem = TaskMemory(self.host_pid, self.pidfd)
        return m

    @property
    def fd_dir(self) -> int:
        """Its ``/proc/PID/fd`` directory, opened once: a descriptor's object is found by a
        lookup of one name in it (``fstat`` and every call on a descriptor ask), not by a walk
        of the whole path each time. The directory stays the process's own: once it is gone,
        a lookup fails, whoever has the pid by then."""
        d = self._fd_dir
        if d < 0:
            d = self._fd_dir = os.open(
                f"/proc/{self.host_pid}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        return d

    def new_address_space(self) -> None:
        """After exec the old ``/proc/PID/mem`` handle reads a dead address space."""
        if self._mem is not None:
            self._mem.close()
            self._mem = None

    @property
    def comm(self) -> bytes:
        return os.path.basename(self.exe_path)[:15]

    def release(self) -> None:
        if self._mem is not None:
            self._mem.close()
            self._mem = None
        if self.pending_exec is not None:
            self.pending_exec.close()
            self.pending_exec = None
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if self._fd_dir >= 0:
            os.close(self._fd_dir)
            self._fd_dir = -1


@dataclass(slots=True, eq=False)
class Task:
    """One thread making one system call; handlers receive it as ``t``."""

    tid: int
    process: Process
    notif_id: int = 0
    nr: int = 0
    # the thread's own credentials (Linux keeps them per thread); a thread first met takes
    # its process's latest (glibc changes every thread's together)
    cred: Cred = ROOT

    @property
    def mem(self) -> TaskMemory:
        return self.process.mem
