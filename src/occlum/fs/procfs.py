"""procfs: the LibOS ``/proc``, generated from the kernel's process table.

Owns the names and contents of ``/proc``.  It knows processes only through the small
:class:`ProcessRegistry` protocol, so it can be tested with a fake.  Each open of a regular
proc file renders its content into a fresh memfd (a snapshot per open, roughly as Linux does
with ``seq_file``) and hands out a descriptor of it.  ``exe``, ``cwd``, ``root`` and ``fd/N``
are magic links: readlink gives LibOS paths, and ``fd/N`` jumps to the open file itself
when the registry can say where it is.

``comm`` is the one file a process writes: its descriptor is the host kernel's own
``comm`` of that thread (opened by the supervisor, used natively by the program), so reading
shows the name PR_SET_NAME set and writing renames exactly as Linux does (only the caller's
own thread group, the text cut at 15 bytes and kept as written, newline included).
``task/`` lists every thread of the process under its LibOS tid.

About 690 lines, one room: the names of ``/proc`` form one table, read as a whole.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import PROC_SUPER_MAGIC, S_IFDIR, S_IFLNK, S_IFREG, StatFs, dtype_of_mode
from occlum.vfs.cred import ROOT, Cred
from occlum.vfs.inode import DirEntry, Inode, SetAttr, Stat
from occlum.vfs.mount import FileSystem, MountInfo
from occlum.vfs.path import Location, MagicLink

__all__ = ["ProcFs", "ProcessInfo", "ProcessRegistry"]


@dataclass(slots=True)
class ProcessInfo:
    """A snapshot of one LibOS process, as ``/proc/<pid>`` shows it.

    ``host_pid`` (optional) lets procfs take memory numbers from the host's
    ``/proc/<host_pid>/{stat,statm,status}``; ``maps`` overrides the host's maps (which may show
    host paths).  ``fd_location`` lets ``/proc/<pid>/fd/N`` jump to the open file's location.
    """

    pid: int
    ppid: int = 0
    tgid: int = 0
    pgid: int = 0
    sid: int = 0
    comm: bytes = b""
    cmdline: bytes = b""
    environ: bytes = b""
    # the process's own memory, read when the file is (see ``cmdline_text``); without it
    # ``cmdline`` and ``environ`` as the program was started
    memory: Callable[[int, int], bytes] | None = None
    arg_area: tuple[int, int, int, int] | None = None  # arg_start, arg_end, env_start, env_end
    exe: bytes = b""
    cwd: bytes = b"/"
    root: bytes = b"/"
    # the state when nothing better is known; ``state_of`` gives the real one
    state: str = "R"
    threads: int = 1
    uid: int = 0
    gid: int = 0
    fds: Mapping[int, bytes] = field(default_factory=dict)
    host_pid: int | None = None
    maps: Callable[[], bytes] | None = None
    fd_location: Callable[[int], Location | None] | None = None
    umask: int = 0o022
    # the credentials of the process (its main thread's); ``cred_of`` gives a thread's, by
    # where the host keeps it ("" for the main thread, else "task/<host tid>/")
    cred: Cred = ROOT
    cred_of: Callable[[str], Cred] | None = None
    # (pgid, sid, threads) computed on demand, when the kernel's answer costs a read
    ids: Callable[[], tuple[int, int, int]] | None = None
    # LibOS tid -> host tid of every thread, read when task/ is looked at
    tasks: Callable[[], Mapping[int, int]] | None = None
    # opens the host's /proc/<host_pid>/<name> of this very process (not of a host process
    # that got its pid after it exited); without it such files are snapshots, read-only
    open_host: Callable[[str, int], int] | None = None
    # the state letter (R, S, D, T, t, Z, X, I) of the process ("") or of one of its threads
    # ("task/<host tid>/"), as Linux would show it for the same program
    state_of: Callable[[str], str] | None = None

    def settle_ids(self) -> None:
        if self.ids is not None:
            self.pgid, self.sid, self.threads = self.ids()
            self.ids = None


_T = TypeVar("_T")


class NetView(Protocol):
    """Runs ``look`` where ``/proc/sys/net`` is the instance's network's (the kernel shows
    there the network namespace of the thread that looks); OSError if it cannot."""

    def __call__(self, look: Callable[[], _T]) -> _T: ...


class ProcessRegistry(Protocol):
    """What procfs needs from the kernel's process table."""

    def current_pid(self) -> int: ...

    def pids(self) -> list[int]: ...

    def info(self, pid: int) -> ProcessInfo | None: ...


