#!/usr/bin/env bash
# Start the services the test suite needs, on a fresh Debian machine without systemd.
# Idempotent: running it again leaves a healthy service alone.
#
# pcscd with the vsmartcard vpcd driver (packages pcscd, vsmartcard-vpcd): the driver,
# configured by /etc/reader.conf.d/vpcd, listens on 127.0.0.1:35963 (0x8C7B) for a virtual
# card; tests/hub/test_pcsc_interop.py connects the hub there (see docs/pcsc.md).
set -euo pipefail

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
VPCD_PORT="${VPCD_PORT:-35963}"

# PostgreSQL for the storage and service tests (scripts/postgres.sh writes its DSN to .pgdsn).
bash "$(dirname "$0")/postgres.sh"

vpcd_listening() {
  # A LISTEN socket (state 0A) on the vpcd port in /proc/net/tcp{,6}. Probing with a TCP
  # connect would disturb a hub already attached to the slot (vpcd's backlog is tiny).
  local hex
  hex="$(printf '%04X' "$VPCD_PORT")"
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" {f=1} END {exit !f}'
}

if ! command -v pcscd >/dev/null; then
  echo "services.sh: pcscd is not installed (apt-get install pcscd vsmartcard-vpcd)" >&2
  exit 1
fi
if [ ! -e /etc/reader.conf.d/vpcd ]; then
  echo "services.sh: /etc/reader.conf.d/vpcd missing (apt-get install vsmartcard-vpcd)" >&2
  exit 1
fi

pid_file=/run/pcscd/pcscd.pid
running=0
# pcscd writes "PID\n\0"; strip everything but digits.
pid=""
if [ -f "$pid_file" ]; then pid="$(tr -cd '0-9' < "$pid_file")"; fi
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  running=1
fi

if [ "$running" = 0 ]; then
  $SUDO mkdir -p /run/pcscd
  # A stale socket or pid file from a killed pcscd would make it refuse to start.
  $SUDO rm -f /run/pcscd/pcscd.comm "$pid_file"
  # Daemon mode (no --auto-exit): stays up for the whole test run.
  $SUDO pcscd
fi

for _ in $(seq 1 50); do
  if vpcd_listening; then
    echo "services.sh: pcscd up, vpcd listening on 127.0.0.1:${VPCD_PORT}"
    exit 0
  fi
  sleep 0.2
done
echo "services.sh: pcscd started but vpcd does not listen on 127.0.0.1:${VPCD_PORT}" >&2
exit 1
