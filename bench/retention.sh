#!/usr/bin/env bash
# Does retention block inserts? API latency at a modest rate, without and
# then during the pruning of a backlog, on the services topology:
#   bench/retention.sh OUTDIR [MESSAGES] [RATE]
# 1. fill: MESSAGES (default 100000) messages through the API (herald-bench,
#    closed loop), each delivered, with payloads kept 60 s and no pruning;
# 2. baseline: herald-bench at RATE messages/s (default 200) for 30 s;
# 3. during: the worker restarted with HERALD_RETENTION=1, so its retention
#    job deletes every message, delivery and attempt of the fill, while
#    herald-bench sends at RATE in 30-s windows until the fill is gone.
# OUTDIR gets each bench's report (JSON and text), the worker's log and a
# line per second of the retention counters. Binaries: $HERALD_RELEASE_DIR
# (default target/release) holds herald and herald-bench.
set -euo pipefail
OUT=$1; MESSAGES=${2:-100000}; RATE=${3:-200}
R=${HERALD_RELEASE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
mkdir -p "$OUT"
. "$(dirname "$0")/services.sh"
services_setup hr
export HERALD_LOG=info,sqlx=warn
KEY=$($H tenant create bench 2>&1 | grep -o 'hsk_[A-Za-z0-9_]*' | head -1)
HERALD_ROLES=api HERALD_LISTEN_ADDR=127.0.0.1:$PORT HERALD_PAYLOAD_RETENTION=60 \
  $H serve > "$OUT/api.log" 2>&1 & PIDS+=($!)
worker() { # $1: HERALD_RETENTION, $2: HERALD_RETENTION_INTERVAL
  HERALD_ROLES=worker,stats HERALD_LISTEN_ADDR=127.0.0.1:$((PORT+1)) \
    HERALD_METRICS_ADDR=127.0.0.1:$((PORT+2)) HERALD_RETENTION=$1 HERALD_RETENTION_INTERVAL=$2 \
    $H serve >> "$OUT/worker.log" 2>&1 & PIDS+=($!)
  wait_for_http $((PORT+2)) /health
}
worker 0 86400
wait_for_http "$PORT" /api/v1/health
bench() { $B --server-url "http://127.0.0.1:$PORT" --token "$KEY" --no-verify "$@"; }

echo "fill: $MESSAGES messages"
bench --messages "$MESSAGES" --concurrency 32 --deadline 300 --json "$OUT/fill.json" > "$OUT/fill.txt" 2>&1
# What autovacuum does after a fill like this one (statistics, dead index
# entries of the deliveries that finished); where it is off, as on the
# machine the numbers in docs/benchmarks.md come from, this stands in for it.
psql -h 127.0.0.1 -U postgres -d "$DB" -qc "VACUUM ANALYZE"
echo "baseline: $RATE/s for 30 s, no pruning"
bench --rate "$RATE" --duration 30 --json "$OUT/baseline.json" > "$OUT/baseline.txt" 2>&1
psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "SELECT 'before', count(*), (SELECT count(*) FROM message_attempt), (SELECT count(*) FROM delivery) FROM message" | tee "$OUT/rows.txt"

echo "during: the worker prunes everything older than 1 s while $RATE/s are sent"
kill "${PIDS[1]}"; wait "${PIDS[1]}" 2>/dev/null || true
worker 1 1
( while true; do
    printf '%s ' "$(date +%s.%N | cut -c1-14)"
    curl -s "http://127.0.0.1:$((PORT+2))/metrics" | grep '^herald_retention_pruned_total' | tr '\n' ' '
    echo
    sleep 1
  done ) > "$OUT/pruned.txt" 2>&1 & PIDS+=($!)
# 30-s windows until the fill is gone (at most 10), each reported on its own.
START=$(date -u +%Y-%m-%dT%H:%M:%S)
left() { psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "SELECT count(*) FROM message WHERE created_at < '$START+00'"; }
for n in $(seq 1 10); do
  bench --rate "$RATE" --duration 30 --json "$OUT/during-$n.json" > "$OUT/during-$n.txt" 2>&1
  echo "window $n: $(left) fill messages left"
  [ "$(left)" = 0 ] && break
done
psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "SELECT 'after', count(*), (SELECT count(*) FROM message_attempt), (SELECT count(*) FROM delivery) FROM message" | tee -a "$OUT/rows.txt"
printf '%-9s API latency: %s\n' baseline "$(grep 'API latency' "$OUT/baseline.txt" | sed 's/.*(ms)//')"
for f in "$OUT"/during-*.txt; do
  printf '%-9s API latency: %s\n' "$(basename "$f" .txt)" "$(grep 'API latency' "$f" | sed 's/.*(ms)//')"
done
grep 'retention removed' "$OUT/worker.log" | tail -3 || true
