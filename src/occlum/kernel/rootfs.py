"""The instance's file systems: one function makes any of them from its type, for the boot
(Occlum.json's mounts, the root and its writable layer, the initfs) and for mount(2); the mount
table the programs see; and what is committed to storage, when.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
from collections.abc import Callable

from occlum.abi.errors import SyscallError
from occlum.enclave.counter import platform_counters
from occlum.errors import UserError
from occlum.fs.devfs import DevFs
from occlum.fs.devpts import DevPtsFs
from occlum.fs.hostfs import HostFs
from occlum.fs.imagefs import ImageFs, ImageKeyError
from occlum.fs.procfs import ProcFs
from occlum.fs.ramfs import RamFs
from occlum.fs.sefs import SefsFs
from occlum.fs.sefs.closes import CloseWatch
from occlum.fs.unionfs import UnionFs
from occlum.kernel.log import Log
from occlum.kernel.objects import FileRef
from occlum.kernel.spec import MountSpec, RunSpec
from occlum.platform import native
from occlum.vfs.mount import FileSystem, MountTable
from occlum.vfs.path import PathOp, resolve

# the types Occlum.json may mount, and the source /proc/mounts shows for each (the host path
# of a hostfs is not the program's business)
BOOT_SOURCES = {
    "hostfs": b"hostfs",
    "sefs": b"sefs",
    "ramfs": b"ramfs",
    "devfs": b"devfs",
    "procfs": b"proc",
}


class FileSystems:
    """The file systems of one instance. ``new_procfs`` makes a procfs showing a mount table
    (it reads the process table, which is the kernel's); ``controlling_terminal`` opens the
    caller's terminal for ``/dev/tty``."""

    def __init__(
        self,
        spec: RunSpec,
        log: Log,
        new_procfs: Callable[[MountTable], ProcFs],
        controlling_terminal: Callable[[int], int],
    ) -> None:
        self.spec = spec
        self.log = log
        self._new_procfs = new_procfs
        self._controlling_terminal = controlling_terminal
        self.temporary_dirs: list[str] = []  # storage of temporary SEFS volumes, removed at exit
        self.temporary_fs: list[FileSystem] = []
        # the platform's monotonic counters: a persistent volume rolled back is refused
        self.counters = platform_counters()
        # SEFS files' last writable close: their volume commits (Occlum commits at close too)
        self.close_watch = CloseWatch()
        # the pseudo-terminals of /dev/ptmx and /dev/pts: each tree brings its devpts instance
        self.devpts = DevPtsFs()
        self.mounts = self._init_mounts() if spec.init_image else self._build_mounts()
        self.writeback_errors: dict[FileSystem, str] = {}  # the last one logged, per volume
        self.root_pending: MountTable | None = None  # what mount_rootfs mounted
        self.boot_error: str | None = None  # why mount_rootfs failed

    def make(
        self,
        kind: str,
        m: MountSpec,
        table: MountTable | None = None,
        options: dict[str, str] | None = None,
    ) -> tuple[FileSystem, str]:
        """A new file system of type ``kind`` for the mount ``m``, and the options
        /proc/mounts shows for it ("" for the plain "rw"/"ro"). ``options`` are mount(2)'s
        (None at boot, where Occlum.json's ramfs is Occlum's, a world-writable tmpfs);
        ``table`` is what a procfs shows."""
        if kind == "hostfs":
            assert m.source is not None
            return HostFs(m.source, readonly=m.readonly), ""
        if kind == "sefs":
            assert m.source is not None and m.key is not None
            counters = None if m.temporary else self.counters
            fs = SefsFs(m.source, m.key, mac_only=m.mac_only, counters=counters)
            fs.close_watch = self.close_watch
            fs.log_error = self.log.error
            if m.temporary:
                self.temporary_fs.append(fs)
            return fs, ""
        if kind == "ramfs":
            if options is None:
                return RamFs(kind="ramfs"), ""  # statfs says ramfs, as named
            return _ramfs(options, m.readonly)
        if kind == "tmpfs":
            return _tmpfs(options or {}, m.readonly)
        if kind == "devfs":
            return self.new_devfs(), ""
        if kind == "procfs":
            assert table is not None
            return self._new_procfs(table), ""
        raise SyscallError(errno.ENODEV, f"unknown file system type {kind!r}")

    def name_pty(self, st: os.stat_result) -> FileRef | None:
        """``/dev/pts/N`` for a slave of the instance's devpts that was opened natively."""
        if st.st_dev != self.devpts.dev or os.major(st.st_rdev) != 136 or self.devpts.fd < 0:
            return None
        root = self.mounts.root()
        try:
            loc = resolve(PathOp(root, root, b"/dev/pts/%d" % os.minor(st.st_rdev)))
        except SyscallError:
            return None
        return FileRef(loc) if loc.inode.ino == st.st_ino and loc.inode.fs is self.devpts else None

    def new_devfs(self) -> DevFs:
        """A devfs of this instance: its pseudo-terminals, the caller's /dev/tty."""
        return DevFs(self.devpts, self._controlling_terminal)

    def _init_mounts(self) -> MountTable:
        """The init stage's file systems: the initfs image as the root, /dev (holding the key
        file given to ``occlum run --image-key`` as ``/dev/image_key``, if any) and /proc."""
        spec = self.spec
        if spec.init_image is None or spec.init_hash is None:  # measured: never skipped
            raise UserError("the init stage is measured but its image or hash is missing")
        try:
            root = ImageFs(spec.init_image, spec.init_hash)
        except SyscallError as exc:
            raise UserError(
                f"the initfs image {spec.init_image} cannot be used: {exc.why or exc} "
                "(corrupted or changed since `occlum build`)"
            )
        table = MountTable(root, source=b"initfs")
        dev = self.new_devfs()
        if spec.user_image_key is not None:
            node = dev.root.create(b"image_key", 0o400, 0, 0)
            fd = node.open_host_fd(os.O_WRONLY)
            try:
                os.write(fd, spec.user_image_key)
            finally:
                os.close(fd)
        self._mount(table, dev, "/dev", b"dev", where="initfs/")
        self._mount(table, self.devpts, "/dev/pts", b"devpts", where="initfs/")
        self._mount(table, self._new_procfs(table), "/proc", b"proc", where="initfs/")
        return table

    def mount_root(self, image_key: bytes | None) -> None:
        """mount_rootfs: build the instance's own file systems (the root with ``image_key``)
        for the program that runs after init. Failure: ``boot_error`` says why."""
        try:
            self.root_pending = self._build_mounts(image_key)
        except UserError as exc:
            self.boot_error = str(exc)
            # no message here: the boot reports it, once, when init has exited
            raise SyscallError(errno.EKEYREJECTED if isinstance(exc, ImageKeyError) else errno.EIO)

    def _build_mounts(self, image_key: bytes | None = None) -> MountTable:
        spec = self.spec
        root = self._root_fs(image_key)
        table = MountTable(root, source=b"unionfs" if isinstance(root, UnionFs) else b"image")
        have = {m.target for m in spec.mounts}
        for m in spec.mounts:
            source = BOOT_SOURCES.get(m.fs_type)
            if source is None:
                raise UserError(f"mount type {m.fs_type} at {m.target} is not supported")
            if m.fs_type == "sefs":
                fs: FileSystem = self._boot_sefs(m)
            else:
                fs = self.make(m.fs_type, m, table)[0]
            self._mount(table, fs, m.target, source)
        for target in ("/dev", "/proc", "/tmp"):
            if target not in have:
                kind = {"/dev": "devfs", "/proc": "procfs", "/tmp": "ramfs"}[target]
                fs = self.make(kind, MountSpec(target, kind), table)[0]
                self._mount(table, fs, target, target.strip("/").encode())
        if "/dev/shm" not in have:
            self._mount(table, RamFs(), "/dev/shm", b"shm")
        # the instance's pseudo-terminals, below a /dev of ours
        if "/dev/pts" not in have and any(
            m.target == b"/dev" and isinstance(m.fs, DevFs) for m in table.all_mounts()
        ):
            self._mount(table, self.devpts, "/dev/pts", b"devpts")
        return table

    def _root_fs(self, image_key: bytes | None) -> FileSystem:
        spec = self.spec
        if spec.root_image is None or spec.root_hash is None:
            return HostFs(spec.root_dir, readonly=True)
        try:
            image: FileSystem = ImageFs(spec.root_image, spec.root_hash, image_key)
        except SyscallError as exc:
            raise UserError(
                f"the root image {spec.root_image} cannot be used: {exc.why or exc} "
                "(corrupted or changed since `occlum build`)"
            )
        image.changed_by_calls_only = True  # read-only, and its names are measured
        image.fixed_attributes = True
        if spec.root_upper is None or spec.root_upper_key is None:
            return image
        upper = self._boot_sefs(MountSpec("/", "sefs", spec.root_upper, key=spec.root_upper_key))
        return UnionFs(upper, image)

    def _boot_sefs(self, m: MountSpec) -> FileSystem:
        """A SEFS volume of Occlum.json: its storage made (a fresh directory for a temporary
        one), a failure to open it one clear line."""
        assert m.source is not None and m.key is not None
        storage = m.source
        if m.temporary:
            os.makedirs(self.spec.instance_dir + "/run", exist_ok=True)
            storage = tempfile.mkdtemp(prefix="sefs-tmp-", dir=self.spec.instance_dir + "/run")
            self.temporary_dirs.append(storage)
        else:
            try:
                os.makedirs(storage, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise UserError(f"mount {m.target}: cannot create {storage}: {exc.strerror}")
        try:
            return self.make("sefs", dataclasses.replace(m, source=storage))[0]
        except SyscallError as exc:
            if exc.errno == errno.EBUSY:
                raise UserError(f"mount {m.target}: {exc.why}")
            raise UserError(
                f"mount {m.target}: {exc.why or exc} (wrong key, a different enclave, or "
                "tampered storage)"
            )

    def last_closes(self, commit: Callable[[FileSystem], None]) -> None:
        """Have ``commit`` commit the volumes whose files just lost their last writable
        descriptor (the serving loop makes it in slices, ``kernel/commits.py``)."""
        for fs in self.close_watch.read():
            if fs.closed or self._temporary(fs):
                continue
            commit(fs)

    def _temporary(self, fs: object) -> bool:
        return any(fs is tmp for tmp in self.temporary_fs)

    def sync(self) -> bool:
        """Commit every writable protected file system; a failure is logged, never fatal.
        False if something is not stored (a file that did not fit was logged by its volume)."""
        stored = True
        for fs in self.persistent():
            try:
                fs.sync()
            except SyscallError as exc:
                self.written_back(fs, exc)
                stored = False
            else:
                self.written_back(fs, None)
                stored = stored and not fs.unstored()
        return stored

    def written_back(self, fs: FileSystem, exc: SyscallError | None) -> None:
        """A write-back of ``fs`` ended (``exc``: how it failed); a failure is logged once,
        not at every write-back."""
        if exc is None:
            self.writeback_errors.pop(fs, None)
            return
        why = f"cannot write back {fs.fstype}: {exc.why or exc}"
        if self.writeback_errors.get(fs) != why:
            self.log.error(why)
        self.writeback_errors[fs] = why

    def persistent(self) -> list[FileSystem]:
        """The mounted file systems whose changes are committed to storage (not temporary)."""
        seen: list[FileSystem] = []
        for mount in self.mounts.all_mounts():
            fs = mount.fs
            if isinstance(fs, SefsFs | UnionFs) and fs not in self.temporary_fs and fs not in seen:
                seen.append(fs)  # a union's sync is its writable layer's
        return seen

    def close(self) -> bool:
        """At the instance's end: commit, stop watching closes, drop the temporary volumes.
        False if the commit did not store everything (said in the log)."""
        stored = self.sync()
        if not stored:
            self.log.error(
                "the exit-time commit failed, the program's last writes are lost: "
                "occlum run does not exit 0"
            )
        self.close_watch.close()
        for storage in self.temporary_dirs:
            shutil.rmtree(storage, ignore_errors=True)
        return stored

    def _mount(
        self, table: MountTable, fs: object, target: str, source: bytes, where: str = "image/"
    ) -> None:
        if isinstance(fs, RamFs):  # its nameless files are freed at their last close
            fs.close_watch = self.close_watch
        try:
            table.mount(fs, target.encode(), source=source)  # type: ignore[arg-type]
        except SyscallError as exc:
            raise UserError(
                f"cannot mount {source.decode()} at {target}: {exc} (the directory must exist in {where})"
            )


def _octal_mode(value: str) -> int:
    try:
        return int(value, 8) & 0o7777
    except ValueError:
        raise SyscallError(errno.EINVAL, f"mode={value} is not an octal number")


def _id(key: str, value: str) -> int:
    try:
        n = int(value, 10)
    except ValueError:
        n = -1
    if not 0 <= n < 0xFFFFFFFF:
        raise SyscallError(errno.EINVAL, f"{key}={value} is not a user or group id")
    return n


def _count(key: str, value: str) -> int:
    """A number with an optional k, m or g suffix, as Linux's memparse reads it."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(value[-1:].lower(), 1)
    digits = value[:-1] if scale > 1 else value
    try:
        return int(digits, 0) * scale
    except ValueError:
        raise SyscallError(errno.EINVAL, f"{key}={value} is not a number")


# tmpfs options sized by the host instance that holds the contents; mode, uid and gid belong
# to the root directory, which is the LibOS's own
_TMPFS_HOST_OPTIONS = ("size", "nr_blocks")


def _tmpfs(opts: dict[str, str], readonly: bool) -> tuple[RamFs, str]:
    """A tmpfs as Linux's: its options checked, its regular files' contents on a host tmpfs
    instance of the same size mounted nowhere, so that the host enforces ``size=``."""
    mode, uid, gid, inodes = 0o1777, 0, 0, 0
    host: dict[bytes, bytes] = {}
    for key, value in opts.items():
        if key == "mode":
            mode = _octal_mode(value)
        elif key == "uid":
            uid = _id(key, value)
        elif key == "gid":
            gid = _id(key, value)
        elif key == "nr_inodes":
            # counted by the LibOS: only regular files' contents are on the host instance
            inodes = _count(key, value)
        elif key in _TMPFS_HOST_OPTIONS:
            host[key.encode()] = value.encode()
        else:
            raise SyscallError(errno.EINVAL, f"tmpfs option {key!r} is not supported")
    try:
        backing: int | None = native.detached_mount(b"tmpfs", host)
    except OSError as e:
        if e.errno == errno.EINVAL or host:
            raise SyscallError(e.errno or errno.EINVAL, f"tmpfs options: {e.strerror}")
        backing = None  # no host instance for us: contents in memfds, unlimited as ramfs's
    fs = RamFs(mode=mode, uid=uid, gid=gid, readonly=readonly, backing=backing)
    fs.max_inodes = inodes
    # what Linux's /proc/mounts shows: the size only if one was given (in KiB, whole pages)
    shown = ["ro" if readonly else "rw", "relatime"]
    if host:
        st = fs.statfs()
        shown.append(f"size={st.blocks * st.frsize // 1024}k")
    if inodes:
        shown.append(f"nr_inodes={inodes}")
    if mode != 0o1777:
        shown.append(f"mode={mode:03o}")
    if uid:
        shown.append(f"uid={uid}")
    if gid:
        shown.append(f"gid={gid}")
    return fs, ",".join(shown)


def _ramfs(opts: dict[str, str], readonly: bool) -> tuple[RamFs, str]:
    """Linux's ramfs takes mode= and, by tradition, ignores every other option."""
    mode = _octal_mode(opts["mode"]) if "mode" in opts else 0o755
    fs = RamFs(mode=mode, readonly=readonly, kind="ramfs")
    shown = ["ro" if readonly else "rw", "relatime"]
    if mode != 0o755:
        shown.append(f"mode={mode:o}")
    return fs, ",".join(shown)
