"""Extended attributes: the rules every file system shares, and an in-memory store.

Owns what Linux's ``fs/xattr.c`` decides before a file system sees a call: the name's
namespace (``user.``, ``trusted.``, ``security.``, ``system.``), its length, the value's size,
the ``XATTR_CREATE``/``XATTR_REPLACE`` flags, and who may read or write which namespace.
A file system then only stores (or refuses a namespace with ``EOPNOTSUPP``); the in-memory
file systems share :class:`XattrStore`.
"""

from __future__ import annotations

import errno

from occlum.abi.errors import SyscallError
from occlum.abi.fsabi import S_IFDIR, S_IFREG
from occlum.vfs.cred import CAP_SYS_ADMIN
from occlum.vfs.inode import MAY_READ, MAY_WRITE, Cred, Inode, check_access

__all__ = [
    "NAMESPACES",
    "XATTR_CREATE",
    "XATTR_NAME_MAX",
    "XATTR_REPLACE",
    "XATTR_SIZE_MAX",
    "XattrStore",
    "check_name",
    "may_access",
    "visible",
]

XATTR_CREATE = 1
XATTR_REPLACE = 2
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_LIST_MAX = 65536

USER, TRUSTED, SECURITY, SYSTEM = b"user.", b"trusted.", b"security.", b"system."
NAMESPACES = (USER, TRUSTED, SECURITY, SYSTEM)


def check_name(name: bytes) -> bytes:
    """The namespace prefix of ``name``: EOPNOTSUPP for no known one, EINVAL for a bare one."""
    for ns in NAMESPACES:
        if name.startswith(ns):
            if len(name) == len(ns):
                raise SyscallError(errno.EINVAL, "an attribute name needs more than its prefix")
            return ns
    raise SyscallError(errno.EOPNOTSUPP, "unknown attribute namespace")


def may_access(inode: Inode, name: bytes, cred: Cred, write: bool) -> None:
    """Linux's xattr_permission: ``trusted.*`` (and writing ``security.*``) needs CAP_SYS_ADMIN;
    ``user.*`` lives on regular files and directories only and follows their mode bits."""
    ns = check_name(name)
    if not cred.capable(CAP_SYS_ADMIN) and (ns == TRUSTED or (ns == SECURITY and write)):
        raise SyscallError(errno.EPERM if write else errno.ENODATA, f"{ns!r} attributes are root's")
    if ns == USER:
        if inode.ftype not in (S_IFREG, S_IFDIR):
            raise SyscallError(
                errno.EPERM if write else errno.ENODATA,
                "user attributes only on regular files and directories",
            )
        check_access(inode.getattr(), cred, MAY_WRITE if write else MAY_READ)


def visible(name: bytes, cred: Cred) -> bool:
    """Whether ``listxattr`` shows ``name`` to ``cred`` (trusted names only to root)."""
    return cred.capable(CAP_SYS_ADMIN) or not name.startswith(TRUSTED)


class XattrStore:
    """The attributes of one in-memory inode, in the order Linux's tmpfs lists them (by
    name).  ``system.*`` (POSIX ACLs) is not kept: EOPNOTSUPP."""

    __slots__ = ("items",)

    def __init__(self, items: dict[bytes, bytes] | None = None) -> None:
        self.items: dict[bytes, bytes] = dict(items) if items else {}

    @staticmethod
    def _supported(name: bytes) -> None:
        if name.startswith(SYSTEM):
            raise SyscallError(errno.EOPNOTSUPP, "no POSIX ACLs")

    def get(self, name: bytes) -> bytes:
        self._supported(name)
        value = self.items.get(name)
        if value is None:
            raise SyscallError(errno.ENODATA, "no such attribute")
        return value

    def set(self, name: bytes, value: bytes, flags: int) -> None:
        self._supported(name)
        exists = name in self.items
        if flags & XATTR_CREATE and exists:
            raise SyscallError(errno.EEXIST, "attribute exists")
        if flags & XATTR_REPLACE and not exists:
            raise SyscallError(errno.ENODATA, "no such attribute")
        self.items[name] = value

    def remove(self, name: bytes) -> None:
        self._supported(name)
        if self.items.pop(name, None) is None:
            raise SyscallError(errno.ENODATA, "no such attribute")

    def names(self) -> list[bytes]:
        return sorted(self.items)
