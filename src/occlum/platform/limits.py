"""Resource limits from Occlum.json, enforced by the host kernel with Linux's own errnos.

- ``max_num_of_threads``: every process and thread of an instance lives in a pids cgroup of
  its own (cgroup v2, or the v1 pids hierarchy), so a ``fork`` or ``clone`` past the limit
  fails with EAGAIN. The cgroup's ``pids.events`` counts those refusals; the kernel reads it
  and names the key to raise.
- ``user_space_size`` (or ``user_space_max_size`` when larger): each process's address space
  (RLIMIT_AS, soft and hard, so a program cannot lift it), so ``mmap``, ``brk`` and ``malloc``
  fail with ENOMEM past it. Occlum counts it for all processes together; the host kernel has
  no such errno-giving limit across processes, hence the next one.
- ``user_space_size`` again, for all programs together: their memory (what they touch of
  anonymous memory, and the pages they write of LibOS files, ramfs and SEFS alike, which live
  in memfds, and of their own memfds) is charged to a memory cgroup holding only the programs
  (not the LibOS's init and spawner), limited to that size. A write or a page fault past it
  makes the kernel's out-of-memory killer end a program with SIGKILL (ramfs and memfd pages
  cannot be reclaimed: there is no swap to move them to); the cgroup counts those kills and the
  kernel names the key. A file's pages written by the LibOS itself (image and SEFS files it
  reads into its page cache) are the LibOS's, as in Occlum, whose kernel heap holds them.
- ``default_stack_size``: the main thread's stack (RLIMIT_STACK, soft).

Without a writable pids or memory cgroup (no root, or no such controller) that limit is not
enforced, and the kernel says so once at log level info.

Measured (Linux 6.18, cgroup v1's memory controller): with the OOM killer on, a write(2),
a fallocate(2) or a store through a shared mapping into a memfd or a tmpfs file past the limit
ends the writer with SIGKILL, as touching anonymous memory does; with it off
(``oom_kill_disable``), fallocate gets ENOMEM but write(2) and page faults wait for memory
forever, a silent hang, so the killer stays on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import resource
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MemoryCgroup",
    "PidsCgroup",
    "ProgramLimits",
    "apply_program_limits",
    "limit_process",
    "open_memory_cgroup",
    "pids_parent",
    "remove_stale",
    "set_oom_score_adj",
]


@dataclass(slots=True, frozen=True)
class ProgramLimits:
    """What the first program of an instance gets before its ``execve`` (inherited by all)."""

    address_space: int  # bytes; 0: unlimited
    stack: int  # bytes; 0: the host's
    memory_procs: str = ""  # the memory cgroup's cgroup.procs; "": none
    memory_fd: int = -1  # that file, opened before the tree leaves the host's mounts


def open_memory_cgroup(limits: ProgramLimits) -> ProgramLimits:
    """In the setup process, while the host's cgroup file system is still in sight: the limits
    with the memory cgroup's procs file open (close-on-exec), for each program to join."""
    if not limits.memory_procs:
        return limits
    fd = os.open(limits.memory_procs, os.O_WRONLY | os.O_CLOEXEC)
    return dataclasses.replace(limits, memory_fd=fd)


def apply_program_limits(limits: ProgramLimits) -> None:
    if limits.memory_fd >= 0:
        # "0": the writer itself; the program's descendants follow it. Refused (a cgroup the
        # host took back), the program still starts, bounded per process as without one.
        with contextlib.suppress(OSError):
            os.write(limits.memory_fd, b"0")
        os.close(limits.memory_fd)
    if limits.address_space:
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    if limits.stack:
        _soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
        if hard == resource.RLIM_INFINITY or limits.stack <= hard:
            resource.setrlimit(resource.RLIMIT_STACK, (limits.stack, hard))


