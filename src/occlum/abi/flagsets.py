"""Named sets of flag bits: what one flag argument of a system call may hold, and what Linux does
with a bit outside the set. Some calls refuse it (``EINVAL`` before anything else is looked at:
the ``AT_*`` calls, ``renameat2``, the xattr calls, ``openat2``), others never look at it
(``open(2)`` clears it; ``sendto``'s ``MSG_*`` and ``mmap``'s bits are the kernel's to judge).

A row of the syscall table names a set as an argument's kind (``syscalls/table.py``); the
serving loop checks the argument against it before the handler runs (``kernel/api.py``'s
``Entry.decode``), and ``--strace`` prints the bits by name. A handler that reads flags from a
structure in memory (``openat2``'s ``open_how``, ``setxattrat``'s ``xattr_args``) calls
``check`` itself. Pure data: the values are Linux's x86-64 ones (not Python's ``os`` module,
which says ``O_LARGEFILE`` is 0).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from occlum.abi.errors import SyscallError

REFUSE = "refuse"  # an unknown bit is EINVAL
IGNORE = "ignore"  # an unknown bit is passed on, unread (the kernel judges it, if anyone)
DROP = "drop"  # an unknown bit is cleared before the handler sees it, as open(2) does


@dataclass(frozen=True, slots=True)
class FlagSet:
    name: str
    bits: tuple[tuple[int, str], ...]  # value and name; a value of several bits names them all
    unknown: str  # REFUSE, IGNORE or DROP
    exclusive: tuple[int, ...] = ()  # masks whose bits may not all be set together (EINVAL)
    reserved: int = 0  # bits refused even where unknown ones are not (statx's mask)
    zero: tuple[int, str] | None = None  # a name for none of these bits set (O_RDONLY, F_OK)
    width: int = 32  # the C type: 32 (int, unsigned int) or 64 (unsigned long, __u64)
    signed: bool = False  # handed on as a C int (Python's socket calls take one)
    known: int = field(init=False, repr=False, compare=False)
    refused: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        known = 0
        for bit, _ in self.bits:
            known |= bit
        full = (1 << self.width) - 1
        refused = (full & ~known if self.unknown == REFUSE else 0) | self.reserved
        object.__setattr__(self, "known", known)
        object.__setattr__(self, "refused", refused)

    def check(self, v: int) -> int:
        """``v`` as the handler gets it (``v`` already cut to ``width`` bits, unsigned):
        ``EINVAL`` for a refused bit or an exclusive pair, unknown bits cleared for DROP."""
        if v & self.refused:
            raise SyscallError(errno.EINVAL, f"unknown {self.name} bits {v & self.refused:#x}")
        for mask in self.exclusive:
            if v & mask == mask:
                raise SyscallError(errno.EINVAL, f"{self.format(mask)} together")
        if self.unknown == DROP:
            v &= self.known
        if self.signed and v & 0x80000000:
            v -= 1 << 32
        return v

    def format(self, v: int) -> str:
        """The bits of ``v`` by name, strace's way: ``O_RDONLY|O_CLOEXEC|0x40``."""
        v &= (1 << self.width) - 1
        names = []
        if self.zero is not None and not v & self.zero[0]:
            names.append(self.zero[1])
        rest = v
        for bit, name in self.bits:
            if rest & bit == bit:
                names.append(name)
                rest &= ~bit
        if rest:
            names.append(hex(rest))
        return "|".join(names) or "0"


def _set(
    name: str,
    unknown: str,
    *bits: tuple[int, str],
    exclusive: tuple[int, ...] = (),
    reserved: int = 0,
    zero: tuple[int, str] | None = None,
    width: int = 32,
    signed: bool = False,
) -> FlagSet:
    return FlagSet(name, bits, unknown, exclusive, reserved, zero, width, signed)


