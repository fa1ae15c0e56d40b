#!/usr/bin/env bash
# Create .venv and install meterhub into it, on a fresh Debian machine with Python 3.11.
# Usage: scripts/bootstrap.sh [extra]   (extra: "test" installs the test tools too)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

need_apt=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "$extra" = "test" ]; then
  # Test oracles and services (pcscd, vpcd, opensc, the pyscard build tools): see docs/pcsc.md.
  for pkg in $(cat scripts/apt-test-packages.txt 2>/dev/null | grep -v '^#'); do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
  done
fi
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$extra" = "test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
  # Test-only oracles installed without their dependency pins (see tests/README.md).
  if [ -s scripts/pip-test-nodeps.txt ]; then
    .venv/bin/python -m pip install -q --no-deps -r scripts/pip-test-nodeps.txt
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
