#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the shared-store tests and
# print the export line for its URL. Usage: eval "$(bash .ci/postgres.sh)";
# `bash .ci/postgres.sh --stop` stops it.
# Two databases: MLflow and Optuna both keep an `alembic_version` table.
set -euo pipefail
PORT="${ENSEMBLECV_PG_PORT:-55432}"
DATA="${ENSEMBLECV_PG_DATA:-/tmp/ensemblecv-pg}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$BIN/initdb" ] || { echo "echo 'postgres.sh: PostgreSQL server binaries not found' >&2"; exit 1; }
as_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ -f "$DATA/PG_VERSION" ]; then
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
fi
[ "${1:-}" = "--stop" ] && exit 0
rm -rf "$DATA"
mkdir -p "$DATA"
[ "$(id -u)" = "0" ] && chown postgres: "$DATA"
as_pg "$BIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
as_pg "$BIN/pg_ctl" -D "$DATA" -o "-h 127.0.0.1 -p $PORT -k $DATA" -l "$DATA/server.log" -w start >/dev/null
for db in ensemblecv_mlflow ensemblecv_optuna; do
  "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$db"
done
echo "export ENSEMBLECV_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$PORT"
