"""``occlum mount``: one SEFS volume of an instance served on the host through FUSE.

Owns the host process that opens a persistent SEFS volume (the root's writable layer or a
``sefs`` mount of Occlum.json) with the key a run derives for it, serves it at a host
directory through the kernel's FUSE (the ``pyfuse3`` binding, libfuse 3), and commits it
when the directory is unmounted, as an instance exit does: the volume is then exactly as of
that commit, or as of the previous one if the process dies first, never torn.

The volume is used only through its public face: :class:`~occlum.fs.sefs.SefsFs` and the
:class:`~occlum.vfs.inode.Inode` methods every file system offers. FUSE's inode numbers are
the volume's own (its root is FUSE's root, 1); the inodes stay referenced for the life of the
mount, so the kernel's ``forget`` needs no bookkeeping. File contents are the volume's page
cache: each FUSE open is a host descriptor of the file's memfd (``Inode.open_host_fd``), read
and written with ``pread``/``pwrite``. Loading a file verifies its objects: a tampered object
makes that open fail with EIO, and no byte of it is served.

While served, the volume's lock (an ``flock`` of its storage directory, taken by
:class:`SefsFs`) keeps any LibOS off it; a marker ``run/mounts/<pid>`` names the mount so
that ``occlum run`` and ``occlum start`` refuse with one line, and ``occlum umount`` finds
the server to wait for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import SetAttr, Stat
from occlum.errors import UserError
from occlum.instance.layout import Instance, pid_alive
from occlum.instance.runspec import Volume, volumes

if TYPE_CHECKING:
    from occlum.fs.sefs import SefsFs
    from occlum.vfs.inode import Inode

MOUNTS_DIR = "mounts"
ROOT_INODE = 1
# the open flags a host descriptor of a memfd keeps (creation and truncation are ours)
_OPEN_KEEP = os.O_ACCMODE | os.O_APPEND


@dataclass(slots=True, frozen=True)
class MountMarker:
    pid: int
    target: str
    mountpoint: str


# --- the markers of live mounts --------------------------------------------------------------


def mount_markers(inst: Instance) -> list[MountMarker]:
    """The live ``occlum mount`` servers of this instance (markers of dead ones are removed)."""
    d = inst.run_dir / MOUNTS_DIR
    try:
        names = os.listdir(d)
    except OSError:
        return []
    out = []
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            target, mountpoint = (d / name).read_text().rstrip("\n").split("\t", 1)
        except (OSError, ValueError):
            continue
        if pid_alive(pid):
            out.append(MountMarker(pid, target, mountpoint))
        else:
            with contextlib.suppress(OSError):
                (d / name).unlink()
    return sorted(out, key=lambda m: m.pid)


def refuse_if_mounted(inst: Instance) -> None:
    """``occlum run`` and ``occlum start``: a volume served on the host is not the LibOS's."""
    for m in mount_markers(inst):
        raise UserError(
            f"the instance's SEFS volume {m.target} is mounted on the host at {m.mountpoint} "
            f"(occlum mount, pid {m.pid}): occlum umount {m.mountpoint} first"
        )


@contextlib.contextmanager
def _marker(inst: Instance, target: str, mountpoint: str) -> Iterator[Path]:
    d = inst.run_dir / MOUNTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / str(os.getpid())
    path.write_text(f"{target}\t{mountpoint}\n")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def error_path(inst: Instance, pid: int) -> Path:
    """Where a server that could not commit says why, for ``occlum umount``."""
    return inst.run_dir / MOUNTS_DIR / f"{pid}.error"


# --- the FUSE operations ---------------------------------------------------------------------


def _import_pyfuse3() -> Any:
    try:
        import pyfuse3
        import trio
    except ImportError:
        raise UserError(
            "occlum mount needs the pyfuse3 binding of libfuse 3: pip install 'occlum[mount]' "
            "(it builds against the libfuse3-dev and pkg-config packages; fuse3 brings "
            "fusermount3)"
        )
    return pyfuse3, trio


