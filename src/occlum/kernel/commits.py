"""Commits of the protected volumes, made in slices between served calls.

A commit of a SEFS volume reads back, hashes, seals and writes what changed; after a program
wrote 200 MB that takes seconds.  Made inline on the serving loop it would stop every process
of the instance meanwhile.  Instead a commit is made in slices of a few milliseconds
(:meth:`FileSystem.start_commit <occlum.vfs.mount.FileSystem.start_commit>`), one per turn of
the loop, which serves a waiting call between two slices (``kernel/libos.py``).

A call that promises durability (``fsync``, ``fdatasync``, ``syncfs``, ``sync``,
``msync(MS_SYNC)``) is answered only once a commit that *started after the call* has ended:
when its commit is over in one slice (the common case: a database page), at once; otherwise
the call is deferred (its thread sleeps in the kernel, :class:`~occlum.kernel.api.Deferred`)
and answered when the commit is durable, while the other processes are served.  Per volume one
commit runs at a time; the calls that arrive meanwhile wait for the next one, which starts when
it ends and serves all of them.  Write-backs (every few seconds, after a last close) are
commits nobody waits for: a failure is logged once (``FileSystems.written_back``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from occlum.abi.errors import SyscallError
from occlum.kernel.api import Deferred, Result
from occlum.vfs.inode import Inode
from occlum.vfs.mount import CommitRun, FileSystem

__all__ = ["Commits", "writeback_interval"]

DEFERRED = Deferred("(answered when the commit is durable)")


class _Waiter:
    """A call waiting for commits of one or more volumes; ``done`` is its answer when they all
    end well (or whatever they end with, when ``report`` is off)."""

    __slots__ = ("done", "error", "inode", "nid", "pending", "report")

    def __init__(self, nid: int, inode: Inode | None, done: Result, report: bool) -> None:
        self.nid, self.inode, self.done, self.report = nid, inode, done, report
        self.pending = 0  # volumes whose commit it still waits for
        self.error: SyscallError | None = None


class _Volume:
    """The commit under way on one volume, who waits for it, and who waits for the next."""

    __slots__ = ("again", "again_durable", "background", "next", "run", "waiters")

    def __init__(self, run: CommitRun, waiters: list[_Waiter], background: bool) -> None:
        self.run = run
        self.waiters = waiters
        self.background = background  # a write-back asked for it: its failure is logged
        self.next: list[_Waiter] = []
        self.again = False  # a write-back asked while it ran: one more commit after it
        self.again_durable = False  # ... and one that is to be durable (not only after closes)


class Commits:
    """The commits under way.  ``answer`` is the loop's answer path; ``written_back`` hears
    how a write-back ended (None: well)."""

    def __init__(
        self,
        answer: Callable[[int, Result], object],
        written_back: Callable[[FileSystem, SyscallError | None], None],
    ) -> None:
        self.answer = answer
        self.written_back = written_back
        self._volumes: dict[FileSystem, _Volume] = {}

    @property
    def active(self) -> bool:
        """Whether a commit is under way (the loop then serves calls between its slices)."""
        return bool(self._volumes)

    def wait(
        self,
        nid: int,
        volumes: list[FileSystem],
        inode: Inode | None,
        *,
        done: Result = 0,
        report: bool = True,
    ) -> Result:
        """The call ``nid`` wants ``volumes`` committed: ``inode``'s contents and the tree
        (None: everything).  Its answer: ``done``, or with ``report``, the error of a failed
        commit or ENOSPC for contents that did not fit (``FileSystem.unstored``) -- now if
        every commit is over in one slice (raised, for an error), else :data:`DEFERRED`."""
        w = _Waiter(nid, inode, done, report)
        for fs in volumes:
            v = self._volumes.get(fs)
            if v is not None:
                v.next.append(w)  # the commit under way may have read the file already
                w.pending += 1
                continue
            run = fs.start_commit(inode)
            if run.step():
                self._outcome(w, fs, run)
            else:
                self._volumes[fs] = _Volume(run, [w], background=False)
                w.pending += 1
        if w.pending:
            return DEFERRED
        if w.error is not None and report:
            raise w.error
        return done

    def background(self, fs: FileSystem, *, durable: bool = True) -> None:
        """Commit ``fs`` with nobody waiting (write-back); after the one under way, if any.
        Not ``durable`` (after last closes): the volume may leave its durability to the next
        durable commit (:meth:`FileSystem.start_writeback`); the periodic write-back is."""
        v = self._volumes.get(fs)
        if v is not None:
            v.again = True
            v.again_durable = v.again_durable or durable
            return
        run = fs.start_commit(None) if durable else fs.start_writeback()
        if run.step():
            self.written_back(fs, run.error)
        else:
            self._volumes[fs] = _Volume(run, [], background=True)

    def written_after_close(self, fs: FileSystem) -> None:
        """:meth:`background`, not durable: the commit after a file's last close."""
        self.background(fs, durable=False)

    def step(self) -> None:
        """One slice of each commit under way; the calls waiting for one that ended are
        answered, and the next commit of that volume starts."""
        for fs, v in list(self._volumes.items()):
            if v.run.step():
                self._ended(fs, v)

    def finish(self) -> None:
        """End every commit under way now (the instance's processes are gone): nobody is
        left to answer, and the exit-time commit takes what the next ones would have."""
        for v in self._volumes.values():
            v.run.finish()
        self._volumes.clear()

    def _ended(self, fs: FileSystem, v: _Volume) -> None:
        run = v.run
        for w in v.waiters:
            self._outcome(w, fs, run)
            w.pending -= 1
            if not w.pending:
                self._answer(w)
        if v.background:
            self.written_back(fs, run.error)
        if not v.next and not v.again:
            del self._volumes[fs]
            return
        # one commit for every call that came meanwhile: of one file if they all synced the
        # same file, else of everything
        inodes = {id(w.inode): w.inode for w in v.next}
        only = next(iter(inodes.values())) if len(inodes) == 1 and not v.again else None
        if v.next or v.again_durable:
            v.run = fs.start_commit(only)
        else:
            v.run = fs.start_writeback()
        v.waiters, v.next = v.next, []
        v.background, v.again, v.again_durable = v.again, False, False

    def _outcome(self, w: _Waiter, fs: FileSystem, run: CommitRun) -> None:
        if not w.report:  # sync, msync: the caller learns nothing, the log does
            self.written_back(fs, run.error)
        if w.error is not None:
            return
        if run.error is not None:
            w.error = run.error
            return
        for why in fs.unstored(w.inode):  # the host is full: these contents stay in memory
            w.error = SyscallError(errno.ENOSPC, why)
            return

    def _answer(self, w: _Waiter) -> None:
        if w.error is not None and w.report:
            self.answer(w.nid, -w.error.errno)
        else:
            self.answer(w.nid, w.done)


def writeback_interval() -> float:
    """Seconds between write-backs: $OCCLUM_WRITEBACK_SECONDS, default 5."""
    try:
        return max(0.1, float(os.environ.get("OCCLUM_WRITEBACK_SECONDS", "5")))
    except ValueError:
        return 5.0
