#!/usr/bin/env bash
# Every scenario of docs/benchmarks.md, each on a fresh server:
#   bench/all.sh embedded|services OUTROOT
# (30 s runs; (c) mixed waits at most 60 s for the slow endpoint's backlog.)
MODE=$1; ROOT=$2
R=$(dirname "$0")/run.sh
$R $MODE $ROOT/a -- --scenario single --concurrency 32 --duration 30 --deadline 120 --json $ROOT/a.json
$R $MODE $ROOT/b -- --scenario fanout --concurrency 32 --duration 10 --deadline 120 --json $ROOT/b.json
$R $MODE $ROOT/c0 -- --scenario fanout8 --rate 100 --duration 30 --deadline 120 --json $ROOT/c-baseline.json
$R $MODE $ROOT/c -- --scenario mixed --rate 100 --duration 30 --deadline 60 --json $ROOT/c.json
$R $MODE $ROOT/d200 -- --scenario single --rate 200 --duration 30 --deadline 120 --json $ROOT/d-200.json
$R $MODE $ROOT/d1000 -- --scenario single --rate 1000 --duration 30 --deadline 120 --json $ROOT/d-1000.json
