#!/usr/bin/env bash
# The quick loop: lint, types, layers and the unit tests (no LibOS instance is started), with
# Hypothesis's "dev" profile (fewer examples). About a minute on a 2-core machine; the whole
# suite is scripts/test.sh. Extra arguments go to pytest (e.g. -k sefs).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ -x .venv/bin/pytest ]] || bash scripts/setup.sh || exit 1

status=0
.venv/bin/ruff check src tests bench || status=1
.venv/bin/mypy || status=1
for config in pyproject.toml scripts/importlinter-typing.toml; do
    .venv/bin/lint-imports --no-cache "$config" >/dev/null ||
        { .venv/bin/lint-imports --no-cache "$config"; status=1; }
done
HYPOTHESIS_PROFILE=dev .venv/bin/pytest -q -p no:cacheprovider tests/unit "$@" </dev/null || status=1
exit $status
