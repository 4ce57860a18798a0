#!/usr/bin/env bash
# Starts a PostgreSQL cluster for Stent's tests, listening on loopback only,
# with a role and database for them, and prints their DSN on stdout.
#
# Uses Debian's postgresql package (installed when missing) and a cluster of
# its own named "stent" (port $STENT_PG_PORT, default 55432), so the
# machine's main cluster is left alone. Idempotent: run it as often as you
# like; it only does what is not done yet. Safe to run concurrently (each
# test process runs it on first use): runs take turns on a lock file in
# /run/lock, next to the cluster's own state under /run/postgresql. Needs
# root.
set -euo pipefail
PORT=${STENT_PG_PORT:-55432}
CLUSTER=${STENT_PG_CLUSTER:-stent}
ROLE=stent_test
DB=stent_test
LOCK=/run/lock/stent-setup-postgres-$CLUSTER.lock
log() { echo "setup-postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages, starts a cluster)"
  exit 1
fi

# One run at a time: two runs finding the cluster down would both start it,
# and one of them fail; two would both install the package or create the
# role. flock(1) holds the lock on fd 9 until the script exits, however it
# exits. The wait is bounded by a first run's package install. Commands that
# may leave a daemon behind (apt-get's postinst, pg_createcluster,
# pg_ctlcluster) run with fd 9 closed (9>&-): a server that inherited it
# would hold the lock for as long as it runs.
mkdir -p "$(dirname "$LOCK")"
exec 9>>"$LOCK"
if ! flock -w 600 9; then
  log "another setup-postgres.sh has held $LOCK for 10 minutes; giving up (is one stuck? fuser $LOCK)"
  exit 1
fi

if ! command -v pg_createcluster >/dev/null 2>&1; then
  log "installing postgresql"
  apt-get update -qq 9>&-
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 9>&-
fi
VER=$(ls /usr/lib/postgresql | sort -V | tail -n1)
cluster_status() { pg_lsclusters -h | awk -v c="$CLUSTER" '$2 == c { print $4 }'; }
if [ -z "$(cluster_status)" ]; then
  log "creating cluster $VER/$CLUSTER on 127.0.0.1:$PORT"
  pg_createcluster "$VER" "$CLUSTER" -p "$PORT" --start-conf=manual >/dev/null 9>&-
fi
conf=/etc/postgresql/$VER/$CLUSTER/conf.d/stent.conf
want="listen_addresses = '127.0.0.1'
max_connections = 300"
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  printf '%s\n' "$want" >"$conf.tmp"
  mv "$conf.tmp" "$conf"
  pg_ctlcluster "$VER" "$CLUSTER" stop >/dev/null 2>&1 9>&- || true
fi
if [ "$(cluster_status)" != "online" ]; then
  log "starting cluster $VER/$CLUSTER"
  # Something other than this script (an init system, a person) may start
  # it meanwhile: what counts is that it runs afterwards. Its messages
  # ("Removed stale pid file." after a machine restart) go to stderr:
  # stdout is the DSN alone.
  if ! pg_ctlcluster "$VER" "$CLUSTER" start >&2 9>&- && [ "$(cluster_status)" != "online" ]; then
    log "cluster $VER/$CLUSTER did not start; see /var/log/postgresql/postgresql-$VER-$CLUSTER.log"
    exit 1
  fi
fi
psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -h /var/run/postgresql "$@"; }
ready=
for _ in $(seq 1 100); do
  if psql_admin -c 'SELECT 1' >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  log "cluster $VER/$CLUSTER does not answer on port $PORT after 20 s; see /var/log/postgresql/postgresql-$VER-$CLUSTER.log"
  exit 1
fi
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE'"
fi
if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE $DB OWNER $ROLE"
fi
echo "postgres://$ROLE:$ROLE@127.0.0.1:$PORT/$DB?sslmode=disable"
