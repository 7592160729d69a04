#!/usr/bin/env bash
# Two businesses on the bulk lane, shared and as one FIFO queue, in one
# run: for each round, a worker with the bulk lane's shards (the default)
# and one without (PROCINST_BULK_SHARDS=0), each measured with
#   procinst loadtest --backfill N --second-backfill M
# (a backfill of N for one business, then one of M for another once the
# first is published). Each line gives when the second backfill was done
# against its target: twice its time at half the lane's rate (1 or less
# meets it).
#
#   benches/sharing.sh [N] [M] [ROUNDS]     (default 100000, 1000, 3)
#
# Worker settings come from the environment; BENCH_BIN runs that
# executable instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
n=${1:-100000}
m=${2:-1000}
rounds=${3:-3}
export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/procinst_sharing}
export PROCINST_REQUEST_QUEUE=procinst.sharing.requests
export PROCINST_REPLY_QUEUE=procinst.sharing.replies
export PROCINST_DEAD_LETTER_QUEUE=procinst.sharing.dead
export PROCINST_DEAD_LETTER_EXCHANGE=procinst.sharing.dlx
export PROCINST_HTTP_ADDR=127.0.0.1:9497
export RUST_LOG=${RUST_LOG:-warn}
bin=$(bench_bin)
pid=
stop_worker() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null && { wait "$pid" || true; }; fi
  pid=
}
trap 'stop_worker; remove_bench_objects' EXIT
for round in $(seq 1 "$rounds"); do
  for shards in 8 0; do
    remove_bench_objects
    PROCINST_BULK_SHARDS=$shards $bin run &
    pid=$!
    for _ in $(seq 1 60); do $bin health >/dev/null 2>&1 && break; sleep 1; done
    echo "== round $round, PROCINST_BULK_SHARDS=$shards"
    PROCINST_BULK_SHARDS=$shards $bin loadtest --backfill "$n" --second-backfill "$m" --worker-pid "$pid" || true
    stop_worker
  done
done
