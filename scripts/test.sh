#!/usr/bin/env bash
# Lint, type-check, check the import layers and run the whole test suite (unit, C behaviour native vs LibOS, security,
# real applications, bad input). Exits non-zero on any failure.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh || exit 1

status=0
echo "== ruff"
.venv/bin/ruff check src tests bench || status=1
echo "== mypy"
.venv/bin/mypy || status=1
echo "== import-linter (layers, no import circle: pyproject.toml [tool.importlinter]; typing imports counted: scripts/importlinter-typing.toml)"
.venv/bin/lint-imports --no-cache || status=1
.venv/bin/lint-imports --no-cache scripts/importlinter-typing.toml || status=1
echo "== pytest"
.venv/bin/pytest -q tests "$@" </dev/null
rc=$?
if [[ $rc -eq 5 ]]; then
    echo "pytest: no tests were collected" >&2
elif [[ $rc -ne 0 ]]; then
    status=1
fi
exit $status
