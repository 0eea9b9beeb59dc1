"""bench/run.py pairs its runs: every mode of a row runs once per repetition, back to back in
ABBA order, and a ratio is the median of the per-repetition ratios (fake runners here, no
instance is built)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


class Fakes:
    """Fake sides that log every call and give figures from a function of (mode, rep)."""

    def __init__(self, bench: ModuleType, figure: Callable[[str, int], float]) -> None:
        self.bench = bench
        self.figure = figure
        self.log: list[tuple[str, str]] = []
        self.reps: dict[str, int] = {}

    def side(self, mode: str, fail_at: int | None = None, fail_start: bool = False) -> Any:
        def start() -> None:
            self.log.append(("start", mode))
            if fail_start:
                raise self.bench.SampleError(f"{mode} cannot start")

        def sample() -> float:
            rep = self.reps.get(mode, 0)
            self.reps[mode] = rep + 1
            self.log.append(("sample", mode))
            if rep == fail_at:
                raise self.bench.SampleError(f"{mode} failed at {rep}")
            return self.figure(mode, rep)

        def stop() -> None:
            self.log.append(("stop", mode))

        return self.bench.Side(sample, start=start, stop=stop)


def samples_order(log: list[tuple[str, str]]) -> list[str]:
    return [mode for what, mode in log if what == "sample"]


def test_modes_run_back_to_back_in_abba_order(bench: ModuleType) -> None:
    fakes = Fakes(bench, lambda mode, rep: 1.0)
    modes = ["native", "libos", "proot"]
    sides = {m: fakes.side(m) for m in modes}
    bench.run_paired("row", sides, 4)
    assert samples_order(fakes.log) == [
        *("native", "libos", "proot"),
        *("proot", "libos", "native"),
        *("native", "libos", "proot"),
        *("proot", "libos", "native"),
    ]
    # untimed set-up before the first run of any mode, tear-down (in reverse) after the last
    assert fakes.log[:3] == [("start", m) for m in modes]
    assert fakes.log[-3:] == [("stop", m) for m in reversed(modes)]


def test_ratio_is_the_median_of_paired_ratios(bench: ModuleType) -> None:
    native = [10.0, 20.0, 10.0, 40.0, 10.0]
    libos = [15.0, 20.0, 30.0, 40.0, 12.0]
    fakes = Fakes(bench, lambda mode, rep: (native if mode == "native" else libos)[rep])
    got = {
        m.mode: m
        for m in bench.run_paired("row", {m: fakes.side(m) for m in ("native", "libos")}, 5)
    }
    assert got["native"].ratios == []
    assert got["libos"].ratios == pytest.approx([1.5, 1.0, 3.0, 1.0, 1.2])
    assert got["libos"].ratio == pytest.approx(1.2)  # the ratio of the medians would be 2.0
    assert got["libos"].median == 20.0 and got["native"].median == 10.0
    assert got["libos"].ratio_iqr == pytest.approx((1.0, 1.5))
    assert bench.ratio_cell(got["libos"]) == "1.20x (1.00-3.00)"


def test_a_load_that_drifts_between_repetitions_does_not_move_the_ratio(
    bench: ModuleType,
) -> None:
    # the LibOS costs twice native; the machine's load triples over the run
    fakes = Fakes(bench, lambda mode, rep: (2.0 if mode == "libos" else 1.0) * (1 + rep) ** 0.5)
    got = {
        m.mode: m
        for m in bench.run_paired("row", {m: fakes.side(m) for m in ("native", "libos")}, 9)
    }
    # (all native repetitions, then all LibOS ones, would have said about 3.3x)
    assert got["libos"].ratios == pytest.approx([2.0] * 9)
    assert got["libos"].ratio == pytest.approx(2.0)


def test_pinned_modes_pair_with_native_pinned(bench: ModuleType) -> None:
    figures = {"native": 1.0, "native-pinned": 4.0, "libos": 3.0, "libos-pinned": 6.0}
    fakes = Fakes(bench, lambda mode, rep: figures[mode])
    got = {m.mode: m for m in bench.run_paired("row", {m: fakes.side(m) for m in figures}, 2)}
    assert got["libos"].ratio == pytest.approx(3.0)
    assert got["libos-pinned"].ratio == pytest.approx(1.5)
    assert got["native-pinned"].ratios == []


def test_a_side_that_fails_keeps_its_figures_and_the_others_go_on(bench: ModuleType) -> None:
    fakes = Fakes(bench, lambda mode, rep: {"native": 2.0, "libos": 3.0, "proot": 5.0}[mode])
    sides = {
        "native": fakes.side("native"),
        "libos": fakes.side("libos", fail_at=2),
        "proot": fakes.side("proot"),
    }
    got = {m.mode: m for m in bench.run_paired("row", sides, 5)}
    assert got["libos"].samples == [3.0, 3.0]
    assert got["libos"].error == "libos failed at 2"
    assert got["libos"].ratios == pytest.approx([1.5, 1.5])
    assert samples_order(fakes.log).count("libos") == 3  # not run again after its failure
    assert got["native"].samples == [2.0] * 5 and got["native"].error is None
    assert got["proot"].ratios == pytest.approx([2.5] * 5)


def test_when_native_fails_nothing_is_paired_after_it(bench: ModuleType) -> None:
    fakes = Fakes(bench, lambda mode, rep: 1.0 if mode == "native" else 2.0)
    sides = {"native": fakes.side("native", fail_at=1), "libos": fakes.side("libos")}
    got = {m.mode: m for m in bench.run_paired("row", sides, 4)}
    assert len(got["libos"].samples) == 4
    assert got["libos"].ratios == pytest.approx([2.0])
    assert got["native"].error == "native failed at 1"


def test_a_side_that_cannot_start_is_never_run_nor_stopped(bench: ModuleType) -> None:
    fakes = Fakes(bench, lambda mode, rep: 1.0)
    sides = {"native": fakes.side("native"), "libos": fakes.side("libos", fail_start=True)}
    got = {m.mode: m for m in bench.run_paired("row", sides, 3)}
    assert got["libos"].error == "libos cannot start"
    assert got["libos"].samples == [] and got["libos"].ratio is None
    assert "libos" not in samples_order(fakes.log)
    assert ("stop", "libos") not in fakes.log and ("stop", "native") in fakes.log
    got = {m.mode: m for m in bench.run_paired("row", {"libos": bench.failing("no instance")}, 2)}
    assert got["libos"].error == "no instance" and got["libos"].samples == []


def test_started_sides_are_stopped_when_a_run_is_interrupted(bench: ModuleType) -> None:
    def sample() -> float:
        raise KeyboardInterrupt

    fakes = Fakes(bench, lambda mode, rep: 1.0)
    sides = {"native": fakes.side("native"), "libos": bench.Side(sample)}
    with pytest.raises(KeyboardInterrupt):
        bench.run_paired("row", sides, 3)
    assert ("stop", "native") in fakes.log


def test_a_zero_base_figure_gives_no_ratio(bench: ModuleType) -> None:
    fakes = Fakes(bench, lambda mode, rep: float(rep) if mode == "native" else 1.0)
    got = {
        m.mode: m
        for m in bench.run_paired("row", {m: fakes.side(m) for m in ("native", "libos")}, 3)
    }
    assert got["libos"].ratios == pytest.approx([1.0, 0.5])


def test_json_and_table_carry_the_paired_ratios(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """main() end to end with fake sides: the row's ratio in the JSON is the paired median,
    with its spread, the old ratio of medians beside it, and a failing side's error."""
    native = [10.0, 20.0, 10.0, 40.0, 10.0]
    libos = [15.0, 20.0, 30.0, 40.0, 12.0]
    fakes = Fakes(bench, lambda mode, rep: (native if mode == "native" else libos)[rep])

    def row_sides(w: Any, modes: list[str], *rest: object) -> dict[str, Any]:
        fakes.reps.clear()  # each row counts its repetitions from 0
        if w.name.startswith("uname"):  # a row whose LibOS side fails at its first run
            return {m: fakes.side(m, fail_at=0 if m == "libos" else None) for m in modes}
        return {m: fakes.side(m) for m in modes}

    monkeypatch.setattr(bench, "OUT", tmp_path)
    monkeypatch.setattr(bench, "build_programs", lambda: None)
    monkeypatch.setattr(bench, "build_instance", lambda: None)
    monkeypatch.setattr(bench, "row_sides", row_sides)
    monkeypatch.setattr(
        sys, "argv", ["run.py", "--only", "dynamic,uname", "--modes", "native,libos"]
    )
    assert bench.main() == 0
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["pairing"] == "abba" and set(doc["loadavg"]) == {"start", "end"}
    uname, spawn = doc["results"]  # in the order of WORKLOADS
    assert uname["workload"].startswith("uname") and spawn["workload"].startswith("spawn+wait")
    cell = spawn["modes"]["libos"]
    assert cell["ratios"] == pytest.approx([1.5, 1.0, 3.0, 1.0, 1.2])
    assert cell["ratio"] == pytest.approx(1.2)
    assert (cell["ratio_min"], cell["ratio_max"]) == pytest.approx((1.0, 3.0))
    assert cell["ratio_iqr"] == pytest.approx([1.0, 1.5])
    assert cell["ratio_of_medians"] == pytest.approx(2.0)
    assert spawn["modes"]["native"]["samples"] == native
    failed = uname["modes"]["libos"]
    assert failed["error"] == "libos failed at 0" and failed["ratio"] is None
    assert uname["modes"]["native"]["median"] == pytest.approx(10.0)
    out = capsys.readouterr().out
    assert "1.20x (1.00-3.00)" in out and "meets" in out  # spawn+wait's target is 1.5x
