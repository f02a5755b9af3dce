#!/usr/bin/env bash
# Set everything up (skipping what is installed) and run the whole test suite, lint and types.
# Exits non-zero on any failure. Extra arguments go to pytest (e.g. -k hedging).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/setup.sh
mkdir -p test-output
status=0
echo "[test] ruff";  .venv/bin/ruff check . || status=1
echo "[test] mypy";  .venv/bin/mypy || status=1
echo "[test] pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
exit "$status"
