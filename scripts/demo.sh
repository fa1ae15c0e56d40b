#!/usr/bin/env bash
# One command: install meterhub into .venv and run the whole-system demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/meterhub demo "$@"
