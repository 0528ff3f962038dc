#!/usr/bin/env bash
# Shared set-up for the demo and the tests: a virtualenv in .venv with provgate and its test
# dependencies, and the real components (OPA, registries, cosign, ...) built into the cache.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.provgate-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[gate,signer,test]'
  touch "$stamp"
fi
bash tests/infra/build-components.sh "$@" >/dev/null