def limit_process(pid: int, limits: ProgramLimits) -> None:
    """``apply_program_limits``' resource limits, set on process ``pid`` from outside: for a
    program a started instance's spawner starts with ``posix_spawn``, whose vfork child cannot
    set its own. ``OSError`` (ESRCH: it is gone)."""
    if limits.address_space:
        resource.prlimit(pid, resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    if limits.stack:
        _soft, hard = resource.prlimit(pid, resource.RLIMIT_STACK)
        if hard == resource.RLIM_INFINITY or limits.stack <= hard:
            resource.prlimit(pid, resource.RLIMIT_STACK, (limits.stack, hard))


def set_oom_score_adj(pid: int, value: int) -> None:
    """The out-of-memory killer's bias for a host process (1000: chosen first). Its children
    inherit it; it may lower it again, down to 0."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w") as f:
        f.write(str(value))


def pids_parent() -> Path | None:
    """A cgroup directory under which we may make a pids-limited group, or None."""
    return _controller_parent("pids")


def _controller_parent(controller: str) -> Path | None:
    """A cgroup directory under which we may make a group limited by ``controller``
    (cgroup v2 with it enabled below our group, or its v1 hierarchy), or None."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    v2_path = v1_path = None
    for line in own:
        hier, controllers, path = line.split(":", 2)
        if hier == "0":
            v2_path = path
        elif controller in controllers.split(","):
            v1_path = path
    for line in mounts:
        fields = line.split()
        sep = fields.index("-")
        fstype, super_opts = fields[sep + 1], fields[sep + 3]
        mnt = Path(fields[4])
        if fstype == "cgroup2" and v2_path is not None:
            base = mnt / v2_path.lstrip("/")
            with contextlib.suppress(OSError):
                if controller in (base / "cgroup.subtree_control").read_text().split():
                    return base
        elif fstype == "cgroup" and v1_path is not None and controller in super_opts.split(","):
            return mnt / v1_path.lstrip("/")
    return None


class PidsCgroup:
    """A pids cgroup of one process tree, removed by :meth:`remove`."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.refused_seen = 0

    @classmethod
    def create(cls, name: str, limit: int) -> PidsCgroup | None:
        """A new group allowing ``limit`` tasks, or None where none can be made.

        ``name`` is ``<prefix>-<supervisor pid>-<n>``: the groups of supervisors that are gone
        are removed first (see :func:`remove_stale`)."""
        parent = pids_parent()
        if parent is None:
            return None
        remove_stale(parent, name.split("-", 1)[0])
        path = parent / name
        try:
            path.mkdir()
        except OSError:
            return None
        try:
            (path / "pids.max").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path, limit)

    @property
    def procs(self) -> str:
        """The file a process writes "0" to, to join."""
        return str(self.path / "cgroup.procs")

    def refused(self) -> int:
        """How many forks and clones the limit refused so far."""
        return _event_count(self.path / "pids.events", "max")

    def remove(self) -> None:
        """Remove the group; its processes are gone (a zombie may take a moment)."""
        _remove_group(self.path)


def _event_count(path: Path, key: str) -> int:
    """The count of ``key`` in a cgroup's "key value" lines (0 if unknown)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _remove_group(path: Path) -> None:
    """rmdir a cgroup whose processes are gone (a zombie may hold it for a moment: EBUSY)."""
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
            os.sched_yield()


def remove_stale(parent: Path, prefix: str) -> None:
    """Remove the empty groups ``<prefix>-<pid>-<n>`` under ``parent`` whose supervisor
    ``<pid>`` is gone. A supervisor killed with SIGKILL never ran :meth:`PidsCgroup.remove`,
    and neither cgroup version removes an empty group by itself (v1's release agent is the
    host's to configure), so the next instance to start cleans up. ``rmdir`` refuses a group
    that still holds a process (EBUSY), so a tree that outlived its supervisor keeps its
    group, and a live supervisor's pid keeps its groups (a pid reused by another process
    delays the removal until that one ends)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        head, _, rest = name.partition("-")
        pid, _, _n = rest.partition("-")
        if head != prefix or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            (parent / name).rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


class MemoryCgroup:
    """A memory cgroup of one process tree's programs, removed by :meth:`remove`."""

    def __init__(self, path: Path, limit: int, v2: bool) -> None:
        self.path = path
        self.limit = limit
        self.v2 = v2
        self.kills_seen = 0
        self._usage_fd = -1  # its usage file, opened at the first sysinfo

    @classmethod
    def create(cls, name: str, limit: int) -> MemoryCgroup | None:
        """A new group holding at most ``limit`` bytes, or None where none can be made."""
        parent = _controller_parent("memory")
        if parent is None:
            return None
        remove_stale(parent, name.split("-", 1)[0])
        v2 = (parent / "cgroup.controllers").exists()
        path = parent / name
        try:
            path.mkdir()
        except OSError:
            return None
        try:
            if v2:
                (path / "memory.max").write_text(str(limit))
                with contextlib.suppress(OSError):  # no swap to hide the programs' pages in
                    (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(limit))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path, limit, v2)

    @property
    def procs(self) -> str:
        return str(self.path / "cgroup.procs")

    def usage(self) -> int | None:
        """Bytes charged to the group now (its programs' memory and file pages), or None.
        ``sysinfo`` asks at each call (java: four times at start): the file stays open, one
        ``pread`` a call (opening it by path cost 200-350 us of a 250-400 us sysinfo)."""
        try:
            if self._usage_fd < 0:
                name = "memory.current" if self.v2 else "memory.usage_in_bytes"
                self._usage_fd = os.open(self.path / name, os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self._usage_fd, 64, 0))
        except (OSError, ValueError):
            return None

    def peak(self) -> int:
        """The most bytes charged to the group at once so far (0 if unknown)."""
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return 0

    def oom_kills(self) -> int:
        """How many programs the out-of-memory killer ended for this group's limit so far."""
        return _event_count(
            self.path / ("memory.events" if self.v2 else "memory.oom_control"), "oom_kill"
        )

    def remove(self) -> None:
        """Remove the group once its processes are gone; pages still charged to it (files
        left in ramfs) stay counted in its parent, as the kernel does for any removed group."""
        if self._usage_fd >= 0:
            os.close(self._usage_fd)
            self._usage_fd = -1
        _remove_group(self.path)
