#!/usr/bin/env bash
# The PostgreSQL floor: what PostgreSQL alone costs, in CPU per message, for
# the statements Herald issues per batch (see docs/benchmarks.md, "The floor").
#
# Creates a scratch database ($FLOOR_DB, dropped first if it exists) with
# Herald's schema (migrations/postgres, applied with psql) and one tenant,
# application and endpoint (seed.sql), then for each batch size runs each
# script with pgbench for $FLOOR_SECONDS, $FLOOR_REPEAT times (accept on an
# emptied database, the others each on a fresh prefill.sql):
#
#   accept        accept.sql: n messages + n deliveries, one statement
#   targets       targets.sql: the worker's three reads for n tasks
#   record        record.sql: n attempts + n delivery updates, one statement
#   record-local  record-async.sql, made from record.sql: the same in an
#                 explicit transaction with SET LOCAL
#                 synchronous_commit = off (BEGIN, SET LOCAL, it, COMMIT)
#   record-off    record.sql on connections with synchronous_commit = off
#                 for the whole session (PGOPTIONS), no extra statements
#
# Every pgbench run uses prepared statements planned per call (-M prepared,
# plan_cache_mode = force_custom_plan), as Herald's connections do, unless
# FLOOR_PLAN_MODE says otherwise. Before each run: CHECKPOINT.
# CPU (utime + stime from /proc): pgbench's backends,
# the postmaster and PostgreSQL's background processes (see run below);
# divided by the messages (transactions × n) it gives pg_ms_per_msg.
# tree_ms_per_msg is the whole server's CPU over the run per message, other
# databases' work included: the two agree when nothing else uses the server.
#
# Prints one line per run (tab-separated) and writes them to $FLOOR_OUT.
#
# Environment (defaults): FLOOR_SECONDS (15), FLOOR_REPEAT (2),
# FLOOR_CLIENTS (4: pgbench clients, -c), FLOOR_BATCHES ("1 4 8 32 128"),
# FLOOR_PREFILL_RATE (20000: messages/s per client the prefill allows for,
# 2000 × n at most), FLOOR_VARIANTS (which of the five to run: all),
# FLOOR_PLAN_MODE (plan_cache_mode: force_custom_plan, as Herald;
# force_generic_plan plans each statement once per connection),
# FLOOR_DB (herald_floor), FLOOR_OUT (pg-floor.tsv), PGHOST (127.0.0.1),
# PGUSER (postgres), PG_PIDFILE (/var/run/postgresql/15-main.pid; its first
# line is the postmaster's pid, as is the first line of postmaster.pid in
# the data directory).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
migrations=$here/../../migrations/postgres
seconds=${FLOOR_SECONDS:-15}
repeat=${FLOOR_REPEAT:-2}
clients=${FLOOR_CLIENTS:-4}
batches=${FLOOR_BATCHES:-1 4 8 32 128}
prefill_rate=${FLOOR_PREFILL_RATE:-20000}
variants=${FLOOR_VARIANTS:-accept targets record record-local record-off}
plan_mode=${FLOOR_PLAN_MODE:-force_custom_plan}
db=${FLOOR_DB:-herald_floor}
out=${FLOOR_OUT:-pg-floor.tsv}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
postmaster=$(head -1 "${PG_PIDFILE:-/var/run/postgresql/15-main.pid}")
hz=$(getconf CLK_TCK)

sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

# utime + stime of process $1, in ticks; nothing when it is gone.
ticks_of() {
    local line rest
    read -r line 2>/dev/null <"/proc/$1/stat" || return 0
    rest=${line##*) }
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $rest
    echo $((${12} + ${13}))
}

# The postmaster's own ticks and those of PostgreSQL's background processes
# (checkpointer, WAL writer, …): the shared part of the server's CPU.
shared_ticks() {
    local total pid
    total=$(ticks_of "$postmaster")
    for pid in $background; do
        total=$((total + $(ticks_of "$pid")))
    done
    echo "$total"
}

# The whole tree: the postmaster with its reaped children (cutime, cstime)
# and all its live children, other databases' backends included.
tree_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$postmaster" '
        { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
          # f[2] ppid, f[12] utime, f[13] stime, f[14] cutime, f[15] cstime
          if (pid == pm) t += f[12] + f[13] + f[14] + f[15]
          else if (f[2] == pm) t += f[12] + f[13] }
        END { print t }'
}

# Busy ticks of the whole machine: user nice system irq softirq steal.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
total_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }

