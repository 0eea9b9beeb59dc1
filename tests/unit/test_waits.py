"""kernel/waits.py: how a deferred call's wait ends, driven as the serving loop drives it
(its selector, then the timer), with this test process standing for the waiting program."""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from occlum.kernel.api import Deferred, Result
from occlum.kernel.waits import ERESTARTSYS, Waits
from occlum.platform.memory import TaskMemory


class Loop:
    """The loop's part: its selector, its answers, which notifications are still valid."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.answers: list[tuple[int, Result]] = []
        self.valid = True
        self.waits = Waits(self.sel, self.answer, lambda nid: self.valid)

    def answer(self, nid: int, res: Result) -> Result:
        self.answers.append((nid, res))
        return res

    def events(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            self.waits.ready(key.data, key.fd)


def task(pid: int, notif_id: int = 7) -> Any:
    pidfd = os.pidfd_open(pid)
    return SimpleNamespace(
        process=SimpleNamespace(pidfd=pidfd, host_pid=pid),
        tid=threading.get_native_id() if pid == os.getpid() else pid,
        notif_id=notif_id,
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def recv_one(mem: TaskMemory, sock: socket.socket) -> int:
    try:
        return len(sock.recv(64, socket.MSG_DONTWAIT))
    except BlockingIOError:
        return -errno.EAGAIN


@pytest.fixture
def pair() -> Any:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield a, b
    a.close()
    b.close()


def test_readable_socket_is_answered_and_everything_closed(pair: Any) -> None:
    a, b = pair
    loop, t = Loop(), task(os.getpid())
    before = open_fds()
    assert isinstance(loop.waits.until_readable(t, a, 0, recv_one), Deferred)
    assert loop.waits.pending and len(loop.sel.get_map()) == 2
    loop.events(0)
    assert loop.answers == []  # nothing there yet
    b.send(b"abc")
    loop.events(1.0)
    assert loop.answers == [(7, 3)]
    assert not loop.waits.pending and len(loop.sel.get_map()) == 0
    assert open_fds() == before  # its duplicates of the socket and pidfd, its memory
    os.close(t.process.pidfd)


def test_eagain_keeps_waiting(pair: Any) -> None:
    a, b = pair
    loop, t = Loop(), task(os.getpid())
    taken = [False]

    def first_taken(mem: TaskMemory, sock: socket.socket) -> int:
        if not taken[0]:  # another thread was quicker
            taken[0] = True
            sock.recv(64)
            return -errno.EAGAIN
        return recv_one(mem, sock)

    loop.waits.until_readable(t, a, 0, first_taken)
    b.send(b"x")
    loop.events(1.0)
    assert loop.answers == [] and loop.waits.pending
    b.send(b"yz")
    loop.events(1.0)
    assert loop.answers == [(7, 2)]
    os.close(t.process.pidfd)


def test_timeout_answers_eagain(pair: Any) -> None:
    a, _ = pair
    loop, t = Loop(), task(os.getpid())
    loop.waits.until_readable(t, a, 0.02, recv_one)
    assert loop.waits.timeout() <= 0.02
    loop.waits.tick()
    assert loop.answers == []
    time.sleep(0.03)
    loop.waits.tick()
    assert loop.answers == [(7, -errno.EAGAIN)]
    os.close(t.process.pidfd)


@pytest.mark.parametrize(
    ("status", "answered"),
    [
        ("SigPnd:\t0000000000000200\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n", True),
        ("SigPnd:\t0000000000000000\nShdPnd:\t0000000000000200\nSigBlk:\t0000000000000000\n", True),
        (
            "SigPnd:\t0000000000000200\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000200\n",
            False,
        ),
    ],
    ids=["thread", "process", "blocked"],
)
def test_pending_signal_answers_erestartsys(
    pair: Any, tmp_path: Path, status: str, answered: bool
) -> None:
    a, _ = pair
    loop, t = Loop(), task(os.getpid())
    loop.waits.until_readable(t, a, 0, recv_one)
    fake = tmp_path / "status"
    fake.write_text(status)
    loop.waits.pending[0].status_path = str(fake)
    loop.waits.next_tick = 0.0  # the timer is due
    loop.waits.tick()
    assert loop.answers == ([(7, -ERESTARTSYS)] if answered else [])
    assert bool(loop.waits.pending) is not answered
    loop.waits.close_all()
    os.close(t.process.pidfd)


def test_this_threads_own_signals(pair: Any) -> None:
    """The real status file: a signal this thread blocks is pending, yet ends nothing."""
    a, _ = pair
    loop, t = Loop(), task(os.getpid())
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
        loop.waits.until_readable(t, a, 0, recv_one)
        loop.waits.next_tick = 0.0
        loop.waits.tick()
        assert loop.answers == [] and loop.waits.pending
        loop.waits.close_all()
    finally:
        handler = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # discard the pending one
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        signal.signal(signal.SIGUSR2, handler)
    os.close(t.process.pidfd)


def test_thread_gone_ends_without_answer(pair: Any) -> None:
    a, _ = pair
    loop, t = Loop(), task(os.getpid())
    before = open_fds()
    loop.waits.until_readable(t, a, 0, recv_one)
    loop.valid = False
    loop.waits.next_tick = 0.0
    loop.waits.tick()
    assert loop.answers == [] and not loop.waits.pending
    assert open_fds() == before
    os.close(t.process.pidfd)


def test_process_exit_ends_without_answer(pair: Any) -> None:
    a, _ = pair
    child = subprocess.Popen(["sleep", "30"])
    try:
        loop, t = Loop(), task(child.pid)
        loop.waits.until_readable(t, a, 0, recv_one)
        loop.events(0)
        assert loop.waits.pending
        child.kill()
        child.wait()
        loop.events(1.0)  # its pidfd
        assert loop.answers == [] and not loop.waits.pending
        os.close(t.process.pidfd)
    finally:
        child.kill()
        child.wait()


def test_readable_after_the_call_went_takes_nothing(pair: Any) -> None:
    a, b = pair
    loop, t = Loop(), task(os.getpid())
    loop.waits.until_readable(t, a, 0, recv_one)
    loop.valid = False  # its process or thread is gone, the pidfd not seen yet
    b.send(b"late")
    w = loop.waits.pending[0]
    loop.waits.ready(w, w.sock.fileno())
    assert loop.answers == [] and not loop.waits.pending
    assert a.recv(64, socket.MSG_DONTWAIT) == b"late"
    os.close(t.process.pidfd)
