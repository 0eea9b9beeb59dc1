"""The shadow root: the instance's mount namespace as the host kernel sees it.

Every program's host root and host cwd is an otherwise empty tmpfs (made by the launcher). The
kernel resolves what the LibOS lets through there: the paths of execve (hard links to the loader
stub), FIFOs the program opens itself (host FIFOs standing for LibOS FIFOs) and Unix socket
names it binds or connects to. This room keeps those names and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import os

from occlum.abi.errors import SyscallError
from occlum.platform import launch as launcher
from occlum.vfs.inode import Inode
from occlum.vfs.mount import FileSystem

FIFO_DIR = ".fifos"  # in the shadow root: the host FIFOs that stand for LibOS FIFOs


class Shadow:
    """The names of one process tree's shadow root (``fd``: its directory, -1 between trees)."""

    def __init__(self) -> None:
        self.fd = -1
        self.paths: dict[bytes, str] = {}  # path in the shadow root -> what is linked
        # LibOS FIFOs and socket files (by _identity) -> the host FIFO / bound socket standing
        # for them in the shadow root
        self.host_fifos: dict[tuple[FileSystem, int], str] = {}
        self.host_sockets: dict[tuple[FileSystem, int], str] = {}

    def attach(self, fd: int) -> None:
        """A new tree's shadow root (-1: the tree ended; the caller closes the old one)."""
        self.fd = fd
        self.paths = {}
        self.host_fifos = {}
        self.host_sockets = {}

    def stub(self, path: bytes) -> None:
        """Make the kernel find the stub at ``path`` (as the program wrote it) in the instance's
        otherwise empty mount namespace, where the kernel resolves execve paths."""
        self.link(path, launcher.STUB_NAME)

    def fifo(self, path: bytes, inode: Inode) -> None:
        """Make the kernel find the host FIFO that stands for the LibOS FIFO ``inode`` at
        ``path``, so that the program's own open of it (let through) blocks, is interrupted
        and fails exactly as on Linux, and the data flows natively."""
        self.link(path, self.host_fifo(inode))

    def host_fifo(self, inode: Inode) -> str:
        """The name, in the shadow root, of the host FIFO for the LibOS FIFO ``inode``."""
        name = self.host_fifos.get(_identity(inode))
        if name is None:
            name = f"{FIFO_DIR}/{len(self.host_fifos)}"
            try:
                if not self.host_fifos:
                    os.mkdir(FIFO_DIR, 0o711, dir_fd=self.fd)
                os.mkfifo(name, 0o666, dir_fd=self.fd)
                os.chmod(name, 0o666, dir_fd=self.fd)  # the umask's bits too
            except OSError as exc:
                raise SyscallError(exc.errno or errno.EIO, f"cannot make a host FIFO: {exc}")
            self.host_fifos[_identity(inode)] = name
        return name

    def socket(self, path: bytes, inode: Inode) -> None:
        """Clear ``path`` in the shadow root (and make its directories) so that the program's
        own bind of a Unix socket there succeeds; ``inode`` is its socket file in the LibOS."""
        norm = _normalize(path)
        if not norm:
            raise SyscallError(errno.EINVAL, "empty socket path")
        key = b"/".join(norm)
        dfd = self._dir(norm[:-1], path)
        try:
            os.unlink(norm[-1], dir_fd=dfd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EADDRINUSE, f"cannot prepare {path!r}")
        finally:
            os.close(dfd)
        self.paths[key] = key.decode("latin-1")
        self.host_sockets[_identity(inode)] = key.decode("latin-1")

    def socket_link(self, path: bytes, inode: Inode) -> bool:
        """Make the host socket bound for the LibOS socket file ``inode`` reachable at
        ``path``; False if no socket of this instance was bound there."""
        source = self.host_sockets.get(_identity(inode))
        if source is None:
            return False
        self.link(path, source)
        return True

    def forget_socket(self, inode: Inode) -> None:
        """The LibOS socket file ``inode`` is gone: so are its names in the shadow root."""
        source = self.host_sockets.pop(_identity(inode), None)
        if source is None:
            return
        for key, linked in list(self.paths.items()):
            if linked == source:
                with contextlib.suppress(OSError):
                    os.unlink(key, dir_fd=self.fd)
                del self.paths[key]

    def _dir(self, dirs: list[bytes], path: bytes) -> int:
        """A descriptor of the directory ``dirs`` in the shadow root, made if missing."""
        dfd = os.dup(self.fd)
        try:
            for comp in dirs:
                try:
                    os.mkdir(comp, 0o755, dir_fd=dfd)
                except FileExistsError:
                    pass
                nfd = os.open(comp, os.O_DIRECTORY | os.O_NOFOLLOW | os.O_RDONLY, dir_fd=dfd)
                os.close(dfd)
                dfd = nfd
        except OSError as exc:
            os.close(dfd)
            raise SyscallError(exc.errno or errno.ENOENT, f"cannot prepare {path!r}")
        return dfd

    def link(self, path: bytes, source: str) -> None:
        """Hard-link ``source`` (a name in the shadow root) at ``path`` as the program wrote it,
        relative to the shadow root, which is every program's host root and host cwd; an entry
        that stands for something else there is replaced."""
        norm = _normalize(path)
        key = b"/".join(norm)
        if not norm or self.paths.get(key) == source:
            return
        dfd = self._dir(norm[:-1], path)
        try:
            if key in self.paths:  # something else is linked there: swap atomically
                tmp = f".link-{os.getpid()}"
                os.link(source, tmp, src_dir_fd=self.fd, dst_dir_fd=dfd)
                os.rename(tmp, norm[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                try:
                    os.link(source, norm[-1], src_dir_fd=self.fd, dst_dir_fd=dfd)
                except FileExistsError:
                    pass
        except OSError as exc:
            raise SyscallError(exc.errno or errno.ENOENT, f"cannot prepare {path!r}")
        finally:
            os.close(dfd)
        self.paths[key] = source


def _identity(inode: Inode) -> tuple[FileSystem, int]:
    """A LibOS file's identity: its file system and inode number (inode objects may be
    wrappers made per lookup, as the union's are)."""
    return inode.fs, inode.ino


def _normalize(path: bytes) -> list[bytes]:
    """``path``'s components as the kernel walks them from the shadow root, which has no
    symlinks: "." dropped, ".." taking one back (never above the root)."""
    norm: list[bytes] = []
    for c in path.split(b"/"):
        if c == b"..":
            if norm:
                norm.pop()
        elif c and c != b".":
            norm.append(c)
    return norm