# The backends of pgbench's connections, once all $clients are connected.
pgbench_backends() {
    local pids
    pids=$(sql -At -c "SELECT pid FROM pg_stat_activity
                       WHERE datname = '$db' AND application_name = 'pgbench'")
    [ "$(echo "$pids" | grep -c .)" = "$clients" ] && echo "$pids"
}

# run NAME N SCRIPT [pgbench -D options…]: one measured pgbench run.
#
# PostgreSQL's CPU for it: the ticks of pgbench's backends (all new, so all
# their time), read every 50 ms while they live (what one uses between its
# last reading and its exit at the end of the run, under 50 ms, is missed),
# plus what the postmaster and the background processes used meanwhile.
# Other databases' backends are left out. The whole tree's figure (everything
# the server did, whoever for) is printed beside it.
run() {
    local name=$1 n=$2 script=$3
    shift 3
    sql -c CHECKPOINT
    background=$(sql -At -c "SELECT pid FROM pg_stat_activity
                             WHERE backend_type NOT IN ('client backend', 'autovacuum worker')")
    local shared0 tree0 m0 t0 shared1 tree1 m1 t1 log bench pids="" pid ticks mine=0
    local -A last=()
    log=$(mktemp)
    shared0=$(shared_ticks) tree0=$(tree_ticks) m0=$(machine_ticks) t0=$(total_ticks)
    PGOPTIONS="-c plan_cache_mode=$plan_mode ${extra_options:-}" \
        pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" \
        -f "$here/$script" -D n="$n" "$@" "$db" >"$log" 2>&1 &
    bench=$!
    while kill -0 "$bench" 2>/dev/null; do
        [ -n "$pids" ] || pids=$(pgbench_backends) || true
        for pid in $pids; do
            ticks=$(ticks_of "$pid")
            [ -z "$ticks" ] || last[$pid]=$ticks
        done
        sleep 0.05
    done
    if ! wait "$bench"; then
        cat "$log" >&2
        echo "pgbench failed: $name n=$n" >&2
        exit 1
    fi
    sleep 0.5 # let the postmaster reap the backends, for the tree's figure
    shared1=$(shared_ticks) tree1=$(tree_ticks) m1=$(machine_ticks) t1=$(total_ticks)
    if [ "${#last[@]}" != "$clients" ]; then
        echo "found ${#last[@]} of pgbench's $clients backends: $name n=$n" >&2
        exit 1
    fi
    for ticks in "${last[@]}"; do
        mine=$((mine + ticks))
    done
    local tx failed tps
    tx=$(awk '/number of transactions actually processed/ { print $NF }' "$log")
    failed=$(awk '/number of failed transactions/ { print $5 }' "$log")
    tps=$(awk '/^tps = .*without initial connection time/ { print $3 }' "$log")
    rm -f "$log"
    if [ "${failed:-0}" != 0 ] || [ -z "$tx" ]; then
        echo "pgbench reported failures: $name n=$n" >&2
        exit 1
    fi
    awk -v name="$name" -v plan="$plan_mode" -v n="$n" -v tx="$tx" -v tps="$tps" -v hz="$hz" \
        -v pg=$((mine + shared1 - shared0)) -v tree=$((tree1 - tree0)) \
        -v busy=$((m1 - m0)) -v total=$((t1 - t0)) 'BEGIN {
        msgs = tx * n
        printf "%s\t%s\t%d\t%.0f\t%.0f\t%.2f\t%.3f\t%.3f\t%.0f\n", name, plan, n, tps, tps * n,
            pg / hz, pg / hz * 1000 / msgs, tree / hz * 1000 / msgs, busy * 100 / total
    }' | tee -a "$out"
}

# Fresh messages and deliveries for a run of record*.sql or targets.sql:
# enough for $FLOOR_PREFILL_RATE messages/s per client, or 2000 × n if less
# (a run that needs more fails: its attempts' messages do not exist).
prefill() { sql -v m="$per_client" -v clients="$clients" -f "$here/prefill.sql"; }

# Attempts inserted must equal deliveries updated (one attempt each).
check_records() {
    local attempts updated
    attempts=$(sql -At -c "SELECT count(*) FROM message_attempt")
    updated=$(sql -At -c "SELECT count(*) FROM delivery WHERE attempts > 0")
    if [ "$attempts" != "$updated" ]; then
        echo "$attempts attempts but $updated deliveries updated" >&2
        exit 1
    fi
}

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
for migration in "$migrations"/*.sql; do
    sql -1 -f "$migration"
done
sql -f "$here/seed.sql"

printf 'script\tplan_cache_mode\tn\ttx/s\tmsg/s\tpg_cpu_s\tpg_ms_per_msg\ttree_ms_per_msg\tmachine_busy_pct\n' | tee "$out"

# Whether $1 is one of $FLOOR_VARIANTS.
wanted() { case " $variants " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

for n in $batches; do
    per_client=$((seconds * (prefill_rate < 2000 * n ? prefill_rate : 2000 * n)))
    if wanted accept; then
        for _ in $(seq "$repeat"); do
            sql -c "TRUNCATE message CASCADE"
            run accept "$n" accept.sql -D k=0
        done
    fi
    if wanted targets; then
        prefill
        for _ in $(seq "$repeat"); do
            run targets "$n" targets.sql -D t=0 -D blocks=$((per_client / n))
        done
    fi
    for variant in record record-local record-off; do
        wanted "$variant" || continue
        script=record.sql extra_options=
        case $variant in
        record-local) script=record-async.sql
            # record.sql inside an explicit transaction with SET LOCAL: three
            # statements more (BEGIN, SET LOCAL, COMMIT), each a round trip.
            { grep '^\\set' "$here/record.sql"
              echo 'BEGIN;'
              echo 'SET LOCAL synchronous_commit = off;'
              grep -v -e '^\\set' -e '^--' "$here/record.sql"
              echo 'COMMIT;'
            } >"$here/$script" ;;
        record-off) extra_options="-c synchronous_commit=off" ;;
        esac
        for _ in $(seq "$repeat"); do
            prefill
            run "$variant" "$n" "$script" -D j=0
            check_records
        done
    done
done
