"""What ``/proc/<pid>`` shows of a LibOS process (the procfs ProcessRegistry answers)."""

from __future__ import annotations

import errno
import functools
import os
import select
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFCHR, Stat
from occlum.fs.procfs import NetView, ProcessInfo
from occlum.vfs.inode import HOST_OPEN_MASK, Inode
from occlum.vfs.mount import FileSystem
from occlum.vfs.path import Location

if TYPE_CHECKING:
    from occlum.kernel.objects import ObjectRegistry
    from occlum.kernel.process import Process, Task
    from occlum.kernel.spec import RunSpec
    from occlum.vfs.cred import Cred
    from occlum.vfs.mount import MountTable


class Processes(Protocol):
    """What ``/proc`` reads of the process table (``kernel/proctable.py``, which imports this
    module for ``read_proc``)."""

    @property
    def procs(self) -> dict[int, Process]: ...
    @property
    def tasks(self) -> dict[int, Task]: ...
    @property
    def init_pid(self) -> int: ...


class Kernel(Protocol):
    """What ``/proc`` reads of the LibOS (``kernel/libos.py``, which asks this module for a
    process's ``ProcessInfo``): a protocol, so that neither imports the other."""

    @property
    def current(self) -> Task | None: ...
    @property
    def mounts(self) -> MountTable: ...
    @property
    def objects(self) -> ObjectRegistry: ...
    @property
    def proctable(self) -> Processes: ...
    @property
    def spec(self) -> RunSpec: ...


def _fd_texts(libos: Kernel, p: Process) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    try:
        names = os.listdir(f"/proc/{p.host_pid}/fd")
    except OSError:
        return out
    for name in names:
        fd = int(name)
        try:
            ref = libos.objects.lookup(p.host_pid, fd)
        except OSError:
            continue
        if ref is not None:
            out[fd] = ref.location.absolute_path()
        else:
            try:
                text = os.readlink(f"/proc/{p.host_pid}/fd/{fd}")
            except OSError:
                continue
            # host objects keep their kernel names (pipe:[N], socket:[N], anon_inode:...)
            # host files are never named; host devices (the terminal, /dev/null) may be
            out[fd] = (
                text.encode()
                if not text.startswith("/") or text.startswith("/dev/")
                else b"anon_inode:[host]"
            )
    return out


class HostObjects(FileSystem):
    """Where the host objects a program holds (pipes, sockets, terminals, eventfds) appear
    when it names them through ``/proc/<pid>/fd/N``."""

    fstype = "anon"


class HostObjectInode(Inode):
    """``/proc/<pid>/fd/N`` of a host object: opening it reopens that object, as on Linux.

    Its type is reported as a character device to the VFS so that opening it asks for a host
    descriptor; ``getattr`` shows the object's true type.
    """

    def __init__(self, fs: HostObjects, host_pid: int, fd: int, st: os.stat_result) -> None:
        super().__init__(fs, st.st_ino, S_IFCHR)
        self.host_pid, self.fd, self.st = host_pid, fd, st

    def getattr(self) -> Stat:
        st = self.st
        return Stat(dev=st.st_dev, ino=st.st_ino, mode=st.st_mode, nlink=st.st_nlink, uid=st.st_uid,
                    gid=st.st_gid, rdev=st.st_rdev, size=st.st_size, blocks=st.st_blocks,
                    atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)  # fmt: skip

    def open_host_fd(self, flags: int) -> int:
        if (self.st.st_mode & 0o170000) == 0o140000:
            raise SyscallError(errno.ENXIO, "cannot open a socket")
        try:
            return os.open(
                f"/proc/{self.host_pid}/fd/{self.fd}", (flags & HOST_OPEN_MASK) | os.O_CLOEXEC
            )
        except OSError as exc:
            raise SyscallError(exc.errno or errno.ENOENT, "cannot reopen the descriptor")


_HOST_OBJECTS: HostObjects | None = None


