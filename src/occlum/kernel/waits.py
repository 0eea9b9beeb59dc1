"""Calls that wait in the serving loop: a served call that cannot be done without blocking
(a blocking ``accept`` or ``recvfrom`` with an address on a Unix socket, ``syscalls/net.py``)
is not answered when its handler returns (:class:`Deferred`); it waits here, in the loop's
own selector, and the loop answers it once the wait is over.

Meanwhile the program's thread sleeps in the kernel where only a fatal signal wakes it (the
filter's WAIT_KILLABLE_RECV). A wait therefore ends in one of four ways:

- its socket is readable: the call is tried again (without blocking) and answered, unless
  another thread of the program took what was there first (EAGAIN), as the program would wait;
- a signal the thread does not block arrives: ERESTARTSYS, so that the kernel runs the
  handler and restarts the call (SA_RESTART) or fails it with EINTR, as for a native call;
- its timeout (``SO_RCVTIMEO``) passes: EAGAIN;
- its process ends (its pidfd is readable), or its thread does (an ``execve`` of another
  thread): nothing to answer.

The socket and the pidfd are in the selector; nothing tells the supervisor of a signal, so
while any call waits the loop wakes at least every :data:`TICK` seconds to look at the
waiting threads' pending signals (``/proc/PID/task/TID/status``). Each wait holds descriptors
of its own (duplicates of the socket and the pidfd, the process's memory), never the
handler's, which close when it returns.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.kernel.api import Deferred, Donate, Result
from occlum.platform.memory import TaskMemory

if TYPE_CHECKING:
    from occlum.kernel.process import Task

ERESTARTSYS = 512  # the kernel's "interrupted: restart if SA_RESTART, else EINTR"
TICK = 0.05  # seconds: how soon a signal ends a wait

# What a waiting call's attempt gives: a value or -errno, or a new descriptor to install
Outcome = int | Donate
Attempt = Callable[[TaskMemory, socket.socket], Outcome]

DEFERRED = Deferred("(answered when the socket is ready)")


class Wait:
    """One call waiting for its socket: what to try once it is readable, and for whom."""

    __slots__ = ("attempt", "deadline", "done", "mem", "notif_id", "pidfd", "sock", "status_path")

    def __init__(
        self,
        notif_id: int,
        status_path: str,
        pidfd: int,
        mem: TaskMemory,
        sock: socket.socket,
        deadline: float | None,
        attempt: Attempt,
    ) -> None:
        self.notif_id, self.status_path = notif_id, status_path
        self.pidfd, self.mem, self.sock = pidfd, mem, sock
        self.deadline, self.attempt = deadline, attempt
        self.done = False


class Waits:
    """The calls waiting in the loop's selector ``sel``. ``answer`` is the loop's own answer
    path (a value, -errno or a descriptor to donate); ``valid`` says whether a notification
    still waits for its answer."""

    def __init__(
        self,
        sel: selectors.BaseSelector,
        answer: Callable[[int, Result], object],
        valid: Callable[[int], bool],
    ) -> None:
        self.sel = sel
        self.answer = answer
        self.valid = valid
        self.pending: list[Wait] = []
        self.next_tick = 0.0

    def __bool__(self) -> bool:
        return bool(self.pending)

    def until_readable(
        self, t: Task, sock: socket.socket, timeout: float, attempt: Attempt
    ) -> Deferred:
        """Defer the call ``t`` is making until ``sock`` (the handler's, not kept) is readable;
        ``timeout`` seconds at most (0: no limit). The handler returns what this returns."""
        p = t.process
        opened: list[int] = []
        try:
            opened.append(os.dup(p.pidfd))
            mem = TaskMemory(p.host_pid, opened[0])
            opened.append(mem.fd)
            opened.append(os.dup(sock.fileno()))
        except OSError as exc:
            for fd in opened:
                os.close(fd)
            raise SyscallError(exc.errno or errno.ENOMEM, "cannot wait for the socket")
        now = time.monotonic()
        w = Wait(
            t.notif_id,
            f"/proc/{p.host_pid}/task/{t.tid}/status",
            opened[0],
            mem,
            socket.socket(fileno=opened[2]),
            now + timeout if timeout > 0 else None,
            attempt,
        )
        self.sel.register(w.sock, selectors.EVENT_READ, w)
        self.sel.register(w.pidfd, selectors.EVENT_READ, w)
        if not self.pending:
            self.next_tick = now + TICK
        self.pending.append(w)
        return DEFERRED

    def timeout(self) -> float:
        """Seconds the loop may block before :meth:`tick` is due."""
        due = self.next_tick
        for w in self.pending:
            if w.deadline is not None and w.deadline < due:
                due = w.deadline
        return max(0.0, due - time.monotonic())

    def ready(self, w: Wait, fd: int) -> None:
        """The selector found ``fd`` of ``w`` readable: its process ended, or its socket has
        something."""
        if w.done:
            return  # ended by another of its descriptors in the same round
        if fd == w.pidfd or not self.valid(w.notif_id):
            self._end(w, None)  # the process is gone, or its thread was killed
            return
        # if another thread of the program took the client first, a blocking accept waits on
        # for the next one, as the program would
        res = w.attempt(w.mem, w.sock)
        if res != -errno.EAGAIN:
            self._end(w, res)

    def tick(self) -> None:
        """What the selector cannot say: pending signals, timeouts, threads gone."""
        now = time.monotonic()
        if now < self.next_tick and all(
            w.deadline is None or now < w.deadline for w in self.pending
        ):
            return
        for w in list(self.pending):
            if not self.valid(w.notif_id):
                self._end(w, None)
            elif _signal_pending(w.status_path):
                self._end(w, -ERESTARTSYS)
            elif w.deadline is not None and now >= w.deadline:
                self._end(w, -errno.EAGAIN)
        self.next_tick = now + TICK

    def close_all(self) -> None:
        """Drop every wait unanswered (its processes are gone)."""
        for w in list(self.pending):
            self._end(w, None)

    def _end(self, w: Wait, res: Outcome | None) -> None:
        """Stop waiting and answer with ``res`` (None: nobody to answer). The wait's duplicate
        of the socket is closed before the answer: once the program runs on, it may close the
        socket and bind its name again, which a reference left here would keep taken
        (EADDRINUSE, or a connect that succeeds)."""
        w.done = True
        self.pending.remove(w)
        self.sel.unregister(w.sock)
        self.sel.unregister(w.pidfd)
        w.sock.close()
        try:
            if res is not None:
                self.answer(w.notif_id, res)
        finally:
            w.mem.close()
            os.close(w.pidfd)


def _signal_pending(status_path: str) -> bool:
    """Whether a signal the thread does not block waits for it (or for its process)."""
    try:
        fd = os.open(status_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return False
    fields: dict[bytes, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(b":")
        if key in (b"SigPnd", b"ShdPnd", b"SigBlk"):
            fields[key] = int(value, 16)
    pending = fields.get(b"SigPnd", 0) | fields.get(b"ShdPnd", 0)
    return bool(pending & ~fields.get(b"SigBlk", 0))
