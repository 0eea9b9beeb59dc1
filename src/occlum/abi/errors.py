"""The one error channel of the LibOS: an errno plus a short reason."""

from __future__ import annotations

import errno as _errno


class SyscallError(Exception):
    """Raised by syscall handlers, the VFS and file systems; becomes ``-errno`` for the program."""

    def __init__(self, err: int, why: str = "") -> None:
        super().__init__(err, why)
        self.errno = err
        self.why = why

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{name}: {self.why}" if self.why else name