def make_operations(fs: SefsFs, pyfuse3: Any) -> Any:
    """The pyfuse3 ``Operations`` serving ``fs``. Every handler is synchronous inside: trio runs
    one at a time, which is what SEFS (not thread-safe) needs."""
    fuse_error = pyfuse3.FUSEError

    def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def handler(*args: Any) -> Any:
            try:
                return fn(*args)
            except SyscallError as e:
                raise fuse_error(e.errno)
            except OSError as e:
                raise fuse_error(e.errno or errno.EIO)
            except fuse_error:
                raise
            except Exception as e:
                # a fault of ours fails this request, not the mount: the volume is still
                # committed at unmount (pyfuse3 would end its main loop, leaving the mount dead)
                print(f"occlum mount: {fn.__name__}: {type(e).__name__}: {e}", file=sys.stderr)
                raise fuse_error(errno.EIO)

        handler.__name__ = fn.__name__
        return handler

    class SefsOperations(pyfuse3.Operations):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inodes: dict[int, Inode] = {ROOT_INODE: fs.root}
            self.files: dict[int, tuple[int, Inode, bool]] = {}  # fh -> (host fd, inode, wrote)
            self.dirs: dict[int, tuple[int, list[tuple[bytes, Inode]]]] = {}  # fh -> dir, names
            # a directory's parent, for its ".." (a directory has one name, so one parent)
            self.parents: dict[int, int] = {ROOT_INODE: ROOT_INODE}
            self.next_fh = 1

        # --- inodes and their attributes ---

        def fuse_ino(self, inode: Inode) -> int:
            # the volume's numbers, but its root is FUSE's 1 (and the two swap if they differ)
            r = fs.root.ino
            n = ROOT_INODE if inode.ino == r else (r if inode.ino == ROOT_INODE else inode.ino)
            self.inodes[n] = inode
            return n

        def inode(self, n: int) -> Inode:
            try:
                return self.inodes[n]
            except KeyError:
                raise fuse_error(errno.ESTALE)

        def attrs(self, inode: Inode, st: Stat | None = None) -> Any:
            st = st if st is not None else inode.getattr()
            a = pyfuse3.EntryAttributes()
            a.st_ino = self.fuse_ino(inode)
            a.generation = 0
            a.entry_timeout = 0  # the server is the only writer, yet a run may follow: no cache
            a.attr_timeout = 0
            a.st_mode = st.mode
            a.st_nlink = st.nlink
            a.st_uid = st.uid
            a.st_gid = st.gid
            a.st_rdev = st.rdev
            a.st_size = st.size
            a.st_blksize = st.blksize
            a.st_blocks = st.blocks
            a.st_atime_ns = st.atime_ns
            a.st_mtime_ns = st.mtime_ns
            a.st_ctime_ns = st.ctime_ns
            return a

        @guard
        def lookup(self, parent: int, name: bytes, ctx: Any) -> Any:
            d = self.inode(parent)
            if name == b".":
                return self.attrs(d)
            if name == b"..":
                return self.attrs(self.inode(self.parents.get(parent, ROOT_INODE)))
            return self.child(parent, d.lookup(name))

        def child(self, parent: int, inode: Inode) -> Any:
            a = self.attrs(inode)
            if inode.is_dir:
                self.parents[a.st_ino] = parent
            return a

        @guard
        def getattr(self, n: int, ctx: Any) -> Any:
            return self.attrs(self.inode(n))

        @guard
        def setattr(self, n: int, attr: Any, fields: Any, fh: int | None, ctx: Any) -> Any:
            inode = self.inode(n)
            inode.setattr(
                SetAttr(
                    mode=attr.st_mode & 0o7777 if fields.update_mode else None,
                    uid=attr.st_uid if fields.update_uid else None,
                    gid=attr.st_gid if fields.update_gid else None,
                    size=attr.st_size if fields.update_size else None,
                    atime_ns=attr.st_atime_ns if fields.update_atime else None,
                    mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
                )
            )
            return self.attrs(inode)

        @guard
        def readlink(self, n: int, ctx: Any) -> bytes:
            return self.inode(n).readlink()

        # --- names ---

        @guard
        def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: Any) -> Any:
            node = self.inode(parent).mknod(name, mode, rdev, ctx.uid, ctx.gid)
            return self.attrs(node)

        @guard
        def mkdir(self, parent: int, name: bytes, mode: int, ctx: Any) -> Any:
            node = self.inode(parent).mkdir(name, mode & 0o7777, ctx.uid, ctx.gid)
            return self.child(parent, node)

        @guard
        def unlink(self, parent: int, name: bytes, ctx: Any) -> None:
            self.inode(parent).unlink(name)

        @guard
        def rmdir(self, parent: int, name: bytes, ctx: Any) -> None:
            self.inode(parent).rmdir(name)

        @guard
        def symlink(self, parent: int, name: bytes, target: bytes, ctx: Any) -> Any:
            return self.attrs(self.inode(parent).symlink(name, target, ctx.uid, ctx.gid))

        @guard
        def rename(
            self, old_parent: int, old: bytes, new_parent: int, new: bytes, flags: int, ctx: Any
        ) -> None:
            d = self.inode(old_parent)
            moved = d.lookup(old)
            other = self.inode(new_parent)
            swapped = other.lookup(new) if flags & pyfuse3.RENAME_EXCHANGE else None
            d.rename(old, other, new, flags)
            if moved.is_dir:
                self.parents[self.fuse_ino(moved)] = new_parent
            if swapped is not None and swapped.is_dir:
                self.parents[self.fuse_ino(swapped)] = old_parent

        @guard
        def link(self, n: int, new_parent: int, new: bytes, ctx: Any) -> Any:
            target = self.inode(n)
            self.inode(new_parent).link(new, target)
            return self.attrs(target)

        # --- contents ---

        def _handle(self, inode: Inode, flags: int) -> Any:
            fd = inode.open_host_fd(flags & _OPEN_KEEP)
            fh = self.next_fh
            self.next_fh += 1
            self.files[fh] = (fd, inode, flags & os.O_ACCMODE != os.O_RDONLY)
            return pyfuse3.FileInfo(fh=fh)

        @guard
        def open(self, n: int, flags: int, ctx: Any) -> Any:
            inode = self.inode(n)
            if flags & os.O_TRUNC and inode.is_regular:
                inode.setattr(SetAttr(size=0))
            return self._handle(inode, flags)

        @guard
        def create(self, parent: int, name: bytes, mode: int, flags: int, ctx: Any) -> Any:
            node = self.inode(parent).create(name, mode & 0o7777, ctx.uid, ctx.gid)
            fi = self._handle(node, flags)
            return fi, self.attrs(node)

        def _fd(self, fh: int) -> int:
            try:
                return self.files[fh][0]
            except KeyError:
                raise fuse_error(errno.EBADF)

        @guard
        def read(self, fh: int, off: int, size: int) -> bytes:
            return os.pread(self._fd(fh), size, off)

        @guard
        def write(self, fh: int, off: int, buf: bytes) -> int:
            return os.pwrite(self._fd(fh), buf, off)

        @guard
        def release(self, fh: int) -> None:
            entry = self.files.pop(fh, None)
            if entry is not None:
                os.close(entry[0])

        @guard
        def fsync(self, fh: int, datasync: bool) -> None:
            self._fd(fh)
            fs.sync()  # a commit of the whole volume: the file is durable once it returns

        # --- directories ---

        @guard
        def opendir(self, n: int, ctx: Any) -> int:
            d = self.inode(n)
            up = self.inode(self.parents.get(n, ROOT_INODE))
            entries = [(b".", d), (b"..", up)]
            entries += [(e.name, d.lookup(e.name)) for e in d.readdir()]
            fh = self.next_fh
            self.next_fh += 1
            self.dirs[fh] = (n, entries)
            return fh

        @guard
        def readdir(self, fh: int, start: int, token: Any) -> None:
            n, entries = self.dirs.get(fh, (ROOT_INODE, []))
            for i in range(start, len(entries)):
                name, inode = entries[i]
                attrs = self.attrs(inode) if i < 2 else self.child(n, inode)
                if not pyfuse3.readdir_reply(token, name, attrs, i + 1):
                    break

        @guard
        def releasedir(self, fh: int) -> None:
            self.dirs.pop(fh, None)

        @guard
        def fsyncdir(self, fh: int, datasync: bool) -> None:
            fs.sync()

        @guard
        def statfs(self, ctx: Any) -> Any:
            st = fs.statfs()
            out = pyfuse3.StatvfsData()
            out.f_bsize = st.bsize
            out.f_frsize = st.frsize
            out.f_blocks = st.blocks
            out.f_bfree = st.bfree
            out.f_bavail = st.bavail
            out.f_files = st.files
            out.f_ffree = st.ffree
            out.f_favail = st.ffree
            out.f_namemax = st.namelen
            return out

        # --- extended attributes ---

        @guard
        def getxattr(self, n: int, name: bytes, ctx: Any) -> bytes:
            return self.inode(n).get_xattr(name)

        @guard
        def setxattr(self, n: int, name: bytes, value: bytes, ctx: Any) -> None:
            self.inode(n).set_xattr(name, value, 0)

        @guard
        def listxattr(self, n: int, ctx: Any) -> list[bytes]:
            return self.inode(n).list_xattr()

        @guard
        def removexattr(self, n: int, name: bytes, ctx: Any) -> None:
            self.inode(n).remove_xattr(name)

    return SefsOperations()


