"""mount(2) and umount2(2) inside the LibOS: new tmpfs, ramfs, SEFS, procfs and devfs mounts at run time.

The file systems a program may mount are the instance's own: in memory, or SEFS volumes whose
storage lies under the instance's ``run/mount/`` directory. hostfs comes only from
Occlum.json: a program never names a host path. The root cannot be replaced or unmounted.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from occlum.abi.errors import SyscallError
from occlum.crypto.kdf import derive_key
from occlum.fs.ramfs import RamFs
from occlum.fs.sefs import SefsFs
from occlum.platform import native
from occlum.syscalls.common import s32
from occlum.vfs import PathOp, resolve
from occlum.vfs.cred import CAP_SYS_ADMIN
from occlum.vfs.mount import FileSystem

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task

MS_RDONLY = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SILENT = 2, 4, 8, 0x8000
MS_REMOUNT, MS_BIND, MS_MOVE = 0x20, 0x1000, 0x2000
MNT_FORCE, MNT_DETACH, UMOUNT_NOFOLLOW = 1, 2, 8
_HARMLESS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SILENT | 0xC0ED0000  # + the old magic


def _options(data: bytes) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in data.split(b","):
        if item:
            k, _, v = item.decode(errors="replace").partition("=")
            opts[k.strip()] = v.strip()
    return opts


def _sefs(libos: LibOS, source: bytes, opts: dict[str, str]) -> FileSystem:
    base = os.path.realpath(os.path.join(libos.spec.instance_dir, "run", "mount"))
    storage = os.path.realpath(os.path.join(base, source.decode(errors="replace").lstrip("/")))
    if os.path.commonpath([base, storage]) != base or storage == base:
        raise SyscallError(
            errno.EPERM, "SEFS storage must be a name under the instance's run/mount/"
        )
    if "key" in opts:
        try:
            key = bytes.fromhex(opts["key"].replace("-", ""))
        except ValueError:
            raise SyscallError(errno.EINVAL, "key= must be hex")
    elif libos.spec.root_upper_key is not None:
        # sealed like the root's writable layer (to the signer), one key per storage name
        key = derive_key(
            libos.spec.root_upper_key, b"runtime-sefs", os.path.relpath(storage, base).encode()
        )
    else:
        raise SyscallError(errno.EINVAL, "no key= given and no sealing key in this instance")
    os.makedirs(storage, mode=0o700, exist_ok=True)
    mac_only = opts.get("integrity_only") in ("1", "true")
    fs = SefsFs(storage, key, mac_only=mac_only, counters=libos.counters)
    fs.close_watch = libos.close_watch
    fs.log_error = libos.log.error
    return fs


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


def sys_mount(
    libos: LibOS, t: Task, source: int, target: int, fstype: int, flags: int, data: int
) -> int:
    flags &= 0xFFFFFFFF
    if flags & (MS_REMOUNT | MS_BIND | MS_MOVE):
        raise SyscallError(errno.EINVAL, "only new mounts are supported (no remount, bind or move)")
    if flags & ~(_HARMLESS | MS_RDONLY):
        raise SyscallError(errno.EINVAL, "unsupported mount flags")
    if not t.cred.capable(CAP_SYS_ADMIN):
        raise SyscallError(errno.EPERM, "only root may mount")
    mem = t.mem
    kind = mem.read_cstring(fstype, 64)
    src = mem.read_cstring(source) if source else b""
    opts = _options(mem.read_cstring(data, 4096)) if data else {}
    p = t.process
    where = resolve(PathOp(p.root, p.cwd, mem.read_cstring(target), cred=t.cred))
    if not where.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "mount point is not a directory")
    if where.parent is None and where.mount.mountpoint is None:
        raise SyscallError(errno.EBUSY, "the root is mounted by the LibOS")
    fs: FileSystem
    options = ""
    if kind == b"tmpfs":
        fs, options = _tmpfs(opts, bool(flags & MS_RDONLY))
    elif kind == b"ramfs":
        fs, options = _ramfs(opts, bool(flags & MS_RDONLY))
    elif kind == b"sefs":
        fs = _sefs(libos, src, opts)
    elif kind in (b"proc", b"procfs"):
        fs = libos.new_procfs()
    elif kind in (b"devfs", b"devtmpfs"):
        fs = libos.new_devfs()
    elif kind == b"hostfs":
        raise SyscallError(errno.EPERM, "hostfs mounts come from Occlum.json only")
    else:
        raise SyscallError(errno.ENODEV, f"unknown file system type {kind!r}")
    if isinstance(fs, RamFs):  # its nameless files are freed at their last close
        fs.close_watch = libos.close_watch
    fs.readonly = bool(flags & MS_RDONLY) or fs.readonly
    if not options:
        options = "ro" if fs.readonly else "rw"
    # a mount without a source shows "none", as Linux's does
    where.mount.table.mount_at(where, fs, source=src or b"none", options=options)
    return 0


def sys_umount2(libos: LibOS, t: Task, target: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~(MNT_FORCE | MNT_DETACH | UMOUNT_NOFOLLOW):
        raise SyscallError(errno.EINVAL, "unsupported umount flags")
    if not t.cred.capable(CAP_SYS_ADMIN):
        raise SyscallError(errno.EPERM, "only root may unmount")
    p = t.process
    where = resolve(
        PathOp(p.root, p.cwd, t.mem.read_cstring(target), follow=not flags & UMOUNT_NOFOLLOW)
    )
    if where.parent is not None:
        raise SyscallError(errno.EINVAL, "not a mount point")
    if where.mount.mountpoint is None:
        raise SyscallError(errno.EBUSY, "the root is mounted by the LibOS")
    fs = where.mount.fs
    where.mount.table.umount(where)  # syncs it
    if isinstance(fs, SefsFs):
        fs.close()
    return 0


def sys_umount(libos: LibOS, t: Task, target: int) -> int:
    return sys_umount2(libos, t, target, 0)


def sys_mount_rootfs(libos: LibOS, t: Task, key: int, key_len: int) -> int:
    """Occlum's mount_rootfs (363), for the initfs's init only: mount the instance's root
    (the image, decrypted with ``key`` if it is encrypted, under its writable layer) and the
    other file systems of Occlum.json; the program runs on them once init exits with 0.
    ``key`` is 16 or 32 bytes, or NULL with ``key_len`` 0 for an integrity-only image."""
    if libos.stage != "init":
        raise SyscallError(errno.EPERM, "the root file system is mounted only by init")
    if libos.root_pending is not None:
        raise SyscallError(errno.EBUSY, "the root file system is already mounted")
    if not t.cred.capable(CAP_SYS_ADMIN):
        raise SyscallError(errno.EPERM, "only root may mount the root file system")
    if key == 0:
        if key_len != 0:
            raise SyscallError(errno.EINVAL, "a key length without a key")
        image_key = None
    elif key_len in (16, 32):
        image_key = t.mem.read(key, key_len)
    else:
        raise SyscallError(errno.EINVAL, "an image key is 16 or 32 bytes")
    libos.boot_error = None
    libos.mount_root(image_key)
    return 0
