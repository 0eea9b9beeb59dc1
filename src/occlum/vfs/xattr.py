"""Extended attribute names and who may use them: Linux's rules of ``fs/xattr.c`` that hold
whatever a file system stores (the LibOS's file systems store none).

Owns the name checks (ERANGE for an empty or overlong name, EOPNOTSUPP outside the known
namespaces) and the rule that ``user.`` attributes exist only on regular files and
directories: reading one elsewhere gives ENODATA, changing one EPERM.
"""

from __future__ import annotations

import errno

from occlum.abi.errors import SyscallError
from occlum.vfs.inode import Inode

__all__ = ["XATTR_NAME_MAX", "XATTR_SIZE_MAX", "check_xattr", "check_xattr_name"]

XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
_NAMESPACES = (b"user.", b"trusted.", b"security.", b"system.")


def check_xattr_name(name: bytes) -> None:
    if not name or len(name) > XATTR_NAME_MAX:
        raise SyscallError(errno.ERANGE, "attribute name empty or too long")


def check_xattr(inode: Inode, name: bytes, *, write: bool) -> None:
    """May ``name`` be read (or, with ``write``, set or removed) on ``inode``?"""
    if name.startswith(b"user.") and not (inode.is_regular or inode.is_dir):
        raise SyscallError(
            errno.EPERM if write else errno.ENODATA,
            "user attributes exist only on regular files and directories",
        )
    if not name.startswith(_NAMESPACES):
        raise SyscallError(errno.EOPNOTSUPP, "no such attribute namespace")