# fs/proc/array.c's task_state_array
_STATE_NAMES = {
    "R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped", "t": "tracing stop",
    "X": "dead", "Z": "zombie", "P": "parked", "I": "idle",
}  # fmt: skip


_PAGE = 4096


def cmdline_text(info: ProcessInfo) -> bytes:
    """``/proc/PID/cmdline`` as Linux's ``get_mm_cmdline`` reads it from the process's memory:
    the argument strings as they are now (a program may overwrite them with a title of its
    own, as PostgreSQL's processes and setproctitle(3) do). When the last byte of the
    arguments is no longer a NUL, the title may run on into the environment: it is then read
    up to its first NUL (included), within a page of the start and the environment's end."""
    if info.memory is None or info.arg_area is None:
        return info.cmdline
    arg_start, arg_end, env_start, env_end = info.arg_area
    if arg_start >= arg_end:
        return b""
    if env_start != arg_end or env_end < env_start:
        env_end = arg_end
    if info.memory(arg_end - 1, 1) in (b"", b"\0"):
        return info.memory(arg_start, arg_end - arg_start)
    page = info.memory(arg_start, _PAGE)
    nul = page.find(b"\0")
    return page[: min(len(page) if nul < 0 else nul + 1, env_end - arg_start)]


def environ_text(info: ProcessInfo) -> bytes:
    """``/proc/PID/environ``: the environment strings' area of the process's memory now."""
    if info.memory is None or info.arg_area is None:
        return info.environ
    _, _, env_start, env_end = info.arg_area
    return info.memory(env_start, env_end - env_start) if env_end > env_start else b""


def _host_read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _reader(path: str) -> Callable[[], bytes]:
    return lambda: _host_read(path)


def _world_readable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o004)
    except OSError:
        return False


def _list_dir(path: str) -> list[tuple[str, bool, bool]]:
    """(name, is a directory, may be shown) of each entry of a host directory. Only what any
    host user may read is shown: the supervisor is privileged, and a file only root reads may
    hold a secret (net.ipv4.tcp_fastopen_key); a write-only one (route.flush) shows nothing."""
    out = []
    for e in os.scandir(path):
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        out.append((e.name, e.is_dir(follow_symlinks=False), bool(st.st_mode & 0o004)))
    return out


