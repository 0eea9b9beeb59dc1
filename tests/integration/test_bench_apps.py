"""bench/apps.py stays runnable: `/bin/true` only, one repetition, and the JSON it writes has
every column, with figures that agree with each other (so the bench cannot silently rot)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import libos

pytestmark = [pytest.mark.needs_root]

APPS = libos.REPO / "bench" / "apps.py"
FIGURES = [
    "native_first_ms",
    "native_warm_ms",
    "run_first_ms",
    "run_warm_ms",
    "run_ratio",
    "run_minus_native_ms",
    "exec_first_ms",
    "exec_warm_ms",
    "exec_ratio",
]
COLUMNS = {"app", "note", "skipped", "native_error", "run_error", "exec_error", *FIGURES}


def test_apps_bench_measures_true_and_writes_every_column(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(APPS), "--only", "true", "--repeat", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "apps.json").read_text())
    assert doc["repeat"] == 1 and doc["modes"] == ["run", "exec"]
    assert len(list(tmp_path.glob("apps-*.json"))) == 1
    [row] = doc["results"]
    assert set(row) >= COLUMNS, f"missing columns: {COLUMNS - set(row)}"
    assert row["app"] == "true" and row["skipped"] == ""
    assert (row["native_error"], row["run_error"], row["exec_error"]) == ("", "", "")
    for col in FIGURES:
        assert isinstance(row[col], float) and row[col] > 0, (col, row[col])
    assert row["run_ratio"] == pytest.approx(row["run_warm_ms"] / row["native_warm_ms"], rel=0.02)
    assert row["exec_ratio"] == pytest.approx(row["exec_warm_ms"] / row["native_warm_ms"], rel=0.02)
    assert row["run_minus_native_ms"] == pytest.approx(
        row["run_warm_ms"] - row["native_warm_ms"], abs=0.05
    )
    assert "run - native" in proc.stdout and "exec warm" in proc.stdout


@pytest.mark.parametrize("args", [["--only", "nosuch"], ["--modes", "jit"], ["--repeat", "0"]])
def test_apps_bench_refuses_bad_arguments_in_one_line(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(APPS), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def _bench_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_apps", APPS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_apps_bench_skips_a_missing_application_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench_module(monkeypatch)
    real_apps = bench._apps

    def only_node_not_installed() -> list[object]:
        [node] = [a for a in real_apps() if a.name == "node"]
        node.needs = [tmp_path / "no-node-here"]
        return [node]

    monkeypatch.setattr(bench, "_apps", only_node_not_installed)
    monkeypatch.setattr(sys, "argv", ["apps.py", "--repeat", "1", "--out", str(tmp_path)])
    assert bench.main() == 0
    [row] = json.loads((tmp_path / "apps.json").read_text())["results"]
    assert row["skipped"] == f"not installed: {tmp_path / 'no-node-here'} (Debian: nodejs)"
    assert row["native_warm_ms"] is None and row["run_warm_ms"] is None
    assert "node: skipped (not installed" in capsys.readouterr().out
