"""Which LibOS credentials a process was forked with, as the kernel remembers it.

``fork`` is native, and the LibOS meets a process at its first served call. A child whose
parent has exited by then has lost its parent (it was reparented), and with it the only way to
know which credentials it inherited: a user's process that forks and exits (a daemon's double
fork, or an attacker's) would leave a child the LibOS could not tell from root's.

So every thread whose LibOS credentials differ from the tree's first ones is put in a cgroup of
its own credentials, in a named cgroup v1 hierarchy with no controller (``name=occlum``): the
kernel copies a thread's cgroup into every child it forks, programs can neither see nor leave
it (they have no cgroup file system), and moving a thread there costs about 2 ms, paid only
when credentials change. A process met without a known parent is then looked up by its own
cgroup: none (the hierarchy's root) means the first credentials.

The hierarchy is mounted once per host at ``/run/occlum/cred`` and shared; each LibOS uses a
directory of its own below it and removes it at the end. Without root (no cgroup mount in a
user namespace) :meth:`CredMarks.open` says so and the kernel falls back on a safe guess.
"""

from __future__ import annotations

import contextlib
import errno
import os

from occlum.platform import native

HIERARCHY = "occlum"
MOUNT_POINT = "/run/occlum/cred"


def _mounted(where: str) -> bool:
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                if fields[4] == where.encode() and b"name=" + HIERARCHY.encode() in line:
                    return True
    except OSError:
        pass
    return False


class CredMarks:
    """Cgroup marks of credential keys (small integers the kernel's registry hands out)."""

    def __init__(self) -> None:
        self.base = ""  # this LibOS's directory in the hierarchy; "" when marks are off
        self._made: set[int] = set()

    def open(self) -> bool:
        """Mount (or reuse) the hierarchy and make this LibOS's directory; False if the host
        does not let us (not root, no cgroup v1)."""
        try:
            if not _mounted(MOUNT_POINT):
                os.makedirs(MOUNT_POINT, exist_ok=True)
                native.mount(b"cgroup", MOUNT_POINT.encode(), b"cgroup", 0,
                             b"none,name=" + HIERARCHY.encode())  # fmt: skip
            self._sweep()
            base = f"{MOUNT_POINT}/{os.getpid()}"
            os.makedirs(base, exist_ok=True)
        except OSError:
            return False
        self.base = base
        return True

    def _sweep(self) -> None:
        """Remove the directories of LibOS supervisors that are gone (killed with -9)."""
        for name in os.listdir(MOUNT_POINT):
            if name.isdigit() and not os.path.exists(f"/proc/{name}"):
                self._remove_tree(f"{MOUNT_POINT}/{name}")

    @staticmethod
    def _remove_tree(path: str) -> None:
        with contextlib.suppress(OSError):
            for entry in os.scandir(path):
                if entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(entry.path)
            os.rmdir(path)

    def mark(self, tid: int, key: int) -> None:
        """Put thread ``tid`` in the cgroup of credential ``key``; its children will be too."""
        if not self.base:
            return
        where = f"{self.base}/{key}"
        if key not in self._made:
            os.makedirs(where, exist_ok=True)
            self._made.add(key)
        try:
            with open(f"{where}/tasks", "w") as f:
                f.write(str(tid))
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # (it has just exited)
                raise

    def key_of(self, tid: int) -> int | None:
        """The credential key thread ``tid`` carries, None for none (the first credentials)."""
        if not self.base:
            return None
        prefix = self.base[len(MOUNT_POINT) :] + "/"
        try:
            with open(f"/proc/{tid}/cgroup", "rb") as f:
                for line in f:
                    _n, controllers, path = line.rstrip(b"\n").split(b":", 2)
                    if controllers == b"name=" + HIERARCHY.encode():
                        text = path.decode()
                        if text.startswith(prefix) and text[len(prefix) :].isdigit():
                            return int(text[len(prefix) :])
                        return None
        except (OSError, ValueError):
            pass
        return None

    def close(self) -> None:
        if self.base:
            self._remove_tree(self.base)
            self.base = ""
            self._made.clear()
