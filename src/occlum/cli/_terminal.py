"""How the command-line tools draw: tables sized to the terminal, progress bars only on one."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

PIPE_WIDTH = 120  # a pipe or a file has no width: wide enough that our rows do not wrap


def console(*, stderr: bool = False) -> Console:
    """A console as wide as the terminal (or $COLUMNS); ``PIPE_WIDTH`` for a pipe or a file."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or "COLUMNS" in os.environ:
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH)


class RichProgress:
    """A transient bar on stderr for a long copy: drawn only on a terminal, and only when the
    work reaches ``min_bytes`` or ``min_files`` (below that it is done before a bar helps)."""

    def __init__(self, label: str, *, min_bytes: int, min_files: int) -> None:
        self.label = label
        self.min_bytes = min_bytes
        self.min_files = min_files
        self.progress: Progress | None = None
        self._task: Any = None

    def start(self, total_bytes: int, total_files: int, *, out: Console | None = None) -> None:
        out = out if out is not None else Console(stderr=True)
        if not out.is_terminal:
            return
        if total_bytes < self.min_bytes and total_files < self.min_files:
            return
        self.progress = Progress(
            TextColumn(self.label),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=out,
            transient=True,
        )
        self.progress.start()
        self._task = self.progress.add_task(self.label, total=total_bytes)

    def advance(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(self._task, nbytes)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
