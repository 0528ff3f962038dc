#!/usr/bin/env bash
# README command 1: set up, then run provgate end to end on embedded defaults (local registry,
# bundled policies, the bundled TEP-0084 PipelineRun): sign, push, verify, allow and deny.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec .venv/bin/python scripts/demo.py "$@"
