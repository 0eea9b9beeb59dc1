"""What the descriptors a program holds refer to, on the LibOS side.

A donated descriptor is a real host descriptor (a memfd of the page cache, a confined host
file, a directory handle); the program may dup, pass or close it natively. The LibOS therefore
finds its object by the *identity of the host object* behind a descriptor — ``(st_dev, st_ino)``
of ``/proc/PID/fd/N`` — which the program cannot forge, instead of by descriptor number.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from occlum.platform import native
from occlum.platform.fdbudget import close_slow
from occlum.vfs.dirfile import OpenDirectory
from occlum.vfs.path import Location


@dataclass(slots=True, eq=False)
class FileRef:
    location: Location
    directory: OpenDirectory | None = None  # set for directory handles
    path_only: bool = False  # an O_PATH handle


PRUNE_AT = 8192

# A mask for watches that only mark an object's life: a watch is removed when the last
# reference to its inode goes away, whatever mask it was given (inotify requires one event).
_LIFE_MASK = native.IN_DELETE_SELF


class ObjectRegistry:
    """Host object identity -> LibOS object, for every object donated and still alive.

    An entry must outlive every reference to its host object, and references the LibOS cannot
    list exist: a descriptor whose ``SECCOMP_ADDFD`` has not happened yet (the LibOS holds it),
    one in flight in an ``SCM_RIGHTS`` message (the socket holds it, no process does), one
    kept only by a mapping. The kernel knows them all: an unlinked object (a page-cache memfd,
    a directory handle) carries an inotify watch, and the kernel removes a watch exactly when
    the last reference to its inode goes away (``IN_IGNORED``). Pruning drops the entries whose
    watch is gone, read from the inotify descriptor's ``fdinfo`` (complete even after a queue
    overflow lost events).

    A linked host file (hostfs) gets no watch: its watch would stay until the file is deleted
    on the host, pinning the inode and using up the host user's inotify watches on a walk of
    a large tree. Such an entry, and an unlinked object that could not be watched, lives while
    a process of the instance holds the object (``live_keys``, a scan of their descriptor
    tables) or while it is being registered; a hostfs descriptor in flight in an
    ``SCM_RIGHTS`` message during a pruning is the one case that loses its entry (its
    ``fstat`` then shows the host file as it is).
    """

    __slots__ = (
        "_by_key", "_counter", "_inotify", "_watch", "live_keys", "namer", "prune_at", "scratch_fd"
    )  # fmt: skip

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int], FileRef] = {}
        self._watch: dict[tuple[int, int], int] = {}  # key -> inotify wd, -1 if unwatched
        self._inotify = -1
        self.prune_at = PRUNE_AT
        # names host objects the LibOS did not hand out but knows (a pseudo-terminal slave a
        # program opened natively with TIOCGPTPEER), from their host stat; set by the kernel
        self.namer: Callable[[os.stat_result], FileRef | None] | None = None
        # identities of every host object the instance's processes hold now (set by the
        # kernel): the liveness of objects that carry no watch
        self.live_keys: Callable[[], set[tuple[int, int]]] | None = None
        self._counter = 0
        self.scratch_fd = -1  # a directory on a private tmpfs, for directory handles

    def register(self, host_fd: int, ref: FileRef) -> None:
        """Remember ``ref`` as the object behind host descriptor ``host_fd`` (still held by
        the caller), before that descriptor reaches any program."""
        st = os.fstat(host_fd)
        key = (st.st_dev, st.st_ino)
        known = self._by_key.get(key)
        if (
            known is not None
            and known.location.inode is ref.location.inode
            and self._watch[key] >= 0
        ):
            # a new open of a page-cache file: the same memfd as at an earlier open, watched
            # then, and alive since (the cache or a program holds it: a memfd made again for
            # the file gets a new inode number, so a new key); only the reference changes.
            # inotify_add_watch through /proc/self/fd cost as much as the rest of the open.
            self._by_key[key] = ref
            return
        wd = -1
        if st.st_nlink == 0:  # see the class's docstring: a linked file's watch never goes
            if self._inotify < 0:
                self._inotify = native.inotify_init()
            try:
                # the same inode gives the same wd; an inode number used again, a new one
                wd = native.inotify_add_watch(
                    self._inotify, f"/proc/self/fd/{host_fd}".encode(), _LIFE_MASK
                )
            except OSError:
                pass
        self._by_key[key] = ref
        self._watch[key] = wd
        if len(self._by_key) > self.prune_at:
            self.prune(keep=key)

    def live_watches(self) -> set[int]:
        """The wds of the watches still in place: their objects are referenced somewhere."""
        self._drain()
        live: set[int] = set()
        with open(f"/proc/self/fdinfo/{self._inotify}", "rb") as f:
            for line in f:
                if line.startswith(b"inotify wd:"):
                    live.add(int(line[11 : line.index(b" ", 11)], 16))  # printed in hex
        return live

    def _drain(self) -> None:
        """Discard the queued events: fdinfo, not the queue, says which objects live."""
        while True:
            try:
                os.read(self._inotify, 65536)
            except BlockingIOError:
                return

    def prune(self, keep: tuple[int, int] | None = None) -> None:
        """Forget the objects nothing references any more (programs close their descriptors
        natively, so an entry is not dropped at a close); the next pruning waits for twice as
        many entries. ``keep`` is the object being registered, not yet in any process."""
        watch = self._watch
        live = self.live_watches() if self._inotify >= 0 else set()
        dead = [k for k, wd in watch.items() if wd >= 0 and wd not in live]
        if self.live_keys is not None and any(wd < 0 for wd in watch.values()):
            held = self.live_keys()
            dead += [k for k, wd in watch.items() if wd < 0 and k not in held and k != keep]
        for k in dead:
            del self._by_key[k], watch[k]
        self.prune_at = max(PRUNE_AT, 2 * len(self._by_key))

    def close(self) -> None:
        if self._inotify >= 0:
            close_slow(self._inotify)
            self._inotify = -1
        self._by_key.clear()
        self._watch.clear()

    def lookup(self, host_pid: int, fd: int, fd_dir: int = -1) -> FileRef | None:
        """The LibOS object behind descriptor ``fd`` of a process, or None for host-only objects
        (pipes, sockets, eventfds). Raises OSError if ``fd`` is not open. ``fd_dir``: the
        process's ``/proc/PID/fd`` when the caller holds it open (one name to look up)."""
        return self.lookup_stat(host_pid, fd, fd_dir)[0]

    def lookup_stat(
        self, host_pid: int, fd: int, fd_dir: int = -1
    ) -> tuple[FileRef | None, os.stat_result]:
        """Like :meth:`lookup`, also giving the host object's own stat (sizes and times of
        page-cache memfds and hostfs files change by native writes)."""
        if fd_dir >= 0:
            st = os.stat(str(fd), dir_fd=fd_dir)
        else:
            st = os.stat(f"/proc/{host_pid}/fd/{fd}")
        key = (st.st_dev, st.st_ino)
        ref = self._by_key.get(key)
        if ref is None and self.namer is not None:
            ref = self.namer(st)
            if ref is not None:
                self._by_key[key] = ref
        return ref, st

    def make_dir_handle(self) -> int:
        """A directory descriptor for a LibOS directory: an empty, already removed directory of
        a private tmpfs, so that native read/write/mmap/ftruncate fail as on a directory
        (EISDIR, ENODEV, EINVAL) while its identity leads back here."""
        self._counter += 1
        name = f"d{self._counter}"
        os.mkdir(name, 0o500, dir_fd=self.scratch_fd)
        try:
            return os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.scratch_fd
            )
        finally:
            os.rmdir(name, dir_fd=self.scratch_fd)

    def make_path_handle(self) -> int:
        """A descriptor for an O_PATH open: a fresh anonymous inode opened with neither read nor
        write access (access mode 3), so read and write fail with EBADF as on O_PATH
        descriptors. (A real O_PATH descriptor cannot be installed by SECCOMP_ADDFD.)"""
        mfd = os.memfd_create("occlum-path", os.MFD_CLOEXEC)
        try:
            return os.open(f"/proc/self/fd/{mfd}", os.O_ACCMODE | os.O_CLOEXEC)
        finally:
            os.close(mfd)