_O_BITS = (
    (0o1, "O_WRONLY"), (0o2, "O_RDWR"), (0o100, "O_CREAT"), (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"), (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"),
    (0o20000000, "__O_TMPFILE"),
)  # fmt: skip
_RDONLY = (0o3, "O_RDONLY")
# open(2), openat(2): Linux keeps only VALID_OPEN_FLAGS (build_open_how)
OPEN = _set("open", DROP, *_O_BITS, zero=_RDONLY)
# openat2's open_how.flags, a __u64: every unknown bit is EINVAL (build_open_flags)
OPENAT2 = _set("openat2", REFUSE, *_O_BITS, zero=_RDONLY, width=64)
RESOLVE = _set(
    "resolve",
    REFUSE,
    (0x01, "RESOLVE_NO_XDEV"), (0x02, "RESOLVE_NO_MAGICLINKS"), (0x04, "RESOLVE_NO_SYMLINKS"),
    (0x08, "RESOLVE_BENEATH"), (0x10, "RESOLVE_IN_ROOT"), (0x20, "RESOLVE_CACHED"),
    exclusive=(0x18,),
    width=64,
)  # fmt: skip

_NOFOLLOW = (0x100, "AT_SYMLINK_NOFOLLOW")
_AUTOMOUNT = (0x800, "AT_NO_AUTOMOUNT")
_EMPTY = (0x1000, "AT_EMPTY_PATH")
# newfstatat: vfs_statx's check, which lets the AT_STATX_* bits through, both of them too
_SYNC_BITS = ((0x2000, "AT_STATX_FORCE_SYNC"), (0x4000, "AT_STATX_DONT_SYNC"))
AT_STAT = _set("AT_", REFUSE, _NOFOLLOW, _AUTOMOUNT, _EMPTY, *_SYNC_BITS)
# statx: the same, but one AT_STATX_* bit at most
AT_STATX = _set("AT_", REFUSE, _NOFOLLOW, _AUTOMOUNT, _EMPTY, *_SYNC_BITS, exclusive=(0x6000,))
# fchownat, fchmodat2, utimensat, execveat, the *xattrat calls
AT_NOFOLLOW = _set("AT_", REFUSE, _NOFOLLOW, _EMPTY)
AT_ACCESS = _set("AT_", REFUSE, (0x200, "AT_EACCESS"), _NOFOLLOW, _EMPTY)
AT_LINK = _set("AT_", REFUSE, (0x400, "AT_SYMLINK_FOLLOW"), _EMPTY)
AT_UNLINK = _set("AT_", REFUSE, (0x200, "AT_REMOVEDIR"))
# statx's mask: only the reserved bit is refused; a bit the kernel does not know is not filled
STATX_MASK = _set(
    "statx mask",
    IGNORE,
    (0x7FF, "STATX_BASIC_STATS"), (0x1, "STATX_TYPE"), (0x2, "STATX_MODE"),
    (0x4, "STATX_NLINK"), (0x8, "STATX_UID"), (0x10, "STATX_GID"), (0x20, "STATX_ATIME"),
    (0x40, "STATX_MTIME"), (0x80, "STATX_CTIME"), (0x100, "STATX_INO"), (0x200, "STATX_SIZE"),
    (0x400, "STATX_BLOCKS"), (0x800, "STATX_BTIME"), (0x1000, "STATX_MNT_ID"),
    (0x2000, "STATX_DIOALIGN"), (0x4000, "STATX_MNT_ID_UNIQUE"), (0x8000, "STATX_SUBVOL"),
    (0x10000, "STATX_WRITE_ATOMIC"), (0x20000, "STATX_DIO_READ_ALIGN"),
    reserved=0x80000000,
)  # fmt: skip
# access, faccessat, faccessat2: the mode (do_faccessat: mode & ~S_IRWXO)
ACCESS_MODE = _set("access mode", REFUSE, (4, "R_OK"), (2, "W_OK"), (1, "X_OK"), zero=(7, "F_OK"))
RENAME = _set(
    "RENAME_",
    REFUSE,
    (1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT"),
    exclusive=(3, 6),
)  # fmt: skip
XATTR = _set("XATTR_", REFUSE, (1, "XATTR_CREATE"), (2, "XATTR_REPLACE"))
# sendto, recvfrom: unknown MSG_ bits are the protocol's business, never EINVAL here
MSG = _set(
    "MSG_",
    IGNORE,
    (0x1, "MSG_OOB"), (0x2, "MSG_PEEK"), (0x4, "MSG_DONTROUTE"), (0x8, "MSG_CTRUNC"),
    (0x10, "MSG_PROBE"), (0x20, "MSG_TRUNC"), (0x40, "MSG_DONTWAIT"), (0x80, "MSG_EOR"),
    (0x100, "MSG_WAITALL"), (0x200, "MSG_FIN"), (0x400, "MSG_SYN"), (0x800, "MSG_CONFIRM"),
    (0x1000, "MSG_RST"), (0x2000, "MSG_ERRQUEUE"), (0x4000, "MSG_NOSIGNAL"),
    (0x8000, "MSG_MORE"), (0x10000, "MSG_WAITFORONE"), (0x40000, "MSG_BATCH"),
    (0x4000000, "MSG_ZEROCOPY"), (0x20000000, "MSG_FASTOPEN"), (0x40000000, "MSG_CMSG_CLOEXEC"),
    signed=True,
)  # fmt: skip
# accept4 (Linux looks at the descriptor first, the LibOS at the flags first)
ACCEPT4 = _set("SOCK_", REFUSE, (0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC"))
MSYNC = _set("MS_", REFUSE, (1, "MS_ASYNC"), (2, "MS_INVALIDATE"), (4, "MS_SYNC"), exclusive=(5,))
UMOUNT = _set(
    "umount",
    REFUSE,
    (1, "MNT_FORCE"), (2, "MNT_DETACH"), (4, "MNT_EXPIRE"), (8, "UMOUNT_NOFOLLOW"),
)  # fmt: skip
# pidfd_send_signal: one scope at most (Linux 6.9)
PIDFD_SIGNAL = _set(
    "PIDFD_SIGNAL_",
    REFUSE,
    (1, "PIDFD_SIGNAL_THREAD"), (2, "PIDFD_SIGNAL_THREAD_GROUP"),
    (4, "PIDFD_SIGNAL_PROCESS_GROUP"),
    exclusive=(3, 5, 6),
)  # fmt: skip
# mount: an unsigned long, of which Linux reads the low 32 bits (the upper half is ignored);
# the handler refuses what it does not serve
MOUNT = _set(
    "MS_",
    IGNORE,
    (0xC0ED0000, "MS_MGC_VAL"), (1, "MS_RDONLY"), (2, "MS_NOSUID"), (4, "MS_NODEV"),
    (8, "MS_NOEXEC"), (16, "MS_SYNCHRONOUS"), (32, "MS_REMOUNT"), (64, "MS_MANDLOCK"),
    (128, "MS_DIRSYNC"), (256, "MS_NOSYMFOLLOW"), (1024, "MS_NOATIME"), (2048, "MS_NODIRATIME"),
    (4096, "MS_BIND"), (8192, "MS_MOVE"), (16384, "MS_REC"), (32768, "MS_SILENT"),
    (1 << 16, "MS_POSIXACL"), (1 << 17, "MS_UNBINDABLE"), (1 << 18, "MS_PRIVATE"),
    (1 << 19, "MS_SLAVE"), (1 << 20, "MS_SHARED"), (1 << 21, "MS_RELATIME"),
    (1 << 23, "MS_I_VERSION"), (1 << 24, "MS_STRICTATIME"), (1 << 25, "MS_LAZYTIME"),
)  # fmt: skip
# mmap (served from 64 MiB, then the kernel runs it and judges every bit): names only
PROT = _set(
    "PROT_",
    IGNORE,
    (1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"), (8, "PROT_SEM"),
    (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP"),
    zero=(7, "PROT_NONE"),
    width=64,
)  # fmt: skip
MAP = _set(
    "MAP_",
    IGNORE,
    (3, "MAP_SHARED_VALIDATE"), (1, "MAP_SHARED"), (2, "MAP_PRIVATE"), (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"), (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"), (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
    width=64,
)  # fmt: skip

# The names a row of the syscall table uses as argument kinds.
FLAG_SETS: dict[str, FlagSet] = {
    "oflags": OPEN,
    "at_stat": AT_STAT,
    "at_statx": AT_STATX,
    "at_nofollow": AT_NOFOLLOW,
    "at_access": AT_ACCESS,
    "at_link": AT_LINK,
    "at_unlink": AT_UNLINK,
    "statx_mask": STATX_MASK,
    "access_mode": ACCESS_MODE,
    "rename": RENAME,
    "xattr": XATTR,
    "msg": MSG,
    "accept4": ACCEPT4,
    "msync": MSYNC,
    "umount": UMOUNT,
    "mount": MOUNT,
    "pidfd_signal": PIDFD_SIGNAL,
    "prot": PROT,
    "map": MAP,
}
