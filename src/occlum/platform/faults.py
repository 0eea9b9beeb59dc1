"""Where a program crashed: the kernel's own report of unhandled faults (and of the processes its
out-of-memory killer ended), read from ``/dev/kmsg``.

When a process dies of an unhandled SIGSEGV, a general-protection fault or a trap, x86 Linux
logs one line naming the command, the pid, the fault address and the instruction pointer. The
supervisor already knows the host pids of its processes, so it picks out their lines. This
costs nothing while programs run (no tracing), and needs read access to the kernel log (root);
without it crash reports simply lack the address.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass

_SEGV = re.compile(rb"\S+\[(\d+)\]: segfault at ([0-9a-f]+) ip ([0-9a-f]+)")
_TRAP = re.compile(
    rb"traps: \S+\[(\d+)\] (general protection fault|trap [a-z0-9 ]+?) ip:([0-9a-f]+)"
)
# the out-of-memory killer's choice: the group whose limit was reached, the victim's command
# and pid
_OOM = re.compile(rb"oom-kill:.*?,oom_memcg=([^,]*),task_memcg=[^,]*,task=(.*),pid=(\d+),uid=")
_TRAP_SIGNALS = {
    b"general protection fault": signal.SIGSEGV,
    b"trap divide error": signal.SIGFPE,
    b"trap invalid opcode": signal.SIGILL,
    b"trap int3": signal.SIGTRAP,
}


@dataclass(slots=True, frozen=True)
class Fault:
    host_pid: int
    signal: int
    address: int


class FaultLog:
    """A non-blocking reader of new kernel log records; ``fd`` is -1 when unavailable."""

    def __init__(self) -> None:
        # (memory cgroup, host pid, command) of the processes the out-of-memory killer chose,
        # for the LibOS to take
        self.oom_kills: list[tuple[bytes, int, bytes]] = []
        try:
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = -1

    def read(self) -> list[Fault]:
        faults: list[Fault] = []
        while self.fd >= 0:
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError:  # EPIPE: records were overwritten before we read them
                continue
            if not record:
                break
            text = record.split(b";", 1)[-1]
            m = _SEGV.search(text)
            if m:
                faults.append(Fault(int(m[1]), signal.SIGSEGV, int(m[2], 16)))
                continue
            m = _TRAP.search(text)
            if m:
                sig = _TRAP_SIGNALS.get(m[2].strip(), signal.SIGTRAP)
                faults.append(Fault(int(m[1]), sig, int(m[3], 16)))
                continue
            m = _OOM.search(text)
            if m:
                self.oom_kills.append((m[1], int(m[3]), m[2]))
        return faults

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
