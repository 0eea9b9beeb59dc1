"""The seccomp filter that sorts every system call of a program, and the notification listener.

Three classes (DESIGN 3.1): *native* calls run in the host kernel at full speed; everything else
goes to the supervisor by user notification, which serves it, refuses it, or (for a few calls
whose arguments are plain values) lets the kernel continue. Calls of another architecture
(``int 0x80``) and of the x32 ABI fail with ``ENOSYS`` in the filter itself.

This module knows classic BPF and the notification ioctls, not which call is which: the native
numbers and each call's argument rule come from the syscall table (``syscalls/table.py``), built
by whoever boots the LibOS and handed here as plain data.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000

SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SETFD = 1
SECCOMP_ADDFD_FLAG_SEND = 2
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (ord("!") << 8) | nr


NOTIF_SIZE = 80
RESP_SIZE = 24
IOCTL_NOTIF_RECV = _iowr(0, NOTIF_SIZE)
IOCTL_NOTIF_SEND = _iowr(1, RESP_SIZE)
IOCTL_NOTIF_ID_VALID = _iow(2, 8)
IOCTL_NOTIF_ADDFD = _iow(3, 24)
IOCTL_NOTIF_SET_FLAGS = _iow(4, 8)


def _stmt(code: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_JGE_K = 0x35
_JA = 0x05
_RET_K = 0x06

_RELOAD_NR = _stmt(_LD_W_ABS, 0)  # seccomp_data.nr back into the accumulator
_RET_ALLOW = _stmt(_RET_K, SECCOMP_RET_ALLOW)
_RET_NOTIFY = _stmt(_RET_K, SECCOMP_RET_USER_NOTIF)


def _low(arg: int) -> int:
    """Offset of the low word of seccomp_data.args[arg] (the high word follows it)."""
    return 16 + 8 * arg


@dataclass(frozen=True, slots=True)
class Rule:
    """The filter's block for one call whose arguments it looks at, made by the functions
    below; which call gets which rule is the syscall table's to say (``syscalls/native.py``).

    ``body`` runs when the call number matches and returns for every argument. With
    ``reload`` the block ends by loading the call number again and the other calls skip to
    that load, so the accumulator holds the number for the comparisons that follow."""

    body: tuple[bytes, ...]
    reload: bool = False

    @property
    def notifies(self) -> bool:
        """Some arguments send the call to the supervisor, which must then serve it."""
        return _RET_NOTIFY in self.body

    def code(self, nr: int) -> list[bytes]:
        return [_jump(_JEQ_K, nr, 0, len(self.body)), *self.body] + (
            [_RELOAD_NR] if self.reload else []
        )


def refused(err: int) -> Rule:
    """The call fails with ``err`` in the filter, whatever its arguments."""
    return Rule((_stmt(_RET_K, SECCOMP_RET_ERRNO | err),))


def served_when_flags(arg: int, mask: int) -> Rule:
    """Sent to the supervisor when the low word of argument ``arg`` has a bit of ``mask``,
    allowed otherwise."""
    return Rule(
        (
            _stmt(_LD_W_ABS, _low(arg)),
            _jump(_JSET_K, mask, 0, 1),
            _RET_NOTIFY,
            _RET_ALLOW,
        ),
        reload=True,
    )


def served_unless_zero(arg: int, *, always: bool = False) -> Rule:
    """Allowed when the low word of argument ``arg`` (an int) is 0, sent to the supervisor
    otherwise; with ``always``, sent to the supervisor whatever it is."""
    return Rule(
        (
            _stmt(_LD_W_ABS, _low(arg)),
            _jump(_JEQ_K, 0, 0, 1) if not always else _jump(_JA, 1, 0, 0),
            _RET_ALLOW,
            _RET_NOTIFY,
        ),
        reload=True,
    )


def answered_by_value(
    arg: int, answers: Sequence[tuple[int, int]], served: tuple[int, int] | None = None
) -> Rule:
    """The low word of argument ``arg`` (an int the kernel reads as 32 bits) is compared to
    each value of ``answers``: the filter returns its answer (a ``SECCOMP_RET_*`` value) on a
    match; a value in the range ``served`` (low included, high excluded) is sent to the
    supervisor; the call is allowed otherwise."""
    body = [_stmt(_LD_W_ABS, _low(arg))]
    for value, answer in answers:
        body += [_jump(_JEQ_K, value, 0, 1), _stmt(_RET_K, answer)]
    if served is not None:
        low, high = served
        body += [_jump(_JGE_K, low, 0, 2), _jump(_JGE_K, high, 1, 0), _RET_NOTIFY]
    return Rule((*body, _RET_ALLOW))


def served_for_values(arg: int, values: Sequence[int]) -> Rule:
    """Sent to the supervisor when the low word of argument ``arg`` is one of ``values``,
    allowed otherwise."""
    n = len(values)
    return Rule(
        (
            _stmt(_LD_W_ABS, _low(arg)),
            *(_jump(_JEQ_K, value, n - i, 0) for i, value in enumerate(values)),
            _RET_ALLOW,
            _RET_NOTIFY,
        )
    )


def served_for_pair(first: tuple[int, int], second: tuple[int, int]) -> Rule:
    """``first`` and ``second`` are (argument, value): sent to the supervisor when the low
    words of both arguments are their values, allowed otherwise."""
    (arg1, value1), (arg2, value2) = first, second
    return Rule(
        (
            _stmt(_LD_W_ABS, _low(arg1)),
            _jump(_JEQ_K, value1, 0, 3),
            _stmt(_LD_W_ABS, _low(arg2)),
            _jump(_JEQ_K, value2, 0, 1),
            _RET_NOTIFY,
            _RET_ALLOW,
        )
    )


def served_with_pointer(arg: int) -> Rule:
    """Allowed when the pointer argument ``arg`` is NULL (both words), sent to the supervisor
    otherwise."""
    low = _low(arg)
    return Rule(
        (
            _stmt(_LD_W_ABS, low),
            _jump(_JEQ_K, 0, 0, 3),
            _stmt(_LD_W_ABS, low + 4),
            _jump(_JEQ_K, 0, 0, 1),
            _RET_ALLOW,
            _RET_NOTIFY,
        ),
        reload=True,
    )


def served_when_large(arg: int, least: int) -> Rule:
    """Sent to the supervisor when argument ``arg`` is at least ``least`` (below 4 GiB),
    allowed otherwise."""
    low = _low(arg)
    return Rule(
        (
            _stmt(_LD_W_ABS, low + 4),
            _jump(_JEQ_K, 0, 0, 3),  # 4 GiB or more: served
            _stmt(_LD_W_ABS, low),
            _jump(_JGE_K, least, 1, 0),
            _RET_ALLOW,
            _RET_NOTIFY,
        ),
        reload=True,
    )


def served_when_large_unless(
    arg: int, least: int, flags_arg: int, native_flags: int, quiet: tuple[int, int, Sequence[int]]
) -> Rule:
    """Like :func:`served_when_large` (argument ``arg`` from ``least``), but allowed when the
    low word of argument ``flags_arg`` has a bit of ``native_flags``, and when ``quiet`` =
    (argument, flag bits, sizes) holds: that argument is 0 (both words), the flags have a bit
    of those and ``arg`` is one of the sizes (each below 4 GiB, at least ``least``): calls the
    supervisor would only let through."""
    zero_arg, quiet_flags, sizes = quiet
    n = len(sizes)
    low, flags, zero = _low(arg), _low(flags_arg), _low(zero_arg)
    # ALLOW and NOTIFY end the block: each jump says how many instructions it skips
    body = [
        _stmt(_LD_W_ABS, flags),
        _jump(_JSET_K, native_flags, 10 + n, 0),  # to ALLOW
        _stmt(_LD_W_ABS, low + 4),
        _jump(_JEQ_K, 0, 0, 9 + n),  # 4 GiB or more: to NOTIFY
        _stmt(_LD_W_ABS, low),
        _jump(_JGE_K, least, 0, 6 + n),  # below least: to ALLOW
        # each size to the quiet test; the last, unmatched, to NOTIFY
        *(_jump(_JEQ_K, size, n - 1 - i, 7 if i == n - 1 else 0) for i, size in enumerate(sizes)),
        _stmt(_LD_W_ABS, zero),
        _jump(_JEQ_K, 0, 0, 5),  # to NOTIFY
        _stmt(_LD_W_ABS, zero + 4),
        _jump(_JEQ_K, 0, 0, 3),  # to NOTIFY
        _stmt(_LD_W_ABS, flags),
        _jump(_JSET_K, quiet_flags, 0, 1),
        _RET_ALLOW,
        _RET_NOTIFY,
    ]
    return Rule(tuple(body), reload=True)


def refused_unless_pair(first: tuple[int, int], second: tuple[int, int], err: int) -> Rule:
    """``first`` and ``second`` are (argument, value): the call fails with ``err`` when the low
    word of the first argument is its value and that of the second is not, and is allowed
    otherwise (``socket(AF_NETLINK, ..., protocol)`` for every protocol but one)."""
    (arg1, value1), (arg2, value2) = first, second
    return Rule(
        (
            _stmt(_LD_W_ABS, _low(arg1)),
            _jump(_JEQ_K, value1, 0, 3),
            _stmt(_LD_W_ABS, _low(arg2)),
            _jump(_JEQ_K, value2, 1, 0),
            _stmt(_RET_K, SECCOMP_RET_ERRNO | err),
            _RET_ALLOW,
        ),
        reload=True,
    )


def served_for_values_or_pair(
    arg: int, values: Sequence[int], first: int, second: tuple[int, int], err: int
) -> Rule:
    """Sent to the supervisor when the low word of argument ``arg`` is one of ``values``, or is
    ``first`` while that of the ``second`` (argument, value) pair's argument is its value;
    fails with ``err`` when it is ``first`` and the other is not; allowed otherwise
    (``socket(family, ..., protocol)``: some families served, one served for one protocol
    only)."""
    arg2, value2 = second
    n = len(values)
    body = [_stmt(_LD_W_ABS, _low(arg))]
    # each value jumps over the rest of its comparisons, the pair's four and the ALLOW
    body += [_jump(_JEQ_K, value, n - i + 4, 0) for i, value in enumerate(values)]
    body += [
        _jump(_JEQ_K, first, 0, 3),
        _stmt(_LD_W_ABS, _low(arg2)),
        _jump(_JEQ_K, value2, 2, 0),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | err),
        _RET_ALLOW,
        _RET_NOTIFY,
    ]
    return Rule(tuple(body))


def build_filter(native: Iterable[int], rules: Iterable[tuple[int, Rule]]) -> bytes:
    """Assemble the classic-BPF program from plain data, the syscall table's: the arch check,
    the x32 refusal, each call's argument ``rules`` in order, then the ``native`` numbers
    (allowed); any other call goes to the supervisor."""
    numbers = sorted(set(native))
    prog = [
        _stmt(_LD_W_ABS, 4),  # seccomp_data.arch
        _jump(_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS),  # int 0x80 and other ABIs
        _stmt(_LD_W_ABS, 0),  # seccomp_data.nr
        _jump(_JSET_K, X32_SYSCALL_BIT, 0, 1),
        _stmt(_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    for nr, rule in rules:
        prog += rule.code(nr)
    count = len(numbers)
    for i, nr in enumerate(numbers):
        # jump forward to the ALLOW return that follows the last comparison
        prog.append(_jump(_JEQ_K, nr, count - i, 0))
    prog.append(_RET_NOTIFY)
    prog.append(_RET_ALLOW)
    return b"".join(prog)


_NOTIF = struct.Struct("<QIIiIQ6Q")
_ZERO_NOTIF = bytes(NOTIF_SIZE)
_RESP = struct.Struct("<QqiI")
_ADDFD = struct.Struct("<QIIII")


class Listener:
    """The supervisor's end of the notification channel of one LibOS instance."""

    __slots__ = ("_buf", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray(NOTIF_SIZE)
        try:
            fcntl.ioctl(fd, IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
        except OSError:
            pass  # kernel < 6.6: correct, only slower wake-ups

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def receive(self) -> tuple[int, int, int, int, tuple[int, ...]]:
        """Return (id, pid, nr, instruction_pointer, args); raises OSError (ENOENT: caller died)."""
        buf = self._buf
        buf[:] = _ZERO_NOTIF  # the kernel insists on a zeroed struct
        fcntl.ioctl(self.fd, IOCTL_NOTIF_RECV, buf, True)
        f = _NOTIF.unpack(buf)
        return f[0], f[1], f[3], f[5], f[6:12]

    def respond(self, notif_id: int, value: int = 0, error: int = 0, flags: int = 0) -> None:
        """Answer a notification: value on success or error as a negative errno."""
        try:
            fcntl.ioctl(self.fd, IOCTL_NOTIF_SEND, _RESP.pack(notif_id, value, error, flags))
        except OSError:
            pass  # ENOENT: the process died or was interrupted meanwhile; nothing to answer

    def proceed(self, notif_id: int) -> None:
        """Let the kernel run the call as the program made it (values only, never pointers)."""
        self.respond(notif_id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)

    def id_valid(self, notif_id: int) -> bool:
        try:
            fcntl.ioctl(self.fd, IOCTL_NOTIF_ID_VALID, struct.pack("<Q", notif_id))
            return True
        except OSError:
            return False

    def add_fd(
        self, notif_id: int, fd: int, cloexec: bool, send: bool, target: int | None = None
    ) -> int:
        """Install our ``fd`` into the caller; with ``send`` it also answers with the number.
        With ``target`` it takes that descriptor number, replacing what was there (as dup2)."""
        flags = SECCOMP_ADDFD_FLAG_SEND if send else 0
        if target is not None:
            flags |= SECCOMP_ADDFD_FLAG_SETFD
        newfd_flags = 0o2000000 if cloexec else 0
        arg = bytearray(_ADDFD.pack(notif_id, flags, fd, target or 0, newfd_flags))
        return int(fcntl.ioctl(self.fd, IOCTL_NOTIF_ADDFD, arg, True))
