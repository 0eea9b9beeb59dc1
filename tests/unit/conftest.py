"""Fixtures shared by the unit tests of SEFS volumes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from occlum.fs.sefs import SefsFs


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    """Where a test's volume keeps its objects."""
    return tmp_path / "vol"


@pytest.fixture
def mounts() -> Iterator[list[SefsFs]]:
    """Every volume a test mounts, closed (without committing) at the end, with its watch of
    last closes."""
    opened: list[SefsFs] = []
    yield opened
    for fs in opened:
        fs.close(commit=False)
        if fs.close_watch is not None:
            fs.close_watch.close()
