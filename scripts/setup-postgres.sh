#!/usr/bin/env bash
# Starts a PostgreSQL cluster for Stent's tests, listening on loopback only,
# with a role and database for them, and prints their DSN on stdout.
#
# Uses Debian's postgresql package (installed when missing) and a cluster of
# its own named "stent" (port $STENT_PG_PORT, default 55432), so the
# machine's main cluster is left alone. Idempotent: run it as often as you
# like; it only does what is not done yet. Needs root.
set -euo pipefail
PORT=${STENT_PG_PORT:-55432}
CLUSTER=stent
ROLE=stent_test
DB=stent_test
log() { echo "setup-postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages, starts a cluster)"
  exit 1
fi
if ! command -v pg_createcluster >/dev/null 2>&1; then
  log "installing postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
VER=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | awk -v c="$CLUSTER" '$2 == c { found = 1 } END { exit !found }'; then
  log "creating cluster $VER/$CLUSTER on 127.0.0.1:$PORT"
  pg_createcluster "$VER" "$CLUSTER" -p "$PORT" --start-conf=manual >/dev/null
fi
conf=/etc/postgresql/$VER/$CLUSTER/conf.d/stent.conf
want="listen_addresses = '127.0.0.1'
max_connections = 300"
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  printf '%s\n' "$want" >"$conf"
  pg_ctlcluster "$VER" "$CLUSTER" stop >/dev/null 2>&1 || true
fi
status=$(pg_lsclusters -h | awk -v c="$CLUSTER" '$2 == c { print $4 }')
if [ "$status" != "online" ]; then
  log "starting cluster $VER/$CLUSTER"
  pg_ctlcluster "$VER" "$CLUSTER" start
fi
psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -h /var/run/postgresql "$@"; }
for _ in $(seq 1 50); do
  psql_admin -c 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.2
done
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE'"
fi
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE $DB OWNER $ROLE"
fi
echo "postgres://$ROLE:$ROLE@127.0.0.1:$PORT/$DB?sslmode=disable"
