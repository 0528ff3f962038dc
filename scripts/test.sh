#!/usr/bin/env bash
# README command 2: set up, lint, and run the whole test suite against the real components.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits non-zero on any failure; xdist spreads tests over the machine's cores.
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist loadgroup "$@"
