#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the test suite, without systemd, and write its
# connection URL (DSN) to .pgdsn at the repository root (tests/conftest.py reads it, or
# MH_PG_DSN). Idempotent: a server still answering at the recorded DSN is left alone.
#
# The cluster lives in a temporary directory owned by the `postgres` user (initdb refuses
# to run as root), listens on 127.0.0.1 on a free port, trusts local connections and
# keeps nothing worth keeping: `scripts/postgres.sh stop` stops it and removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DSN_FILE="$ROOT/.pgdsn"
SUDO=""; AS_PG="sudo -u postgres"
if [ "$(id -u)" = 0 ]; then AS_PG="runuser -u postgres --"; else SUDO="sudo"; fi

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  return 1
}

if [ "${1:-}" = stop ]; then
  if [ -f "$DSN_FILE.dir" ]; then
    dir="$(cat "$DSN_FILE.dir")"
    $AS_PG "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
  rm -f "$DSN_FILE" "$DSN_FILE.dir"
  exit 0
fi

if ! BIN="$(pg_bin)"; then
  $SUDO apt-get install -y postgresql >/dev/null
  BIN="$(pg_bin)"
fi

if [ -f "$DSN_FILE" ] && "$BIN/pg_isready" -q -d "$(cat "$DSN_FILE")" 2>/dev/null; then
  echo "postgres.sh: PostgreSQL already up at $(cat "$DSN_FILE")"
  exit 0
fi

id postgres >/dev/null 2>&1 || $SUDO useradd --system --home-dir /var/lib/postgresql postgres
dir="$(mktemp -d /tmp/meterhub-pg.XXXXXX)"
chown postgres "$dir"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
$AS_PG "$BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
# In the configuration file (not pg_ctl -o), so that a plain `pg_ctl start` after a stop
# (tests/demo/test_service_demo.py restarts the server) comes back on the same address.
cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = on
max_connections = 200
CONF
$AS_PG "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
echo "$dir" > "$DSN_FILE.dir"
echo "postgresql://postgres@127.0.0.1:$port/postgres" > "$DSN_FILE"
echo "postgres.sh: PostgreSQL up at $(cat "$DSN_FILE") (data in $dir)"
