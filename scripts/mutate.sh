#!/usr/bin/env bash
# Mutation check of the verification and ingest code (docs/verification.md).
# Runs scripts/mutate.py with the project's virtualenv; exits non-zero if any
# mutant survives. Never modifies the working tree (each mutant is applied in a
# temporary copy).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" scripts/mutate.py "$@"