class _LazyFds(Mapping[int, bytes]):
    """The fd table of a process, read only when /proc/<pid>/fd (or status) is listed: most
    procfs lookups (``/proc/self/exe``) never need it."""

    def __init__(self, libos: Kernel, p: Process) -> None:
        self._libos, self._p = libos, p
        self._table: dict[int, bytes] | None = None

    def _get(self) -> dict[int, bytes]:
        if self._table is None:
            self._table = _fd_texts(self._libos, self._p)
        return self._table

    def __getitem__(self, fd: int) -> bytes:
        return self._get()[fd]

    def __iter__(self) -> Iterator[int]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _fd_location(libos: Kernel, p: Process):  # type: ignore[no-untyped-def]
    def get(fd: int) -> Location | None:
        global _HOST_OBJECTS
        try:
            ref, st = libos.objects.lookup_stat(p.host_pid, fd)
        except OSError:
            return None
        if ref is not None:
            return ref.location
        if _HOST_OBJECTS is None:
            _HOST_OBJECTS = HostObjects()
        inode = HostObjectInode(_HOST_OBJECTS, p.host_pid, fd, st)
        return Location(libos.mounts.root_mount, inode, None, b"%d" % fd)

    return get


def _host_stat_fields(host_pid: int) -> tuple[int, int, int]:
    try:
        fd = os.open(f"/proc/{host_pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 4096)
        finally:
            os.close(fd)
        rest = text[text.rindex(b")") + 2 :].split()
        return int(rest[2]), int(rest[3]), int(rest[17])  # pgrp, session, num_threads
    except (OSError, ValueError, IndexError):
        return 0, 0, 1


def process_info(libos: Kernel, p: Process) -> ProcessInfo:
    def ids() -> tuple[int, int, int]:
        pgrp_host, sid_host, threads = _host_stat_fields(p.host_pid)
        return _ns_pid(libos, pgrp_host), _ns_pid(libos, sid_host), threads

    return ProcessInfo(
        pid=p.pid,
        ppid=p.ppid,
        tgid=p.pid,
        comm=p.comm,
        cmdline=b"".join(a + b"\0" for a in p.argv),
        environ=b"".join(e + b"\0" for e in p.envp),
        memory=functools.partial(_memory, p),
        arg_area=p.arg_area,
        exe=p.exe_path,
        cwd=p.cwd.absolute_path(p.root),
        root=p.root.absolute_path(),
        umask=p.umask,
        cred=(cred := leader_cred(libos, p)),
        uid=cred.euid,
        gid=cred.egid,
        cred_of=functools.partial(_thread_cred, libos, p),
        fds=_LazyFds(libos, p),
        host_pid=p.host_pid,
        maps=lambda: _maps(p.host_pid),
        fd_location=_fd_location(libos, p),
        ids=ids,
        tasks=functools.cache(lambda: host_tids(p.host_pid)),
        open_host=functools.partial(_open_host, p),
        state_of=functools.partial(_state, libos, p.host_pid),
    )


def _memory(p: Process, addr: int, size: int) -> bytes:
    """Up to ``size`` bytes of the process's memory at ``addr`` (short at an unmapped page,
    empty once it has exited), as the kernel's ``access_remote_vm`` reads them for procfs."""
    try:
        return p.mem.read_some(addr, size)
    except OSError:
        return b""


def leader_cred(libos: Kernel, p: Process) -> Cred:
    """A process's credentials as Linux shows them: its main thread's."""
    leader = libos.proctable.tasks.get(p.host_pid)
    return leader.cred if leader is not None else p.cred


def _thread_cred(libos: Kernel, p: Process, host_dir: str) -> Cred:
    """The credentials of the thread the host keeps at ``/proc/<host_pid>/<host_dir>``."""
    tid = int(host_dir.split("/")[1]) if host_dir else p.host_pid
    task = libos.proctable.tasks.get(tid)
    return task.cred if task is not None else p.cred


def _state(libos: Kernel, host_pid: int, host_dir: str) -> str:
    """The state Linux would show of a thread the host keeps at ``/proc/<host_pid>/<host_dir>``.

    The host's own letter, except for a call the LibOS is serving: the thread then waits in
    the kernel for the supervisor's answer, uninterruptibly once the call was received (the
    filter's WAIT_KILLABLE_RECV), so the host shows ``D``. Natively the thread would be
    running the call (the one being served right now is the reader of this very file) or
    sleeping in it (a call the loop finishes later, such as a blocking accept), which
    is ``S``. Until the supervisor receives the call, and again after it was received until
    a signal arrives, the host shows ``S`` itself; the killable wait (``D``) starts when a
    signal interrupts the interruptible one after the call was received."""
    base = f"/proc/{host_pid}/{host_dir}"
    tid = int(host_dir.split("/")[1]) if host_dir else host_pid
    current = libos.current
    if current is not None and current.tid == tid:
        return "R"
    # where it sleeps is read before and after its state: the thread may move between reads
    wchan = _wchan(base)
    try:
        text = read_proc(base + "stat")
        state = chr(text[text.rindex(b")") + 2])
    except (OSError, ValueError, IndexError):
        return "X"  # reaped between the lookup and now
    if state != "D":
        return state
    # "seccomp_do_user_notification" (with a compiler suffix such as ".isra.0")
    if wchan.startswith(_USER_NOTIF) or _wchan(base).startswith(_USER_NOTIF):
        return "S"
    return state  # a real uninterruptible sleep (vfork's parent, a slow disk)


_USER_NOTIF = b"seccomp_do_user_notification"


def _wchan(base: str) -> bytes:
    try:
        return read_proc(base + "wchan")
    except OSError:
        return b""


_T = TypeVar("_T")


def net_view(libos: Kernel) -> NetView:
    """How ``/proc/sys/net`` is looked at for the program reading it: on the host's network
    the supervisor's own view is the program's; an instance with a network of its own is
    looked at from the reader's network namespace (OSError, so nothing shown, if the
    supervisor cannot join it: it needs CAP_SYS_ADMIN, which it has when run by root)."""

    def view(look: Callable[[], _T]) -> _T:
        if libos.spec.network == "host":
            return look()
        if libos.current is None:
            raise OSError(errno.ESRCH, "no reader")
        from occlum.platform.netns import in_netns_of

        return in_netns_of(libos.current.process.host_pid, look)

    return view


def initial_groups(host_pid: int) -> tuple[int, ...]:
    """The supplementary groups a process started with, as the instance sees them: the host's
    ids through the process's gid map (unmapped ones show as the overflow gid, 65534)."""
    try:
        status = read_proc(f"/proc/{host_pid}/status")
        at = status.index(b"\nGroups:") + 8
        host = [int(g) for g in status[at : status.index(b"\n", at)].split()]
        ranges = [
            [int(x) for x in line.split()]
            for line in read_proc(f"/proc/{host_pid}/gid_map").splitlines()
        ]
    except (OSError, ValueError):
        return ()
    out = []
    for g in host:
        inside = 65534
        for first_in, first_out, count in ranges:
            if first_out <= g < first_out + count:
                inside = first_in + g - first_out
                break
        out.append(inside)
    return tuple(sorted(out))


def read_proc(path: str) -> bytes:
    """A small file of the host's /proc, read in one call."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def host_tids(host_pid: int) -> dict[int, int]:
    """LibOS tid -> host tid of every thread of a process: a thread's LibOS id is the
    innermost ``NSpid`` of its host status (the instance is a PID namespace of its own)."""
    out: dict[int, int] = {}
    try:
        names = os.listdir(f"/proc/{host_pid}/task")
    except OSError:
        return out
    for name in names:
        try:
            fd = os.open(f"/proc/{host_pid}/task/{name}/status", os.O_RDONLY | os.O_CLOEXEC)
            try:
                text = os.read(fd, 4096)
            finally:
                os.close(fd)
            at = text.index(b"\nNSpid:") + 7
            out[int(text[at : text.index(b"\n", at)].split()[-1])] = int(name)
        except (OSError, ValueError, IndexError):
            continue  # the thread has just exited
    return out


def _open_host(p: Process, name: str, flags: int) -> int:
    """The host's ``/proc/<host pid>/<name>`` of ``p`` itself, opened here for the program.

    The file belongs to whatever task had the pid when it was opened: if ``p`` is still
    running afterwards, that was ``p`` (a pid is not reused while its process lives)."""
    try:
        fd = os.open(f"/proc/{p.host_pid}/{name}", flags | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError(errno.ESRCH if exc.errno == errno.ENOENT else exc.errno or errno.EIO)
    poller = select.poll()
    if p.pidfd >= 0:
        poller.register(p.pidfd, select.POLLIN)
    if p.pidfd < 0 or poller.poll(0):
        os.close(fd)
        raise SyscallError(errno.ESRCH, "the process has exited")
    return fd


def _ns_pid(libos: Kernel, host_pid: int) -> int:
    p = libos.proctable.procs.get(host_pid)
    if p is not None:
        return p.pid
    return 1 if host_pid == libos.proctable.init_pid else 0


def _maps(host_pid: int) -> bytes:
    """The host's maps with host paths hidden: the loader stub and deleted memfds."""
    try:
        with open(f"/proc/{host_pid}/maps", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return b""
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith(b"/") and not parts[5].startswith(b"/memfd:"):
            line = b" ".join(parts[:5]) + b" " * 10 + b"[occlum]"
        out.append(line)
    return b"\n".join(out) + b"\n"
