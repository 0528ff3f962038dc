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
# The editable install as a plain path entry (setuptools' "compat" mode): the default mode's import hook
# is imported by every interpreter start in .venv (each `gate`, `signer` and test subprocess), ~15 ms
# each. Should a setuptools no longer offer compat mode, the default mode is installed instead.
# The stamp records which mode is installed, so an older install (an empty stamp) is redone once.
stamp=.venv/.provgate-installed
installed=$(cat "$stamp" 2>/dev/null || true)
if [[ ! -f $stamp || pyproject.toml -nt $stamp || $installed != editable_mode=* ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if .venv/bin/python -m pip install -q -e '.[gate,signer,test]' --config-settings editable_mode=compat; then
    mode=compat
  else
    echo "setup: editable_mode=compat not available, installing the default editable mode" >&2
    .venv/bin/python -m pip install -q -e '.[gate,signer,test]'
    mode=default
  fi
  echo "editable_mode=$mode" >"$stamp"
fi
bash tests/infra/build-components.sh "$@" >/dev/null
