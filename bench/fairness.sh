#!/usr/bin/env bash
# Does one tenant's flood hurt another tenant? End-to-end latency of a quiet
# tenant at a modest rate, alone and then while a second tenant floods, on
# the services topology:
#   bench/fairness.sh OUTDIR [LIMIT] [RATE] [FLOOD]
# The server runs with HERALD_TENANT_MESSAGE_RATE=LIMIT (default 300); the
# quiet tenant sends RATE messages/s (default 20) for 30 s: first alone, then
# while the flooding tenant sends FLOOD messages/s (default 1500; `closed`:
# as fast as 32 concurrent senders can) and gets 429s past its limit. On a
# small machine a closed-loop flood measures the host's CPU, which the load
# generator shares, more than Herald's fairness. Binaries: $HERALD_RELEASE_DIR (default
# target/release) holds herald and herald-bench.
set -euo pipefail
OUT=$1; LIMIT=${2:-300}; RATE=${3:-20}; FLOOD=${4:-1500}
R=${HERALD_RELEASE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
mkdir -p "$OUT"
. "$(dirname "$0")/services.sh"
services_setup hf
export HERALD_LOG=warn HERALD_TENANT_MESSAGE_RATE=$LIMIT
QUIET=$($H tenant create quiet 2>&1 | grep -o 'hsk_[A-Za-z0-9_]*' | head -1)
FLOODER_KEY=$($H tenant create flood 2>&1 | grep -o 'hsk_[A-Za-z0-9_]*' | head -1)
HERALD_ROLES=api HERALD_LISTEN_ADDR=127.0.0.1:$PORT $H serve > "$OUT/api.log" 2>&1 & PIDS+=($!)
HERALD_ROLES=worker HERALD_LISTEN_ADDR=127.0.0.1:$((PORT+1)) $H serve > "$OUT/worker.log" 2>&1 & PIDS+=($!)
HERALD_ROLES=stats HERALD_LISTEN_ADDR=127.0.0.1:$((PORT+2)) $H serve > "$OUT/stats.log" 2>&1 & PIDS+=($!)
wait_for_http "$PORT" /api/v1/health
bench() { $B --server-url "http://127.0.0.1:$PORT" --no-verify "$@"; }

echo "alone: the quiet tenant at $RATE/s for 30 s"
bench --token "$QUIET" --rate "$RATE" --duration 30 --json "$OUT/alone.json" > "$OUT/alone.txt" 2>&1
echo "flooded: the same while the other tenant floods ($FLOOD/s against a limit of $LIMIT/s)"
if [ "$FLOOD" = closed ]; then LOAD=(--concurrency 32); else LOAD=(--rate "$FLOOD" --max-in-flight 256); fi
bench --token "$FLOODER_KEY" "${LOAD[@]}" --duration 40 --json "$OUT/flood.json" > "$OUT/flood.txt" 2>&1 &
FLOODER=$!
sleep 5
bench --token "$QUIET" --rate "$RATE" --duration 30 --json "$OUT/flooded.json" > "$OUT/flooded.txt" 2>&1
wait "$FLOODER" || true
for phase in alone flooded; do
  printf '%-8s end-to-end: %s\n' "$phase" "$(grep 'end-to-end latency' "$OUT/$phase.txt" | head -1 | sed 's/.*(ms)//')"
done
grep -E 'messages/s|API errors|errors' "$OUT/flood.txt" | head -5 || true
