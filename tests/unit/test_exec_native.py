"""run/occlum-exec: compiled once per cache, put in place by occlum start, or left out."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from occlum.instance.exec_native import install_native_client


def _path_with(tmp_path: Path, cc_script: str | None) -> str:
    """A PATH whose only cc (if any) is ``cc_script``."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if cc_script is not None:
        cc = bindir / "cc"
        cc.write_text(f"#!/bin/sh\n{cc_script}\n")
        cc.chmod(0o755)
    return str(bindir)


def test_compiled_once_and_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert install_native_client(run_dir) is None
    client = run_dir / "occlum-exec"
    assert os.access(client, os.X_OK)
    cached = list((tmp_path / "cache" / "occlum").glob("exec-client-*"))
    assert len(cached) == 1
    # a second start takes the cached binary: no compiler needed
    monkeypatch.setenv("PATH", _path_with(tmp_path, None))
    client.unlink()
    assert install_native_client(run_dir) is None and client.is_file()
    usage = subprocess.run([client, "--help"], capture_output=True, text=True, check=False)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: occlum-exec ")


def test_without_a_compiler_there_is_none_and_nothing_to_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", _path_with(tmp_path, None))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "occlum-exec").write_text("left by an earlier start")
    assert install_native_client(run_dir) is None
    assert not (run_dir / "occlum-exec").exists()  # the console script runs the Python client


def test_a_failing_compiler_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", _path_with(tmp_path, 'echo "cc: fatal error: no space" >&2; exit 1'))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    why = install_native_client(run_dir)
    assert why is not None
    assert why.startswith("cannot compile the native exec client with ") and "no space" in why
    assert not (run_dir / "occlum-exec").exists()
    assert list(run_dir.iterdir()) == []  # no temporary file left
