"""The VFS's operations on names and attributes: what each file system call means, written once.

Each function is one call's rules on typed values (a :class:`~occlum.vfs.path.PathOp`, a
:class:`~occlum.vfs.path.Location`, modes, ids), checked in Linux's order before a file system
is asked: ``.`` and ``..`` as final names, EXDEV across mounts, EROFS, sticky directories, the
owner rules and capabilities of the caller's credentials, the umask, clearing set-id bits.
File systems only store what they are told (:class:`~occlum.abi.fsabi.SetAttr`, one name);
the syscall layer only copies arguments in and results out. Opening is :mod:`occlum.vfs.open`.

The credentials are the :class:`~occlum.vfs.path.PathOp`'s (its ``cred``; None is the LibOS
itself, root) or, for an operation on a file already found, the ``cred`` argument.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import replace

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    S_ISGID,
    S_ISUID,
    S_ISVTX,
    SetAttr,
)
from occlum.vfs.cred import (
    CAP_CHOWN,
    CAP_DAC_OVERRIDE,
    CAP_FOWNER,
    CAP_FSETID,
    CAP_SYS_CHROOT,
    MAY_EXEC,
    MAY_READ,
    MAY_WRITE,
    ROOT,
    Cred,
    check_access,
    may_delete,
    new_owner,
)
from occlum.vfs.inode import Inode
from occlum.vfs.path import (
    Location,
    ParentAndName,
    PathOp,
    resolve,
    resolve_parent,
)
from occlum.vfs.xattr import may_access as may_xattr
from occlum.vfs.xattr import visible as xattr_visible

__all__ = [
    "access",
    "check_new",
    "check_rename",
    "chmod",
    "chown",
    "drop_setid_for_writer",
    "link_at",
    "may_chdir",
    "may_chroot",
    "mkdir_at",
    "mknod_at",
    "mknod_type",
    "parent_for_change",
    "readlink",
    "rename_at",
    "rename_flags",
    "rmdir_at",
    "symlink_at",
    "truncate",
    "unlink_at",
    "utimes",
    "xattr_get",
    "xattr_list",
    "xattr_remove",
    "xattr_set",
]

Running = Callable[[Inode], bool]


def _cred(op: PathOp) -> Cred:
    return ROOT if op.cred is None else op.cred


# -- names -------------------------------------------------------------------------------------
def parent_for_change(op: PathOp) -> ParentAndName:
    """The directory that holds (or will hold) ``op``'s final name, which the caller may
    change: search and write permission on it (Linux's may_create / may_delete)."""
    pn = resolve_parent(op)
    cred = _cred(op)
    if not cred.capable(CAP_DAC_OVERRIDE):
        check_access(pn.parent.inode.getattr(), cred, MAY_WRITE | MAY_EXEC)
    return pn


def _check_sticky(cred: Cred, pn: ParentAndName) -> None:
    """Removing or replacing ``pn`` in a sticky directory: the file's or the directory's
    owner only (or CAP_FOWNER), as Linux's may_delete."""
    dir_st = pn.parent.inode.getattr()
    if dir_st.mode & S_ISVTX and not cred.capable(CAP_FOWNER):
        try:
            child = pn.parent.inode.lookup(pn.name)
        except SyscallError:
            return  # no such name: the operation reports that
        may_delete(dir_st, child.getattr(), cred)


def check_new(pn: ParentAndName, *, want_dir: bool = False) -> None:
    """The final component names a file to make (mkdir, mknod, link, symlink): ``.`` and
    ``..`` exist already; a trailing slash asks for a directory, so for anything else it
    is EEXIST where the name exists and ENOENT where it does not (Linux's
    ``filename_create``)."""
    if pn.name in (b".", b".."):
        raise SyscallError(errno.EEXIST, "the name exists")
    if pn.trailing_slash and not want_dir:
        pn.parent.inode.lookup(pn.name)  # ENOENT when free
        raise SyscallError(errno.EEXIST, "the name exists")


def check_rename(old: ParentAndName, new: ParentAndName, flags: int) -> None:
    """rename(2)'s rules on its two final components, in Linux's order, before a file system
    is asked: EXDEV across mounts; EBUSY for ``.`` or ``..`` (EEXIST as the target with
    RENAME_NOREPLACE); ENOENT for a missing source; EEXIST for an existing target with
    RENAME_NOREPLACE, whatever its slashes; ENOTDIR for a trailing slash on a source
    that is not a directory (a symlink to one included), or on the target when the source is
    not a directory (or, exchanging, on a target that is not one)."""
    if old.parent.mount is not new.parent.mount:
        raise SyscallError(errno.EXDEV, "rename across mounts")
    if old.name in (b".", b".."):
        raise SyscallError(errno.EBUSY, "renaming . or ..")
    if new.name in (b".", b".."):
        raise SyscallError(
            errno.EEXIST if flags & RENAME_NOREPLACE else errno.EBUSY, "renaming to . or .."
        )
    src_is_dir = old.parent.inode.lookup(old.name).is_dir
    if flags & RENAME_NOREPLACE:
        try:
            new.parent.inode.lookup(new.name)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
        else:
            raise SyscallError(errno.EEXIST, "target exists")
    if not src_is_dir and (
        old.trailing_slash or (new.trailing_slash and not flags & RENAME_EXCHANGE)
    ):
        raise SyscallError(errno.ENOTDIR, "trailing slash on a non-directory")
    if (
        flags & RENAME_EXCHANGE
        and new.trailing_slash
        and not new.parent.inode.lookup(new.name).is_dir
    ):
        raise SyscallError(errno.ENOTDIR, "trailing slash on a non-directory")


def mkdir_at(op: PathOp, mode: int, umask: int) -> None:
    """mkdir: no set-id bit from the mode; a set-group-id parent passes on its group and its
    S_ISGID (Linux's inode_init_owner)."""
    pn = parent_for_change(op)
    check_new(pn, want_dir=True)
    perm, uid, gid = new_owner(
        _cred(op), pn.parent.inode.getattr(), S_IFDIR | (mode & 0o1777 & ~umask)
    )
    pn.parent.inode.mkdir(pn.name, perm & 0o7777, uid, gid)


def mknod_type(mode: int) -> int:
    """The file type mknod's ``mode`` asks for, checked first of all (Linux's may_mknod,
    before the name is looked at)."""
    kind = mode & S_IFMT or S_IFREG
    if kind == S_IFDIR:
        raise SyscallError(errno.EPERM, "use mkdir")
    if kind not in (S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK):
        raise SyscallError(errno.EINVAL, "unknown file type")
    return kind


def mknod_at(op: PathOp, mode: int, umask: int) -> None:
    """mknod of a regular file, FIFO or socket; a device node needs CAP_MKNOD, which no
    program holds here. Linux's order: the type (:func:`mknod_type`), then the name
    (filename_create), then the right to make a device."""
    kind = mknod_type(mode)
    pn = parent_for_change(op)
    check_new(pn)
    parent = pn.parent.inode
    if kind in (S_IFCHR, S_IFBLK):
        try:
            parent.lookup(pn.name)
        except SyscallError as exc:
            if exc.errno != errno.ENOENT:
                raise
            raise SyscallError(errno.EPERM, "device nodes cannot be created in the LibOS")
        raise SyscallError(errno.EEXIST, "the name exists")
    perm, uid, gid = new_owner(_cred(op), parent.getattr(), mode & 0o7777 & ~umask)
    if kind == S_IFREG:
        parent.create(pn.name, perm, uid, gid)
    else:
        parent.mknod(pn.name, kind | perm, 0, uid, gid)


def unlink_at(op: PathOp, *, gone: Callable[[Inode], None] | None = None) -> None:
    """unlink: not a directory, not ``.`` or ``..``; ``gone`` is told of a file whose last
    name this was."""
    pn = parent_for_change(op)
    _check_sticky(_cred(op), pn)
    parent = pn.parent.inode
    if pn.trailing_slash:
        child = parent.lookup(pn.name)
        raise SyscallError(errno.EISDIR if child.is_dir else errno.ENOTDIR, "trailing slash")
    if pn.name in (b".", b".."):
        raise SyscallError(errno.EISDIR, "is a directory")
    victim = parent.lookup(pn.name) if gone is not None else None
    parent.unlink(pn.name)
    if victim is not None and gone is not None and victim.getattr().nlink == 0:
        gone(victim)


def rmdir_at(op: PathOp) -> None:
    """rmdir: EINVAL for ``.``, ENOTEMPTY for ``..``, EBUSY for a mount point."""
    pn = parent_for_change(op)
    _check_sticky(_cred(op), pn)
    if pn.name == b".":
        raise SyscallError(errno.EINVAL, "cannot remove '.'")
    if pn.name == b"..":
        raise SyscallError(errno.ENOTEMPTY, "cannot remove '..'")
    child = pn.parent.inode.lookup(pn.name)
    if child.is_dir and pn.parent.mount.table.covering(pn.parent.mount, child.ino):
        raise SyscallError(errno.EBUSY, "a file system is mounted there")
    pn.parent.inode.rmdir(pn.name)


def rename_flags(flags: int) -> None:
    """renameat2's flags, checked before either name. Unknown bits and RENAME_EXCHANGE with
    another flag are refused before the handler runs (the row's ``rename`` flag set);
    RENAME_WHITEOUT, for overlay file systems, is not served."""
    if flags & RENAME_WHITEOUT:
        raise SyscallError(errno.EINVAL, "RENAME_WHITEOUT is not supported")


def rename_at(old: ParentAndName, new: ParentAndName, flags: int, cred: Cred) -> None:
    """rename between two names found by :func:`parent_for_change`, in Linux's order (the old
    name is found before the new one's directory descriptor is even looked at): the flags,
    both names' rules (:func:`check_rename`), the sticky rule on each."""
    rename_flags(flags)
    check_rename(old, new, flags)
    _check_sticky(cred, old)
    _check_sticky(cred, new)
    old.parent.inode.rename(old.name, new.parent.inode, new.name, flags)


def link_at(src: Location, op: PathOp) -> None:
    """link: a new name ``op`` for the file at ``src``, on the same mount, never for a
    directory."""
    if src.inode.is_dir:
        raise SyscallError(errno.EPERM, "hard link to a directory")
    pn = parent_for_change(op)
    check_new(pn)
    if src.mount is not pn.parent.mount:
        raise SyscallError(errno.EXDEV, "link across mounts")
    pn.parent.inode.link(pn.name, src.inode)


def symlink_at(target: bytes, op: PathOp) -> None:
    """symlink: a link named ``op`` whose text is ``target`` (never empty)."""
    if not target:
        raise SyscallError(errno.ENOENT, "empty target")
    pn = parent_for_change(op)
    check_new(pn)
    _perm, uid, gid = new_owner(_cred(op), pn.parent.inode.getattr(), 0o777)
    pn.parent.inode.symlink(pn.name, target, uid, gid)


def readlink(loc: Location, *, named: bool) -> bytes:
    """The text of the symlink at ``loc``; EINVAL for another file, or ENOENT when it was
    not ``named`` (an empty path with AT_EMPTY_PATH: Linux's answer for a descriptor of a
    file that is not a symlink)."""
    if not loc.inode.is_symlink:
        raise SyscallError(errno.EINVAL if named else errno.ENOENT, "not a symbolic link")
    return loc.inode.readlink()


# -- directories a process stands in -------------------------------------------------------------
def may_chdir(loc: Location, cred: Cred) -> None:
    if not loc.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    check_access(loc.inode.getattr(), cred, MAY_EXEC)


def may_chroot(loc: Location, cred: Cred) -> None:
    if not loc.inode.is_dir:
        raise SyscallError(errno.ENOTDIR, "not a directory")
    if not cred.capable(CAP_SYS_CHROOT):
        raise SyscallError(errno.EPERM, "chroot needs CAP_SYS_CHROOT")


# -- attributes ----------------------------------------------------------------------------------
def access(loc: Location, cred: Cred, mode: int, *, effective: bool) -> None:
    """access(2)'s question (``mode``: R_OK 4, W_OK 2, X_OK 1) about the file at ``loc``.
    access() asks with the real ids (and, for a real uid other than 0, no capabilities);
    faccessat2's AT_EACCESS (``effective``) with the effective ones."""
    st = loc.inode.getattr()
    want = (
        (MAY_READ if mode & 4 else 0)
        | (MAY_WRITE if mode & 2 else 0)
        | (MAY_EXEC if mode & 1 else 0)
    )
    if want:
        c = cred
        if not effective:
            c = replace(
                c, fsuid=c.uid, fsgid=c.gid, cap_effective=c.cap_permitted if c.uid == 0 else 0
            )
        check_access(st, c, want)
    if mode & 2 and loc.inode.fs.readonly and (st.mode & S_IFMT) in (S_IFREG, S_IFDIR):
        raise SyscallError(errno.EROFS, "read-only file system")


def chmod(loc: Location, cred: Cred, mode: int) -> None:
    """chmod: the owner only (or CAP_FOWNER); S_ISGID is dropped silently for a caller
    outside the file's group without CAP_FSETID, as Linux does."""
    st = loc.inode.getattr()
    if not cred.owns(st):
        raise SyscallError(errno.EPERM, "not the owner")
    mode &= 0o7777
    if mode & S_ISGID and not cred.in_group(st.gid) and not cred.capable(CAP_FSETID):
        mode &= ~S_ISGID
    loc.inode.setattr(SetAttr(mode=mode))


def chown(loc: Location, cred: Cred, uid: int | None, gid: int | None) -> None:
    """chown to ``uid``/``gid`` (None: unchanged). Without CAP_CHOWN, Linux's chown_ok and
    chgrp_ok: the owner may give the file to a group of its own, and to nobody else."""
    st = loc.inode.getattr()
    if not cred.capable(CAP_CHOWN):
        if uid is not None and not (cred.fsuid == st.uid == uid):
            raise SyscallError(errno.EPERM, "only root may give a file to another user")
        if gid is not None and not (cred.fsuid == st.uid and (cred.in_group(gid) or gid == st.gid)):
            raise SyscallError(errno.EPERM, "not the owner, or not a group of the caller's")
    # Linux drops a file's set-id bits at every chown, even root's and even to the same ids
    mode = None if loc.inode.is_dir else _without_setid(st.mode)
    loc.inode.setattr(SetAttr(mode=mode, uid=uid, gid=gid))


def _without_setid(mode: int) -> int | None:
    """``mode`` without the bits Linux drops from a file changing hands or being written
    (should_remove_suid): set-user-id, and set-group-id when group execution is on (without
    it the bit means mandatory locking); None when it has none of them."""
    kill = S_ISUID | (S_ISGID if mode & 0o010 else 0)
    return mode & 0o7777 & ~kill if mode & kill else None


def drop_setid_for_writer(inode: Inode, cred: Cred) -> None:
    """Linux clears a regular file's set-id bits (:func:`_without_setid`) at the first write
    by a writer without CAP_FSETID (file_remove_privs). Writes to LibOS files are native, out
    of the LibOS's sight, so it clears them when such a writer opens the file for writing:
    earlier than Linux, never later."""
    if cred.capable(CAP_FSETID):
        return
    mode = _without_setid(inode.getattr().mode)
    if mode is not None:
        inode.setattr(SetAttr(mode=mode))


def utimes(
    loc: Location, cred: Cred, atime: int | None, mtime: int | None, now: int | None = None
) -> None:
    """Set the times (None: unchanged; ``now``: the time a caller asked for as "now"). Who
    may, as Linux's utimes rules: any explicit time needs the owner (or CAP_FOWNER), EPERM;
    "now" needs the owner or write permission, EACCES."""
    if atime is None and mtime is None:
        return
    st = loc.inode.getattr()
    if not cred.owns(st):
        if any(v is not None and v != now for v in (atime, mtime)):
            raise SyscallError(errno.EPERM, "only the owner may set explicit times")
        check_access(st, cred, MAY_WRITE)
    loc.inode.setattr(SetAttr(atime_ns=atime, mtime_ns=mtime))


def truncate(op: PathOp, length: int, running: Running | None = None) -> None:
    """truncate by name: a length not negative (checked before the name), write permission,
    a writable file system, and not a running program (``running``: ETXTBSY)."""
    if length < 0:
        raise SyscallError(errno.EINVAL, "negative length")
    loc = resolve(op)
    if loc.inode.is_dir:
        raise SyscallError(errno.EISDIR, "is a directory")
    check_access(loc.inode.getattr(), _cred(op), MAY_WRITE)
    if loc.inode.fs.readonly:
        raise SyscallError(errno.EROFS, "read-only file system")
    if running is not None and running(loc.inode):
        raise SyscallError(errno.ETXTBSY, "the file is a running program")
    loc.inode.setattr(SetAttr(size=length))


# -- extended attributes -------------------------------------------------------------------------
def xattr_get(loc: Location, cred: Cred, name: bytes) -> bytes:
    may_xattr(loc.inode, name, cred, write=False)
    return loc.inode.get_xattr(name)


def xattr_list(loc: Location, cred: Cred) -> bytes:
    """The names ``cred`` may see, each ending in NUL, as listxattr returns them."""
    return b"".join(n + b"\0" for n in loc.inode.list_xattr() if xattr_visible(n, cred))


def xattr_set(loc: Location, cred: Cred, name: bytes, value: bytes, flags: int) -> None:
    if loc.inode.fs.readonly:
        raise SyscallError(errno.EROFS, "read-only file system")
    may_xattr(loc.inode, name, cred, write=True)
    loc.inode.set_xattr(name, value, flags)


def xattr_remove(loc: Location, cred: Cred, name: bytes) -> None:
    if loc.inode.fs.readonly:
        raise SyscallError(errno.EROFS, "read-only file system")
    may_xattr(loc.inode, name, cred, write=True)
    loc.inode.remove_xattr(name)
