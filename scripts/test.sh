#!/usr/bin/env bash
# One command: install meterhub with its test tools into .venv, start the
# services the tests use, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
if [ -x scripts/services.sh ]; then bash scripts/services.sh; fi
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
