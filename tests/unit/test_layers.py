"""The import layers of pyproject.toml's [tool.importlinter]: imports point down, no circle;
and scripts/importlinter-typing.toml: no circle even counting imports made for annotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imports_follow_the_layers() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_no_circle_even_for_typing() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    config = ROOT / "scripts" / "importlinter-typing.toml"
    done = subprocess.run(
        [str(lint), "--no-cache", str(config)], cwd=ROOT, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_the_docs_draw_the_layers_of_the_contract() -> None:
    """docs/contributing.md's one-line diagram and docs/internals.md's list are the layers
    contract of pyproject.toml, in its order."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["id"] == "layers"]
    typing = tomllib.loads((ROOT / "scripts" / "importlinter-typing.toml").read_text())
    (same,) = [
        c["layers"] for c in typing["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    assert same == layers
    line = " > ".join(layers)
    assert f"    {line}\n" in (ROOT / "docs" / "contributing.md").read_text()
    internals = (ROOT / "docs" / "internals.md").read_text()
    drawn = internals.split("## Layers", 1)[1].split("```", 2)[1]
    heads = [row.split("  ")[0].strip() for row in drawn.splitlines() if row and row[0] != " "]
    names = [" | ".join(p.strip().removesuffix("/").removesuffix(".py") for p in h.split("|"))
             for h in heads]  # fmt: skip
    assert names == layers
