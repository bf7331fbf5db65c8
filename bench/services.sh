# Sourced by bench/retention.sh and bench/fairness.sh: a fresh PostgreSQL
# database and RabbitMQ/Redis prefixes named `<prefix>_<run>`, migrated, with
# the HERALD_* variables that point a `herald` process at them, a random port
# base ($PORT) and a cleanup on exit that stops every pid in $PIDS and drops
# the database. Needs $R (the release directory); sets $H and $B.
services_setup() { # $1: a short prefix for the database and queues
  H=$R/herald; B=$R/herald-bench
  RUN=$(date +%s%N | tail -c 8)
  PORT=$((20000 + RANDOM % 10000))
  DB=$1_$RUN
  export HERALD_SSRF_ALLOW=127.0.0.0/8
  export HERALD_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
  export HERALD_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f HERALD_AMQP_PREFIX=$1$RUN
  export HERALD_REDIS_URL=redis://127.0.0.1:6379 HERALD_REDIS_PREFIX=$1$RUN:
  PIDS=()
  trap services_cleanup EXIT
  createdb -h 127.0.0.1 -U postgres "$DB"
  $H migrate > /dev/null
}

services_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dropdb -h 127.0.0.1 -U postgres --if-exists "$DB" || true
}

# Waits (at most 10 s) until a process answers on http://127.0.0.1:$1$2.
wait_for_http() {
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1$2" > /dev/null && return; sleep 0.1; done
}
