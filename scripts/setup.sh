#!/usr/bin/env bash
# Shared set-up for the demo and the tests: a virtualenv in .venv with provgate and its test
# dependencies, and the real components built into the cache.
#
#   scripts/setup.sh [GROUP|COMPONENT]...     which components: demo, test (default), ... (see
#                                             tests/infra/build-components.sh)
#
# Idempotent: a second run only checks. One progress line per step that does work; the details of a
# failed step are printed with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || { echo "setup: provgate needs Python 3.11 or newer; $PY is not (set PYTHON=python3.11)" >&2; exit 2; }
  "$PY" -m venv .venv
fi
# The editable install as a plain path entry (setuptools' "compat" mode): the default mode's import hook
# is imported by every interpreter start in .venv (each `gate`, `signer` and test subprocess), ~15 ms
# each. Should a setuptools no longer offer compat mode, the default mode is installed instead.
# The stamp records which mode is installed, so an older install (an empty stamp) is redone once.
stamp=.venv/.provgate-installed
installed=$(cat "$stamp" 2>/dev/null || true)
if [[ ! -f $stamp || pyproject.toml -nt $stamp || $installed != editable_mode=* ]]; then
  printf '[setup] installing provgate and its Python dependencies into .venv — first run only ... ' >&2
  started=$SECONDS
  log=.venv/setup.log
  pip=(.venv/bin/python -m pip install --disable-pip-version-check)
  mode=compat
  {
    "${pip[@]}" --upgrade pip && {
      "${pip[@]}" -e '.[gate,signer,test]' --config-settings editable_mode=compat || {
        echo "setup: editable_mode=compat not available, installing the default editable mode"
        mode=default
        "${pip[@]}" -e '.[gate,signer,test]'
      }
    }
  } >"$log" 2>&1 || {
    printf 'FAILED\n' >&2
    tail -n 25 "$log" | sed 's/^/    /' >&2
    echo "setup: installing the Python dependencies failed; the whole log: $log" >&2
    exit 1
  }
  echo "editable_mode=$mode" >"$stamp"
  printf '%ds\n' $((SECONDS - started)) >&2
fi
bash tests/infra/build-components.sh "$@" >/dev/null
