"""The error for the user: one clear line and an exit status, never a traceback. Raised by the
CLI's helpers (configuration, build, images, keys) and by the kernel's boot; the LibOS's errors
for programs are :class:`occlum.abi.errors.SyscallError`."""

from __future__ import annotations


class UserError(Exception):
    """A user mistake (bad config, missing program, corrupt image): one clear line, non-zero exit."""

    def __init__(self, message: str, exit_code: int = 1, *, shown: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        # the program that failed (an init) has already said why in one line on the user's
        # terminal: ``occlum run`` adds nothing; other reporters still print ``message``
        self.shown = shown
