"""The LibOS log: ``OCCLUM_LOG_LEVEL=off|error|warn|info|debug|trace`` to stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

LEVELS = {"off": 0, "error": 1, "warn": 2, "info": 3, "debug": 4, "trace": 5}


class Log:
    """``echo``, when set, also gets each error and warning line (a started instance shows
    them to the program they are about, whose stderr is the `occlum exec` caller's)."""

    __slots__ = ("echo", "level", "trace_on")

    def __init__(self, level: str = "warn") -> None:
        self.level = LEVELS.get(level.lower(), 2)
        self.trace_on = self.level >= LEVELS["trace"]
        self.echo: Callable[[bytes], None] | None = None

    def _emit(self, tag: str, msg: str) -> bytes:
        line = f"[occlum {tag}] {msg}\n".encode(errors="replace")
        try:
            os.write(sys.stderr.fileno(), line)
        except OSError:
            pass
        return line

    def error(self, msg: str) -> None:
        if self.level >= 1:
            line = self._emit("error", msg)
            if self.echo is not None:
                self.echo(line)

    def warn(self, msg: str) -> None:
        if self.level >= 2:
            line = self._emit("warn", msg)
            if self.echo is not None:
                self.echo(line)

    def info(self, msg: str) -> None:
        if self.level >= 3:
            self._emit("info", msg)

    def debug(self, msg: str) -> None:
        if self.level >= 4:
            self._emit("debug", msg)

    def trace(self, msg: str) -> None:
        self._emit("trace", msg)
