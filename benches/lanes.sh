#!/usr/bin/env bash
# The lanes against each other, and against one FIFO queue, in one run:
# one worker, then `procinst loadtest --backfill N --rate RATE` twice:
#   lanes:  the backfill on the bulk lane, interactive requests on the
#           interactive lane (what procinst does);
#   fifo:   the backfill published to the interactive lane too, so that
#           interactive requests queue behind it as in a single queue (the
#           worker's bulk lane stays idle).
# Each run prints both lanes' figures: bulk drained alone, then again with
# interactive traffic, and the interactive latency. Each backlog is queued
# whole with the worker stopped (`--queue-first`), so that N requests
# stand when it drains and no publishing competes with the drain.
#
#   benches/lanes.sh [N] [RATE]        (default 60000, 50)
#
# Worker settings come from the environment; BENCH_BIN runs that
# executable instead of building the release one; BENCH_REPORT=DIR writes
# each run's HTML page there; BENCH_METRICS=1 prints, after each run, the
# worker's mean time per stage and lane so far (procinst_stage_seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
n=${1:-60000}
rate=${2:-50}
export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/procinst_lanes}
export PROCINST_REQUEST_QUEUE=procinst.lanes.requests
export PROCINST_REPLY_QUEUE=procinst.lanes.replies
export PROCINST_DEAD_LETTER_QUEUE=procinst.lanes.dead
export PROCINST_DEAD_LETTER_EXCHANGE=procinst.lanes.dlx
export PROCINST_HTTP_ADDR=127.0.0.1:9496
export RUST_LOG=${RUST_LOG:-warn}
bin=$(bench_bin)
remove_bench_objects
trap 'kill -TERM "$pid" 2>/dev/null && { wait "$pid" || true; }; remove_bench_objects' EXIT
$bin run &
pid=$!
for _ in $(seq 1 60); do $bin health >/dev/null 2>&1 && break; sleep 1; done
for mode in lanes fifo; do
  report=()
  [ -n "${BENCH_REPORT:-}" ] && mkdir -p "$BENCH_REPORT" && report=(--report "$BENCH_REPORT/$mode.html")
  echo "== $mode"
  if [ "$mode" = fifo ]; then
    PROCINST_BULK_QUEUE=$PROCINST_REQUEST_QUEUE $bin loadtest --backfill "$n" --rate "$rate" --queue-first --worker-pid "$pid" "${report[@]}" || true
  else
    $bin loadtest --backfill "$n" --rate "$rate" --queue-first --worker-pid "$pid" "${report[@]}" || true
  fi
  if [ -n "${BENCH_METRICS:-}" ]; then
    curl -s "$PROCINST_HTTP_ADDR/metrics" | awk '
      /^procinst_stage_seconds_(sum|count)\{/ {
        match($0, /stage="[^"]*"/); stage = substr($0, RSTART + 7, RLENGTH - 8)
        match($0, /lane="[^"]*"/); lane = substr($0, RSTART + 6, RLENGTH - 7)
        if ($0 ~ /_sum\{/) sum[lane " " stage] = $2; else count[lane " " stage] = $2
      }
      END { for (k in sum) if (count[k] > 0) printf "mean %-22s %8.2f ms over %d batches\n", k, 1000 * sum[k] / count[k], count[k] }' | sort
  fi
done
