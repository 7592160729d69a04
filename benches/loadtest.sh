#!/usr/bin/env bash
# End-to-end benchmark: a fresh database, one or more release workers, and
# `procinst loadtest --echo` against them, so that the worker's figure and
# the broker-only round trip come from the same run on the same machine.
#
#   benches/loadtest.sh [WORKERS] [-- extra loadtest flags]
#   e.g. benches/loadtest.sh 1 -- --requests 10000
#        benches/loadtest.sh 1 -- --requests 10000 --rate 1200
#
# Worker settings come from the environment (PROCINST_BATCH_SIZE, ...).
# BENCH_BIN runs that executable instead of building the release one;
# BENCH_METRICS=1 prints the first worker's stage timings afterwards. The
# queues and the database are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
workers=${1:-1}
shift || true
[ "${1:-}" = "--" ] && shift
export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/procinst_bench}
export PROCINST_REQUEST_QUEUE=${PROCINST_REQUEST_QUEUE:-procinst.bench.requests}
export PROCINST_REPLY_QUEUE=${PROCINST_REPLY_QUEUE:-procinst.bench.replies}
export PROCINST_DEAD_LETTER_QUEUE=${PROCINST_DEAD_LETTER_QUEUE:-procinst.bench.dead}
export PROCINST_DEAD_LETTER_EXCHANGE=${PROCINST_DEAD_LETTER_EXCHANGE:-procinst.bench.dlx}
export RUST_LOG=${RUST_LOG:-warn}

bin=$(bench_bin)
db=${DATABASE_URL##*/}
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
$bin migrate

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  remove_bench_objects
}
trap cleanup EXIT
for i in $(seq 1 "$workers"); do
  PROCINST_HTTP_ADDR=127.0.0.1:$((9470 + i)) $bin run &
  pids+=($!)
done
for i in $(seq 1 "$workers"); do
  for _ in $(seq 1 100); do
    curl -sf "127.0.0.1:$((9470 + i))/readyz" >/dev/null && break
    sleep 0.1
  done
done
flags=()
for p in "${pids[@]}"; do flags+=(--worker-pid "$p"); done
$bin loadtest --echo "${flags[@]}" "$@"
[ -n "${BENCH_METRICS:-}" ] && curl -s 127.0.0.1:9471/metrics | grep -E "stage_seconds_(sum|count)|batch_size_(sum|count)|batch_seconds_(sum|count)"
