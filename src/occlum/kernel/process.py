"""LibOS processes and threads: the per-process state the host kernel cannot hold for us.

Application processes are real host processes in the instance's PID namespace, so pids, signals,
``wait4`` and process groups are the kernel's. What the LibOS adds is the state that names its
file systems (root, cwd, umask), the program it loaded (exe, argv), and an exec in progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from occlum.platform.memory import TaskMemory
from occlum.vfs.cred import ROOT, Cred

if TYPE_CHECKING:
    from occlum.loader.elf import ElfImage
    from occlum.vfs.mount import FileSystem
    from occlum.vfs.path import Location

# a LibOS file as a program being run: its file system and inode number
FileIdentity = tuple["FileSystem", int]


@dataclass(slots=True, frozen=True)
class CachedProgram:
    """An executable of a read-only file system, kept open for repeated execs."""

    exe_path: bytes
    fd: int


@dataclass(slots=True)
class ExecRequest:
    """An ``execve`` the LibOS accepted; carried out when the stub asks for it."""

    exe_path: bytes  # absolute LibOS path of the program
    execfn: bytes  # the path as the caller gave it (AT_EXECFN)
    argv: list[bytes]
    envp: list[bytes]
    prog_fd: int
    prog: ElfImage
    interp_fd: int | None
    interp: ElfImage | None
    owned_fds: list[int] = field(default_factory=list)  # the others belong to the exec cache
    # (descriptor number, our copy of what it held): descriptors an execveat replaced so that
    # the kernel would find the stub there, put back in the new program (not close-on-exec)
    restore: list[tuple[int, int]] = field(default_factory=list)
    exe_id: FileIdentity | None = None  # the program's file (None: not a LibOS file)
    # the name the program gets in /proc/PID/comm, when the kernel's (the stub's) is wrong
    comm: bytes | None = None

    def close(self) -> None:
        for fd in self.owned_fds:
            os.close(fd)
        self.owned_fds.clear()
        for _n, fd in self.restore:
            os.close(fd)
        self.restore.clear()


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
    pidfd: int = -1
    _mem: TaskMemory | None = None
    pending_exec: ExecRequest | None = None
    tids: set[int] = field(default_factory=set)
    cred: Cred = ROOT  # what a thread of this process not met yet has (the latest set)

    @property
    def mem(self) -> TaskMemory:
        m = self._mem
        if m is None:
            m = self._mem = TaskMemory(self.host_pid, self.pidfd)
        return m

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
