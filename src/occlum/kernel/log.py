"""The LibOS log: ``OCCLUM_LOG_LEVEL=off|error|warn|info|debug|trace`` to stderr."""

from __future__ import annotations

import os
import sys

LEVELS = {"off": 0, "error": 1, "warn": 2, "info": 3, "debug": 4, "trace": 5}


class Log:
    __slots__ = ("level", "trace_on")

    def __init__(self, level: str = "warn") -> None:
        self.level = LEVELS.get(level.lower(), 2)
        self.trace_on = self.level >= LEVELS["trace"]

    def _emit(self, tag: str, msg: str) -> None:
        try:
            os.write(sys.stderr.fileno(), f"[occlum {tag}] {msg}\n".encode(errors="replace"))
        except OSError:
            pass

    def error(self, msg: str) -> None:
        if self.level >= 1:
            self._emit("error", msg)

    def warn(self, msg: str) -> None:
        if self.level >= 2:
            self._emit("warn", msg)

    def info(self, msg: str) -> None:
        if self.level >= 3:
            self._emit("info", msg)

    def debug(self, msg: str) -> None:
        if self.level >= 4:
            self._emit("debug", msg)

    def trace(self, msg: str) -> None:
        self._emit("trace", msg)
