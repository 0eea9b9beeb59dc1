"""The process table: the instance's processes and threads, found as they come (a process is
known by its first served call, or when its parent changes what children inherit), their exits,
and the one line that reports a crash.
"""

from __future__ import annotations

import os
import selectors
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace

from occlum.abi.errors import SyscallError
from occlum.kernel.limits import Limits
from occlum.kernel.process import Process, Task
from occlum.kernel.procinfo import initial_groups, read_proc
from occlum.kernel.spec import RunSpec
from occlum.platform.credmarks import CredMarks
from occlum.platform.faults import FaultLog
from occlum.vfs.cred import ROOT, Cred
from occlum.vfs.path import Location, PathOp, resolve

SIGNAMES = {s.value: s.name for s in signal.Signals}
# what an orphan whose credentials cannot be known gets (credentials/marks unavailable)
NOBODY = Cred.user(65534, 65534)


class ProcTable:
    """``root``: the root directory a process with no known parent starts in (the instance's
    mount table changes at the end of the init stage); ``sel``: the loop's selector, where a
    process's pidfd says when it exits."""

    def __init__(
        self,
        spec: RunSpec,
        limits: Limits,
        root: Callable[[], Location],
        sel: selectors.BaseSelector,
    ) -> None:
        self.spec = spec
        self.limits = limits
        self._root = root
        self.sel = sel
        self.procs: dict[int, Process] = {}  # by host tgid
        # host pid -> (program, LibOS pid), kept after exit for crash reports
        self.procs_by_host_pid_ever: dict[int, tuple[bytes, int]] = {}
        self.tasks: dict[int, Task] = {}  # by host tid
        self.by_pid: dict[int, Process] = {}  # by LibOS pid
        self.init_pid = 0  # the host pid of the current tree's init
        self.first_host_pid = 0  # the current tree's first program
        self.spawner_pid = 0  # a started instance's spawner, when it is in the memory cgroup
        self.spawned_by = 0  # a started instance's spawner, always (its children get limits)
        self.faults = FaultLog()
        self.reported: set[int] = set()  # host pids whose crash was reported
        # credentials the kernel remembers across fork (platform/credmarks.py): each distinct
        # Cred a thread took gets a key, the thread a cgroup of that key
        self.marks = CredMarks()
        self.creds_changed = False  # did any thread take credentials other than the first?
        self._cred_keys: dict[Cred, int] = {}
        self._creds: list[Cred] = [ROOT]  # by key; key 0 is never used
        self.warn: Callable[[str, str], None] = lambda key, msg: None

    @staticmethod
    def _status_ids(tid: int) -> tuple[int, int, int]:
        """(Tgid, PPid, the innermost NSpid) of a host thread, from /proc/TID/status."""
        text = read_proc(f"/proc/{tid}/status")
        tgid = int(text[text.index(b"\nTgid:") + 6 : text.index(b"\n", text.index(b"\nTgid:") + 1)])
        ppid = int(text[text.index(b"\nPPid:") + 6 : text.index(b"\n", text.index(b"\nPPid:") + 1)])
        at = text.index(b"\nNSpid:") + 7
        nspid = int(text[at : text.index(b"\n", at)].split()[-1])
        return tgid, ppid, nspid

    def mark(self, tid: int, cred: Cred) -> None:
        """Thread ``tid`` now has ``cred``: mark it so that the children it forks are known to
        have it even when it exits before they meet the LibOS."""
        if not self.creds_changed:
            self.creds_changed = True
            self.marks.open()
        key = self._cred_keys.get(cred)
        if key is None:
            key = self._cred_keys[cred] = len(self._creds)
            self._creds.append(cred)
        try:
            self.marks.mark(tid, key)
        except OSError:
            self.marks.close()  # the safe guess for orphans from now on

    def _marked(self, tid: int) -> Cred | None:
        """The credentials the kernel's mark of ``tid`` names: None when marks are off (or
        nothing was ever changed), the first credentials when it carries none."""
        if not self.creds_changed or not self.marks.base:
            return None
        key = self.marks.key_of(tid)
        return self._creds[key] if key is not None else replace(ROOT, groups=initial_groups(tid))

    def end_marks(self) -> None:
        """The tree ended: its marks go (a next tree starts with the first credentials)."""
        self.marks.close()
        self.creds_changed = False
        self._cred_keys.clear()
        del self._creds[1:]

    def discover(self, tid: int) -> Task | None:
        """A thread we have not seen: a new thread of a known process, or a new process."""
        try:
            tgid, ppid_host, ns_pid = self._status_ids(tid)
            if tgid != tid:
                _tgid, ppid_host, ns_pid = self._status_ids(tgid)
        except (OSError, ValueError):
            return None
        p = self.procs.get(tgid)
        if p is None:
            p = self.new_process(tgid, ns_pid, ppid_host)
            if p is None:
                return None
        p.tids.add(tid)
        marked = self._marked(tid) if tid != tgid else None
        t = Task(tid, p, cred=marked or p.cred)
        self.tasks[tid] = t
        return t

    def new_process(
        self, tgid: int, ns_pid: int, ppid_host: int, forker: Task | None = None, depth: int = 0
    ) -> Process | None:
        """``forker``: the parent's thread that forked it, when known (its credentials are the
        child's; else the parent's latest). A parent alive but not met yet is met first."""
        parent = self.procs.get(ppid_host)
        if parent is None and ppid_host not in (0, self.init_pid, self.spawner_pid) and depth < 16:
            try:
                _tgid, grand, parent_ns_pid = self._status_ids(ppid_host)
                parent = self.new_process(ppid_host, parent_ns_pid, grand, None, depth + 1)
            except (OSError, ValueError):
                parent = None
        root = self._root()
        if parent is None:
            try:
                cwd = resolve(PathOp(root, root, self.spec.cwd.encode()))
            except SyscallError:
                cwd = root
            p = Process(
                tgid, ns_pid, 1 if ppid_host == self.init_pid else 0, root, cwd, self.spec.umask
            )
            p.cred = self._marked(tgid) or self._unknown_lineage(tgid, ppid_host)
        else:
            p = Process(tgid, ns_pid, parent.pid, parent.root, parent.cwd, parent.umask)
            p.exe_path, p.argv, p.envp = parent.exe_path, parent.argv, parent.envp
            p.arg_area = parent.arg_area  # a fork's copy of the memory has them at one place
            p.cred = self._marked(tgid) or (forker.cred if forker is not None else parent.cred)
            p.exe_id = parent.exe_id
        try:
            p.pidfd = os.pidfd_open(tgid)
        except OSError:
            return None
        self.procs[tgid] = p
        self.by_pid[ns_pid] = p
        if parent is None and not self.first_host_pid:
            self.first_host_pid = tgid
        if ppid_host == self.spawner_pid and self.spawner_pid:
            self.limits.before_spawner(tgid)
        if ppid_host == self.spawned_by and self.spawned_by:
            self.limits.limit_spawned(tgid)
        self.sel.register(p.pidfd, selectors.EVENT_READ, p)
        return p

    def _unknown_lineage(self, tgid: int, ppid_host: int) -> Cred:
        """Credentials of a process whose parent is not known, without the kernel's marks: the
        first credentials for a tree's first program, a started instance's programs and every
        process of a tree where none ever changed; else (an orphan whose parent exited before
        it met the LibOS) nobody's, since which ones it inherited cannot be known."""
        first = replace(ROOT, groups=initial_groups(tgid))
        if not self.creds_changed or not self.first_host_pid:
            return first
        if self.spawner_pid and ppid_host == self.spawner_pid:
            return first
        self.warn(
            "orphan-cred",
            f"pid {tgid}: a process whose parent exited before it called the LibOS runs as "
            "nobody (65534): the credentials it inherited cannot be known here",
        )
        return NOBODY

    def settle_children(self, p: Process) -> None:
        """Before ``p`` changes what children inherit (cwd, root, umask, exe), register every
        child it forked that the LibOS has not met yet, with the state it was forked with."""
        for tid in list(p.tids) or [p.host_pid]:
            try:
                kids = [
                    int(x) for x in read_proc(f"/proc/{p.host_pid}/task/{tid}/children").split()
                ]
            except OSError:
                continue
            for kid in kids:
                if kid not in self.procs:
                    try:
                        ns_pid = self._status_ids(kid)[2]
                    except (OSError, ValueError):
                        continue
                    self.new_process(kid, ns_pid, p.host_pid, self.tasks.get(tid))

    def held(self, programs_only: bool = False) -> Iterator[tuple[Process, str, os.stat_result]]:
        """(process, descriptor number, host stat) of every descriptor the instance's
        processes hold; ``programs_only`` skips a process not yet a program (the launcher's or
        the spawner's child before its execve, which holds the supervisor's own descriptors)."""
        for p in list(self.procs.values()):
            if programs_only and not p.exe_path:
                continue
            base = f"/proc/{p.host_pid}/fd"
            try:
                names = os.listdir(base)
            except OSError:
                continue
            for name in names:
                try:
                    yield p, name, os.stat(f"{base}/{name}")
                except OSError:
                    continue

    def live_keys(self) -> set[tuple[int, int]]:
        """(st_dev, st_ino) of every descriptor every process of the instance holds."""
        return {(st.st_dev, st.st_ino) for _p, _name, st in self.held()}

    def settle_all(self) -> None:
        for p in list(self.procs.values()):
            self.settle_children(p)

    def find(self, pid: int) -> Process | None:
        """The process with LibOS pid ``pid``; on a miss, the processes forked natively that
        have made no served call yet are met first."""
        p = self.by_pid.get(pid)
        if p is None:
            self.settle_all()
            p = self.by_pid.get(pid)
        return p

    def find_host(self, host_pid: int) -> Process | None:
        """As :meth:`find`, by host pid."""
        p = self.procs.get(host_pid)
        if p is None:
            self.settle_all()
            p = self.procs.get(host_pid)
        return p

    def process_exited(self, p: Process) -> None:
        if self.faults.fd < 0:  # else the kernel log's record of a kill says it (_report_faults)
            self.limits.check_memory()  # was it the out-of-memory killer?
        self.sel.unregister(p.pidfd)
        self.procs_by_host_pid_ever[p.host_pid] = (p.exe_path, p.pid)
        p.release()
        self.procs.pop(p.host_pid, None)
        if self.by_pid.get(p.pid) is p:
            del self.by_pid[p.pid]
        for tid in p.tids:
            self.tasks.pop(tid, None)

    def forget_threads(self, p: Process, keep: int) -> None:
        """After exec only the thread that called it survives (it becomes the leader)."""
        for tid in list(p.tids):
            if tid != keep and tid != p.host_pid:
                self.tasks.pop(tid, None)
                p.tids.discard(tid)

    def report_faults(self) -> None:
        for f in self.faults.read():
            known = self.known(f.host_pid)
            if known is not None and f.host_pid not in self.reported:
                self.report_crash(f.host_pid, known, f.signal, f.address)
        kills, self.faults.oom_kills = self.faults.oom_kills, []
        mem = self.limits.memory
        for group, host_pid, comm in kills:
            if mem is None or os.path.basename(group) != mem.path.name.encode():
                continue  # another group's limit
            known = self.known(host_pid)
            self.limits.oom_victim = (
                f"{known[0].decode(errors='replace')} (pid {known[1]})"
                if known is not None
                else f"a program ({comm.decode(errors='replace')})"  # never served: unknown
            )
            self.limits.check_memory(killed=True)

    def known(self, host_pid: int) -> tuple[bytes, int] | None:
        p = self.procs.get(host_pid)
        return (p.exe_path, p.pid) if p is not None else self.procs_by_host_pid_ever.get(host_pid)

    def report_crash(
        self, host_pid: int, who: tuple[bytes, int], sig: int, addr: int | None
    ) -> None:
        """One line, whatever the log level: which program, which pid, which signal, where."""
        self.reported.add(host_pid)
        exe, pid = who
        where = f" at {addr:#x}" if addr is not None else ""
        name = SIGNAMES.get(sig, str(sig))
        try:
            os.write(
                2,
                f"occlum: {exe.decode(errors='replace')} (pid {pid}) killed by {name}{where}\n".encode(),
            )
        except OSError:
            pass

    def forget_all(self) -> None:
        """The tree ended: every process of it is gone."""
        for p in list(self.procs.values()):
            self.process_exited(p)
        self.by_pid.clear()
        self.tasks.clear()

    def report_first_crash(self, sig: int) -> None:
        """The tree's first program was killed by ``sig``: say so, unless already said."""
        self.report_faults()  # the kernel's line may still be on its way
        first = self.known(self.first_host_pid)
        if self.first_host_pid not in self.reported and first is not None:
            self.report_crash(self.first_host_pid, first, sig, None)