def _net_reader(view: NetView, path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return view(functools.partial(_host_read, path))
        except OSError:
            return b""

    return read


# The host's /proc/sys files shown as they are: limits and facts of the host kernel that
# apply to the instance's programs as to any (its pipes, descriptors, pids, memory are the
# host's). pid_max: the instance is a PID namespace of the host, whose pids it takes.
_HOST_SYS_KERNEL = ("pid_max", "threads-max", "tainted", "core_pattern", "core_uses_pid")
_HOST_SYS_VM = ("overcommit_memory", "overcommit_ratio", "max_map_count", "mmap_min_addr")
_HOST_SYS_FS = (
    "pipe-max-size", "pipe-user-pages-hard", "pipe-user-pages-soft", "file-max", "nr_open",
)  # fmt: skip


def _memfd_of(content: bytes, flags: int) -> int:
    mfd = os.memfd_create("procfs", os.MFD_CLOEXEC)
    try:
        os.write(mfd, content)
        return os.open(f"/proc/self/fd/{mfd}", (flags & os.O_ACCMODE) | os.O_CLOEXEC)
    finally:
        os.close(mfd)


class ProcInode(Inode):
    fs: ProcFs

    def __init__(self, fs: ProcFs, key: tuple[object, ...], ftype: int, perm: int, owner: int = 0):
        super().__init__(fs, fs.ino_for(key), ftype)
        self.perm = perm
        self.owner = owner

    def getattr(self) -> Stat:
        t = self.fs.boot_ns
        return Stat(
            dev=self.fs.dev, ino=self.ino, mode=self.ftype | self.perm,
            nlink=2 if self.is_dir else 1, uid=self.owner, gid=self.owner,
            atime_ns=t, mtime_ns=t, ctime_ns=t,
        )  # fmt: skip


class ProcFile(ProcInode):
    def __init__(
        self, fs: ProcFs, key: tuple[object, ...], gen: Callable[[], bytes], owner: int = 0
    ):
        super().__init__(fs, key, S_IFREG, 0o444, owner)
        self.gen = gen

    def open_host_fd(self, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise SyscallError(errno.EACCES, "proc file is read-only")
        return _memfd_of(self.gen(), flags)


class ProcHostFile(ProcInode):
    """A file of the process the host kernel itself serves, read and written through the
    host's own file (``comm``: writing renames the thread, as on Linux)."""

    def __init__(
        self,
        fs: ProcFs,
        key: tuple[object, ...],
        info: ProcessInfo,
        host_name: str,
        snapshot: Callable[[], bytes],
        owner: int = 0,
    ) -> None:
        super().__init__(fs, key, S_IFREG, 0o644, owner)
        self.info, self.host_name, self.snapshot = info, host_name, snapshot

    def open_host_fd(self, flags: int) -> int:
        if self.info.open_host is None:
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise SyscallError(errno.EACCES, "no host process to rename")
            return _memfd_of(self.snapshot(), flags)
        return self.info.open_host(self.host_name, flags & os.O_ACCMODE)

    def setattr(self, attrs: SetAttr) -> None:
        # O_TRUNC (a shell's `echo name > /proc/self/comm`) is accepted and changes nothing,
        # as on Linux; the mode and owner are the kernel's
        if attrs.mode is not None or attrs.uid is not None or attrs.gid is not None:
            raise SyscallError(errno.EPERM, "proc file attributes are fixed")


class ProcLink(ProcInode, MagicLink):
    def __init__(
        self,
        fs: ProcFs,
        key: tuple[object, ...],
        target: Callable[[], bytes],
        *,
        magic: bool = False,
        where: Callable[[], Location | None] | None = None,
        owner: int = 0,
    ) -> None:
        super().__init__(fs, key, S_IFLNK, 0o777, owner)
        self.target = target
        self.is_magic_link = magic
        self.where = where

    def readlink(self) -> bytes:
        return self.target()

    def magic_target(self) -> Location | None:
        return self.where() if self.where is not None else None


Factory = Callable[[], Inode]


class ProcDir(ProcInode):
    def __init__(
        self,
        fs: ProcFs,
        key: tuple[object, ...],
        entries: Callable[[], dict[bytes, Factory]],
        owner: int = 0,
        lookup_one: Callable[[bytes], Factory | None] | None = None,
        host_pid: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__(fs, key, S_IFDIR, 0o555, owner)
        self.entries = entries
        # a way to find one name without building the whole listing (the root's pids)
        self.lookup_one = lookup_one
        # /proc/<pid>: the host pid of that process
        self.host_pid = host_pid

    def directory_handle(self) -> int | None:
        """An open /proc/<pid> is the host's /proc/<host pid> of that very process: Linux
        takes such a descriptor in pidfd_send_signal, and natively nothing else reads it
        (getdents, openat, fstat and fchdir on it are served by its identity, from here).
        A process that is gone gets the LibOS's own kind of handle."""
        try:
            host_pid = self.host_pid() if self.host_pid is not None else None
        except SyscallError:
            return None
        if not host_pid:
            return None
        try:
            return os.open(f"/proc/{host_pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None

    def lookup(self, name: bytes) -> Inode:
        f = self.lookup_one(name) if self.lookup_one is not None else self.entries().get(name)
        if f is None:
            raise SyscallError(errno.ENOENT, "no such proc entry")
        return f()

    def readdir(self) -> list[DirEntry]:
        out = []
        for name, f in self.entries().items():
            i = f()
            out.append(DirEntry(name, i.ino, dtype_of_mode(i.ftype)))
        return out


class ProcFs(FileSystem):
    """``/proc`` for one LibOS instance."""

    fstype = "proc"
    root: ProcDir

    def __init__(
        self,
        registry: ProcessRegistry,
        *,
        mounts: Callable[[], list[MountInfo]] | None = None,
        hostname: Callable[[], bytes] | None = None,
        net_view: NetView | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        # without one, /proc/sys/net is not shown
        self.net_view = net_view
        self.mounts = mounts or (lambda: [])
        self.hostname = hostname or (lambda: b"occlum")
        self.boot_ns = time.time_ns()
        self._boot_mono = time.monotonic()
        self._inos: dict[tuple[object, ...], int] = {}
        self._static_root: dict[bytes, Factory] | None = None
        self.root = ProcDir(self, ("root",), self._root_entries, lookup_one=self._root_lookup)

    def ino_for(self, key: tuple[object, ...]) -> int:
        # stable inode numbers per name, so repeated stats agree
        ino = self._inos.get(key)
        if ino is None:
            ino = self._inos[key] = len(self._inos) + 1
        return ino

    def statfs(self) -> StatFs:
        return StatFs(f_type=PROC_SUPER_MAGIC)

    # --- helpers --------------------------------------------------------------------------

    def _file(self, key: tuple[object, ...], gen: Callable[[], bytes], owner: int = 0) -> Factory:
        return lambda: ProcFile(self, key, gen, owner)

    def _info(self, pid: int) -> ProcessInfo:
        info = self.registry.info(pid)
        if info is None:
            raise SyscallError(errno.ESRCH, "process is gone")
        return info

    # --- /proc ----------------------------------------------------------------------------

    def _root_lookup(self, name: bytes) -> Factory | None:
        if name.isdigit():
            pid = int(name)
            return self._pid_dir_factory(pid) if self.registry.info(pid) is not None else None
        if self._static_root is None:
            self._static_root = self._root_static_entries()
        return self._static_root.get(name)

    def _root_entries(self) -> dict[bytes, Factory]:
        e = dict(self._root_static_entries())
        for pid in self.registry.pids():
            e[b"%d" % pid] = self._pid_dir_factory(pid)
        return e

    def _root_static_entries(self) -> dict[bytes, Factory]:
        cur = self.registry.current_pid
        e: dict[bytes, Factory] = {
            b"self": lambda: ProcLink(self, ("self",), lambda: b"%d" % cur()),
            b"thread-self": lambda: ProcLink(
                self, ("thread-self",), lambda: b"%d/task/%d" % (cur(), cur())
            ),
            b"mounts": self._file(("mounts",), self._mounts_text),
            b"cpuinfo": self._file(("cpuinfo",), lambda: _host_read("/proc/cpuinfo")),
            b"meminfo": self._file(("meminfo",), lambda: _host_read("/proc/meminfo")),
            b"stat": self._file(("stat",), lambda: _host_read("/proc/stat")),
            b"uptime": self._file(("uptime",), self._uptime),
            b"loadavg": self._file(("loadavg",), self._loadavg),
            b"filesystems": self._file(
                ("filesystems",),
                lambda: b"nodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\thostfs\n",
            ),
            b"version": self._file(
                ("version",), lambda: b"Linux version %s (occlum)\n" % os.uname().release.encode()
            ),
            b"sys": lambda: ProcDir(self, ("sys",), self._sys_entries),
        }
        if os.path.exists("/proc/config.gz"):
            # the configuration of the kernel the programs run on, when it keeps one
            e[b"config.gz"] = self._file(("config.gz",), _reader("/proc/config.gz"))
        return e

    def _pid_dir_factory(self, pid: int, tid: int | None = None) -> Factory:
        def make() -> Inode:
            owner = self._info(pid).uid
            return ProcDir(
                self,
                ("pid", pid, tid),
                lambda: self._pid_entries(pid, tid),
                owner,
                host_pid=(lambda: self._info(pid).host_pid) if tid is None else None,
            )

        return make

    def _mounts_text(self) -> bytes:
        return b"".join(m.line() for m in self.mounts())

    def _mountinfo_text(self) -> bytes:
        return b"".join(m.mountinfo_line() for m in self.mounts())

    def _uptime(self) -> bytes:
        up = time.monotonic() - self._boot_mono
        return b"%.2f %.2f\n" % (up, up * (os.cpu_count() or 1))

    def _loadavg(self) -> bytes:
        host = _host_read("/proc/loadavg").split()
        avgs = b" ".join(host[:3]) if len(host) >= 3 else b"0.00 0.00 0.00"
        pids = self.registry.pids()
        return b"%s 1/%d %d\n" % (avgs, len(pids), max(pids, default=0))

    def _sys_entries(self) -> dict[bytes, Factory]:
        """``/proc/sys``: the instance's own values where it has its own (the hostname, the
        UTS namespace's), elsewhere the host's, read-only: facts about the machine its
        programs run on (the limits the host kernel applies to them, its taint, where it
        writes their core dumps)."""

        def const(v: bytes) -> Callable[[], bytes]:
            return lambda: v + b"\n"

        kernel: dict[bytes, Factory] = {
            b"hostname": self._file(("sys", "hostname"), lambda: self.hostname() + b"\n"),
            b"ostype": self._file(("sys", "ostype"), const(b"Linux")),
            b"osrelease": self._file(("sys", "osrelease"), const(os.uname().release.encode())),
            b"ngroups_max": self._file(("sys", "ngroups_max"), const(b"65536")),
            **self._host_files("kernel", _HOST_SYS_KERNEL),
        }
        vm = self._host_files("vm", _HOST_SYS_VM)
        fs = self._host_files("fs", _HOST_SYS_FS)
        out: dict[bytes, Factory] = {
            b"kernel": lambda: ProcDir(self, ("sys", "kernel"), lambda: kernel),
            b"vm": lambda: ProcDir(self, ("sys", "vm"), lambda: vm),
            b"fs": lambda: ProcDir(self, ("sys", "fs"), lambda: fs),
        }
        if self.net_view is not None:
            out[b"net"] = self._net_tree(self.net_view, ("sys", "net"), "/proc/sys/net")
        return out

    def _host_files(self, where: str, names: tuple[str, ...]) -> dict[bytes, Factory]:
        """The host's ``/proc/sys/<where>/<name>`` of each name the host has."""
        out: dict[bytes, Factory] = {}
        for name in names:
            path = f"/proc/sys/{where}/{name}"
            if _world_readable(path):
                out[name.encode()] = self._file(("sys", where, name), _reader(path))
        return out

    def _net_tree(self, view: NetView, key: tuple[object, ...], path: str) -> Factory:
        """A read-only view of ``path`` (below ``/proc/sys/net``) as ``view`` sees it."""

        def entries() -> dict[bytes, Factory]:
            out: dict[bytes, Factory] = {}
            try:
                found = view(functools.partial(_list_dir, path))
            except OSError:
                return out
            for name, is_dir, readable in found:
                sub = f"{path}/{name}"
                if is_dir:
                    out[name.encode()] = self._net_tree(view, (*key, name), sub)
                elif readable:
                    out[name.encode()] = self._file((*key, name), _net_reader(view, sub))
            return out

        return lambda: ProcDir(self, key, entries)

    # --- /proc/<pid> ----------------------------------------------------------------------

    def _pid_entries(self, pid: int, tid: int | None = None) -> dict[bytes, Factory]:
        """``/proc/<pid>``, or with ``tid`` ``/proc/<pid>/task/<tid>`` (its own name, state
        and numbers; no ``task/``)."""
        info = self._info(pid)
        u = info.uid
        where = _Thread(pid, "") if tid is None else self._thread(info, tid)
        key: tuple[object, ...] = ("p", pid) if tid is None else ("t", pid, tid)

        def f(name: str, gen: Callable[[ProcessInfo], bytes]) -> Factory:
            return self._file((*key, name), lambda: gen(self._info(pid)), u)

        def link(name: str, text: Callable[[ProcessInfo], bytes]) -> Factory:
            return lambda: ProcLink(
                self, (*key, name), lambda: text(self._info(pid)), magic=True, owner=u
            )

        def comm() -> Inode:
            i = self._info(pid)
            return ProcHostFile(
                self, (*key, "comm"), i, where.host("comm"), lambda: _comm(i, where) + b"\n", u
            )

        entries: dict[bytes, Factory] = {
            b"exe": link("exe", lambda i: i.exe),
            b"cwd": link("cwd", lambda i: i.cwd),
            b"root": link("root", lambda i: i.root),
            b"cmdline": f("cmdline", cmdline_text),
            b"comm": comm,
            b"environ": f("environ", environ_text),
            b"stat": f("stat", lambda i: _stat_text(i, where)),
            b"status": f("status", lambda i: _status_text(i, where)),
            b"statm": f(
                "statm",
                lambda i: (
                    _host_read(f"/proc/{i.host_pid}/statm") if i.host_pid else b"0 0 0 0 0 0 0\n"
                ),
            ),
            b"maps": f("maps", _maps_text),
            b"mounts": self._file((*key, "mounts"), self._mounts_text, u),
            b"mountinfo": self._file((*key, "mountinfo"), self._mountinfo_text, u),
            b"fd": lambda: ProcDir(self, ("p", pid, "fd"), lambda: self._fd_entries(pid), u),
            b"fdinfo": lambda: ProcDir(
                self, ("p", pid, "fdinfo"), lambda: self._fdinfo_entries(pid), u
            ),
        }
        if tid is None:
            entries[b"task"] = lambda: ProcDir(
                self, ("p", pid, "task"), lambda: self._task_entries(pid), u
            )
        return entries

    def _task_entries(self, pid: int) -> dict[bytes, Factory]:
        info = self._info(pid)
        tids = info.tasks() if info.tasks is not None else {pid: 0}
        return {b"%d" % tid: self._pid_dir_factory(pid, tid) for tid in sorted(tids)}

    def _thread(self, info: ProcessInfo, tid: int) -> _Thread:
        """Where the host keeps thread ``tid`` of ``info`` (ENOENT once it is gone)."""
        tids = info.tasks() if info.tasks is not None else {info.pid: 0}
        host_tid = tids.get(tid)
        if host_tid is None:
            raise SyscallError(errno.ENOENT, "no such thread")
        return _Thread(tid, f"task/{host_tid}/" if host_tid else "")

    def _fd_entries(self, pid: int) -> dict[bytes, Factory]:
        info = self._info(pid)
        out: dict[bytes, Factory] = {}
        for fd, text in info.fds.items():
            where = info.fd_location

            def make(
                fd: int = fd,
                text: bytes = text,
                where: Callable[[int], Location | None] | None = where,
            ) -> Inode:
                return ProcLink(
                    self, ("p", pid, "fd", fd), lambda: text, magic=True,
                    where=(lambda: where(fd)) if where is not None else None, owner=info.uid,
                )  # fmt: skip

            out[b"%d" % fd] = make
        return out

    def _fdinfo_entries(self, pid: int) -> dict[bytes, Factory]:
        info = self._info(pid)

        def text(fd: int) -> bytes:
            # the kernel's own record (position, flags, eventfd count, timerfd ticks, epoll
            # items...): nothing in it names a host path
            if info.host_pid:
                host = _host_read(f"/proc/{info.host_pid}/fdinfo/{fd}")
                if host:
                    return host
            return b"pos:\t0\nflags:\t02\nmnt_id:\t0\n"

        return {
            b"%d" % fd: self._file(("p", pid, "fdinfo", fd), functools.partial(text, fd), info.uid)
            for fd in info.fds
        }


@dataclass(slots=True, frozen=True)
class _Thread:
    """Which thread a ``/proc`` directory shows: its LibOS id, and where the host keeps it
    below ``/proc/<host pid>/`` ("" for the process itself, else "task/<host tid>/")."""

    tid: int
    host_dir: str

    def host(self, name: str) -> str:
        return self.host_dir + name


_PROCESS = _Thread(0, "")


def _comm(i: ProcessInfo, who: _Thread = _PROCESS) -> bytes:
    """The name the kernel keeps (exec sets it from the path, as the LibOS does, and
    PR_SET_NAME changes it natively), else the LibOS's."""
    if i.host_pid:
        host = _host_read(f"/proc/{i.host_pid}/{who.host('comm')}")
        if host:
            return host[:-1] if host.endswith(b"\n") else host
    return i.comm[:15]


def _stat_text(i: ProcessInfo, who: _Thread = _PROCESS) -> bytes:
    rest: list[bytes] = []
    if i.host_pid:
        host = _host_read(f"/proc/{i.host_pid}/{who.host('stat')}")
        if b")" in host:
            rest = host[host.rindex(b")") + 2 :].split()
    if len(rest) < 50:
        rest = [b"0"] * 50
    # fields after comm: state ppid pgrp session, then the host's numbers
    i.settle_ids()
    rest[0:4] = [_state(i, who).encode(), b"%d" % i.ppid, b"%d" % i.pgid, b"%d" % i.sid]
    rest[17] = b"%d" % i.threads
    return b"%d (%s) %s\n" % (who.tid or i.pid, _comm(i, who), b" ".join(rest))


def _state(i: ProcessInfo, who: _Thread) -> str:
    return i.state_of(who.host_dir) if i.state_of is not None else i.state


def _status_text(i: ProcessInfo, who: _Thread = _PROCESS) -> bytes:
    state = _state(i, who)
    c = i.cred_of(who.host_dir) if i.cred_of is not None else i.cred
    lines = [
        b"Name:\t%s" % _comm(i, who),
        b"Umask:\t%04o" % i.umask,
        b"State:\t%s (%s)" % (state.encode(), _STATE_NAMES.get(state, "running").encode()),
        b"Tgid:\t%d" % (i.tgid or i.pid),
        b"Ngid:\t0",
        b"Pid:\t%d" % (who.tid or i.pid),
        b"PPid:\t%d" % i.ppid,
        b"TracerPid:\t0",
        b"Uid:\t%d\t%d\t%d\t%d" % (c.uid, c.euid, c.suid, c.fsuid),
        b"Gid:\t%d\t%d\t%d\t%d" % (c.gid, c.egid, c.sgid, c.fsgid),
        b"FDSize:\t%d" % max(64, len(i.fds)),
        # Linux's trailing space, kept "for compatibility"
        b"Groups:\t" + b" ".join(b"%d" % g for g in c.groups) + b" ",
    ]
    # the host's own lines for memory and signals: the program's real state (the signal
    # masks hold no pid; SigQ counts the signals queued for the user, as on Linux)
    signals: list[bytes] = []
    if i.host_pid:
        for line in _host_read(f"/proc/{i.host_pid}/{who.host('status')}").splitlines():
            if line.startswith((b"Vm", b"Rss")):
                lines.append(line)
            elif line.startswith(_SIGNAL_LINES):
                signals.append(line)
    i.settle_ids()
    lines.append(b"Threads:\t%d" % i.threads)
    lines += signals
    lines += [
        b"CapInh:\t%016x" % c.cap_inheritable,
        b"CapPrm:\t%016x" % c.cap_permitted,
        b"CapEff:\t%016x" % c.cap_effective,
        b"CapBnd:\t%016x" % c.cap_bounding,
        b"CapAmb:\t%016x" % 0,
    ]
    return b"\n".join(lines) + b"\n"


_SIGNAL_LINES = (b"SigQ:", b"SigPnd:", b"ShdPnd:", b"SigBlk:", b"SigIgn:", b"SigCgt:")


def _maps_text(i: ProcessInfo) -> bytes:
    if i.maps is not None:
        return i.maps()
    return _host_read(f"/proc/{i.host_pid}/maps") if i.host_pid else b""
