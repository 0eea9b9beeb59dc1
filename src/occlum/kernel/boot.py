"""The entry point the CLI calls: ``run(spec) -> exit status``."""

from __future__ import annotations

from occlum.kernel.libos import run

__all__ = ["run"]