# --- the server ------------------------------------------------------------------------------


def open_volume(inst: Instance, target: str) -> tuple[Volume, SefsFs]:
    """The volume mounted at ``target`` inside the LibOS, opened as a run opens it."""
    from occlum.enclave.counter import platform_counters
    from occlum.fs.sefs import SefsFs

    vols = volumes(inst)
    if not vols:
        raise UserError("the instance has no persistent SEFS volume")
    chosen = [v for v in vols if v.target == target]
    if not chosen:
        names = ", ".join(v.target for v in vols)
        raise UserError(f"no persistent SEFS volume is mounted at {target} (there are: {names})")
    v = chosen[0]
    try:
        os.makedirs(v.storage, mode=0o700, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {v.storage}: {e.strerror}")
    try:
        fs = SefsFs(v.storage, v.key, mac_only=v.mac_only, counters=platform_counters())
    except SyscallError as e:
        if e.errno == errno.EBUSY:
            raise UserError(f"SEFS volume {target}: {e.why}")
        raise UserError(
            f"SEFS volume {target}: {e.why or e} (wrong key, a different enclave, or "
            "tampered storage)"
        )
    return v, fs


def serve(inst: Instance, target: str, mountpoint: str, ready: Callable[[str], None]) -> None:
    """Serve the volume at ``mountpoint`` until it is unmounted (``occlum umount``,
    ``fusermount3 -u``, SIGINT or SIGTERM), then commit it. A failed commit: UserError."""
    pyfuse3, trio = _import_pyfuse3()
    mp = os.path.realpath(mountpoint)
    if not os.path.isdir(mp):
        raise UserError(f"the mount point {mountpoint} is not a directory")
    if os.path.ismount(mp):
        raise UserError(f"{mountpoint} is already a mount point")
    _vol, fs = open_volume(inst, target)
    committed = False
    try:
        with _marker(inst, target, mp):
            ops = make_operations(fs, pyfuse3)
            options = set(pyfuse3.default_options)
            options.discard("default_permissions")
            options |= {"fsname=occlum-sefs", "subtype=occlum", "default_permissions"}
            try:
                pyfuse3.init(ops, mp, options)
            except RuntimeError as e:
                raise UserError(f"cannot mount {mountpoint} with FUSE: {e} (is /dev/fuse there?)")
            unmount = False
            try:
                ready(mp)

                async def main() -> None:
                    nonlocal unmount
                    import signal

                    async with trio.open_nursery() as nursery:

                        async def on_signal() -> None:
                            nonlocal unmount
                            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                                async for _ in sigs:
                                    unmount = True
                                    pyfuse3.terminate()
                                    return

                        nursery.start_soon(on_signal)
                        await pyfuse3.main()
                        nursery.cancel_scope.cancel()

                trio.run(main)
            finally:
                pyfuse3.close(unmount=unmount)
            try:
                fs.close(commit=True)
                committed = True
            except SyscallError as e:
                why = f"the commit at unmount failed, changes since the last fsync are lost: {e.why or e}"
                with contextlib.suppress(OSError):
                    error_path(inst, os.getpid()).write_text(why + "\n")
                raise UserError(why)
    finally:
        if not committed:
            fs.close(commit=False)
