#!/usr/bin/env bash
# One herald-bench run against a fresh server, the way docs/benchmarks.md's
# results were taken:
#   bench/run.sh embedded|services OUTDIR -- <herald-bench args>
# embedded: `herald serve` in an empty directory (SQLite, in-process queue).
# services: a new PostgreSQL database and RabbitMQ/Redis prefixes, `herald
# migrate`, a tenant, and separate api, worker and stats processes; the bench
# also counts PostgreSQL's (the postmaster's tree) and RabbitMQ's (beam.smp)
# CPU, and OUTDIR gets pg_stat snapshots and the API's and worker's /metrics.
# Binaries: $HERALD_RELEASE_DIR (default target/release) holds herald and
# herald-bench (`cargo build --release -p herald -p herald-bench`).
set -euo pipefail
MODE=$1; OUT=$2; shift 3
R=${HERALD_RELEASE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
H=$R/herald; B=$R/herald-bench
mkdir -p "$OUT"
RUN=$(date +%s%N | tail -c 8)
PORT=$((20000 + RANDOM % 10000))
export HERALD_SSRF_ALLOW=127.0.0.0/8 HERALD_LOG=warn HERALD_LISTEN_ADDR=127.0.0.1:$PORT
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; sleep 1; for p in "${PIDS[@]}"; do kill -9 $p 2>/dev/null || true; done; }
trap cleanup EXIT
PG=$(head -1 /var/run/postgresql/15-main.pid 2>/dev/null || pgrep -o -x postgres)
BEAM=$(pgrep -f beam.smp | head -1)
if [ "$MODE" = embedded ]; then
  DIR=$(mktemp -d /tmp/hb-emb-XXXX); cd "$DIR"
  $H serve > "$OUT/server.log" 2>&1 & PIDS+=($!)
  for i in $(seq 1 100); do KEY=$(grep -o 'hsk_[A-Za-z0-9_]*' "$OUT/server.log" | head -1 || true); [ -n "$KEY" ] && break; sleep 0.1; done
  SERVER_ARGS=(--server-pid ${PIDS[0]})
else
  DB=hb_$RUN
  createdb -h 127.0.0.1 -U postgres $DB
  export HERALD_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
  export HERALD_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f HERALD_AMQP_PREFIX=hb$RUN
  export HERALD_REDIS_URL=redis://127.0.0.1:6379 HERALD_REDIS_PREFIX=hb$RUN:
  $H migrate > /dev/null
  KEY=$($H tenant create bench 2>&1 | grep -o 'hsk_[A-Za-z0-9_]*' | head -1)
  HERALD_ROLES=api $H serve > "$OUT/api.log" 2>&1 & PIDS+=($!)
  HERALD_METRICS_ADDR=127.0.0.1:$((PORT+3)) HERALD_LISTEN_ADDR=127.0.0.1:$((PORT+1)) HERALD_ROLES=worker $H serve > "$OUT/worker.log" 2>&1 & PIDS+=($!)
  HERALD_LISTEN_ADDR=127.0.0.1:$((PORT+2)) HERALD_ROLES=stats $H serve > "$OUT/stats.log" 2>&1 & PIDS+=($!)
  SERVER_ARGS=(--server-pid ${PIDS[0]} --server-pid ${PIDS[1]} --server-pid ${PIDS[2]} --cpu-pid-tree $PG --cpu-pid $BEAM)
fi
for i in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/api/v1/health >/dev/null && break; sleep 0.1; done
pgsnap() {
  [ "$MODE" = services ] || return 0
  psql -h 127.0.0.1 -U postgres -d $DB -Atc "select 'db', xact_commit, tup_inserted, tup_updated, tup_deleted, tup_fetched from pg_stat_database where datname='$DB' union all select 'wal', wal_records, wal_bytes, wal_fpi, 0,0 from pg_stat_wal union all select relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, idx_scan from pg_stat_user_tables" > "$OUT/pg-$1.txt"
}
pgsnap before
$B --server-url http://127.0.0.1:$PORT --token "$KEY" "${SERVER_ARGS[@]}" "$@" > "$OUT/bench.txt" 2>&1 || echo "bench exit $?"
sleep 1; pgsnap after
curl -s http://127.0.0.1:$PORT/metrics > "$OUT/api-metrics.txt" || true
curl -s http://127.0.0.1:$((PORT+3))/metrics > "$OUT/worker-metrics.txt" || true
tail -40 "$OUT/bench.txt"
