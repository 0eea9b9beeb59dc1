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
from occlum.kernel.spec import MountSpec
from occlum.vfs import PathOp, resolve
from occlum.vfs.cred import CAP_SYS_ADMIN
from occlum.vfs.mount import MountTable

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS
    from occlum.kernel.process import Task

MS_RDONLY = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SILENT = 2, 4, 8, 0x8000
MS_REMOUNT, MS_BIND, MS_MOVE = 0x20, 0x1000, 0x2000
MNT_EXPIRE, UMOUNT_NOFOLLOW = 4, 8
_HARMLESS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SILENT | 0xC0ED0000  # + the old magic


def _options(data: bytes) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in data.split(b","):
        if item:
            k, _, v = item.decode(errors="replace").partition("=")
            opts[k.strip()] = v.strip()
    return opts


def _sefs(libos: LibOS, target: bytes, source: bytes, opts: dict[str, str]) -> MountSpec:
    """A SEFS volume a program mounts: its storage a name under the instance's run/mount/, its
    key given (key=) or sealed like the root's writable layer."""
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
    return MountSpec(target.decode(errors="replace"), "sefs", storage, key=key, mac_only=mac_only)


# mount(2)'s type names -> the file system types of the LibOS (kernel/rootfs.py)
_KINDS = {
    b"tmpfs": "tmpfs",
    b"ramfs": "ramfs",
    b"sefs": "sefs",
    b"proc": "procfs",
    b"procfs": "procfs",
    b"devfs": "devfs",
    b"devtmpfs": "devfs",
}


def sys_mount(
    libos: LibOS, t: Task, source: int, target: int, fstype: int, flags: int, data: int
) -> int:
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
    path = mem.read_cstring(target)
    where = resolve(PathOp(p.root, p.cwd, path, cred=t.cred))
    if not where.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "mount point is not a directory")
    if where.parent is None and where.mount.mountpoint is None:
        raise SyscallError(errno.EBUSY, "the root is mounted by the LibOS")
    if kind == b"hostfs":
        raise SyscallError(errno.EPERM, "hostfs mounts come from Occlum.json only")
    name = _KINDS.get(kind, kind.decode(errors="replace"))  # unknown: make() says ENODEV
    readonly = bool(flags & MS_RDONLY)
    if name == "sefs":
        spec = _sefs(libos, path, src, opts)
    else:
        spec = MountSpec(path.decode(errors="replace"), name, readonly=readonly)
    fs, options = libos.filesystems.make(name, spec, libos.mounts, opts)
    if isinstance(fs, RamFs):  # its nameless files are freed at their last close
        fs.close_watch = libos.filesystems.close_watch
    fs.readonly = bool(flags & MS_RDONLY) or fs.readonly
    if not options:
        options = "ro" if fs.readonly else "rw"
    # a mount without a source shows "none", as Linux's does
    table = where.mount.table
    assert isinstance(table, MountTable)  # the only kind of table there is
    table.mount_at(where, fs, source=src or b"none", options=options)
    return 0


def sys_umount2(libos: LibOS, t: Task, target: int, flags: int) -> int:
    if flags & MNT_EXPIRE:  # a bit of the row's set, but not served
        raise SyscallError(errno.EINVAL, "MNT_EXPIRE is not supported")
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
    table = where.mount.table
    assert isinstance(table, MountTable)
    table.umount(where)  # syncs it
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
    if libos.filesystems.root_pending is not None:
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
    libos.filesystems.boot_error = None
    libos.filesystems.mount_root(image_key)
    return 0
