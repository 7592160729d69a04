#!/usr/bin/env bash
# Before and after in one session: alternates the workers built from two
# revisions (or two binaries) under the same load, round after round, so
# that the machine's drift hits both alike. Every round runs
# `procinst loadtest --echo` (from the newest build, so the load generator
# and the broker-only baseline are the same for both) against a fresh
# database and one worker of each build. CPU is given in microseconds per
# request for the worker, RabbitMQ, PostgreSQL and the load generator.
#
#   benches/compare.sh BEFORE AFTER [ROUNDS] [-- extra loadtest flags]
#   e.g. benches/compare.sh main HEAD 3
#        benches/compare.sh 35e3fde HEAD 2 -- --requests 20000 --rate 2000
#
# BEFORE and AFTER are executables or git revisions; a revision is built
# (release) from a temporary worktree into target/compare/. Worker settings
# come from the environment (PROCINST_BATCH_SIZE, ...). Prints one line per
# run and the median of each figure per build.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
[ $# -ge 2 ] || { sed -n '2,16p' "$0"; exit 2; }
before=$1 after=$2
shift 2
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds=$1; shift; fi
[ "${1:-}" = "--" ] && shift
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--requests 20000)

export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/procinst_compare}
export PROCINST_REQUEST_QUEUE=procinst.compare.requests
export PROCINST_REPLY_QUEUE=procinst.compare.replies
export PROCINST_DEAD_LETTER_QUEUE=procinst.compare.dead
export PROCINST_DEAD_LETTER_EXCHANGE=procinst.compare.dlx
export RUST_LOG=${RUST_LOG:-warn}
http=127.0.0.1:9491
out=target/compare
mkdir -p "$out"

bin_before=$(build "$before")
bin_after=$(build "$after")
# The load generator and echo of the newer build serve both sides.
loadtest=$bin_after

db=${DATABASE_URL##*/}
admin="${DATABASE_URL%/*}/postgres"
pid=
results=$(mktemp)
cleanup() {
  rm -f "$results"
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  remove_bench_objects
}
trap cleanup EXIT

# One measured run of `bin`; prints the loadtest's JSON report.
measure() {
  local bin=$1
  psql "$admin" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
  "$bin" migrate >/dev/null 2>&1
  # A checkpoint now, so that a timed one does not land in the measurement.
  psql "$admin" -qc CHECKPOINT >/dev/null
  PROCINST_HTTP_ADDR=$http "$bin" run 2>>"$out/worker.log" &
  pid=$!
  for _ in $(seq 1 100); do
    curl -sf "$http/readyz" >/dev/null && break
    sleep 0.1
  done
  "$loadtest" loadtest --echo --json --worker-pid "$pid" "${flags[@]}" 2>>"$out/loadtest.log"
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}

for round in $(seq 1 "$rounds"); do
  for side in before after; do
    bin=$bin_before
    [ "$side" = after ] && bin=$bin_after
    report=$(measure "$bin" | tr -d '\n')
    printf '%s\t%s\t%s\n' "$round" "$side" "$report" >>"$results"
  done
done

python3 - "$results" "$bin_before" "$bin_after" <<'PY'
import json, statistics, sys
rows = [line.rstrip("\n").split("\t", 2) for line in open(sys.argv[1])]
names = {"before": sys.argv[2], "after": sys.argv[3]}

def figures(r):
    w, e = r["worker"], r.get("echo") or {}
    cpu = r.get("worker_cpu") or {}
    parties = cpu.get("parties_pct", {})
    db = r.get("database_per_request") or {}
    # CPU microseconds per request of a party: its share of the machine
    # over the phase, divided by the rate.
    cores = cpu.get("cores", 0)
    us = lambda party: parties.get(party, 0) / 100 * cores / w["requests_per_s"] * 1e6
    return {
        "echo req/s": e.get("requests_per_s"),
        "worker req/s": w["requests_per_s"],
        "worker/echo": r.get("worker_over_echo"),
        "busy %": cpu.get("busy_pct"),
        "worker us": us("worker"),
        "rabbitmq us": us("rabbitmq"),
        "postgres us": us("postgresql"),
        "loadtest us": us("loadtest"),
        "p50 ms": w["p50_ms"],
        "p99 ms": w["p99_ms"],
        "echo p50": e.get("p50_ms"),
        "echo p99": e.get("p99_ms"),
        # The half-load target reads p50 against the echo's, round by round.
        "p50/echo": w["p50_ms"] / e["p50_ms"] if e.get("p50_ms") else None,
        "WAL B/req": db.get("wal_bytes"),
        "RSS MiB": r.get("worker_peak_rss_mib"),
    }

table = [(rnd, side, figures(json.loads(rep))) for rnd, side, rep in rows]
keys = list(table[0][2])
fmt = lambda v: "-" if v is None else (f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}")
print("round side   " + " ".join(f"{k:>12}" for k in keys))
for rnd, side, f in table:
    print(f"{rnd:>5} {side:<6} " + " ".join(f"{fmt(f[k]):>12}" for k in keys))
print()
for side in ("before", "after"):
    med = {k: statistics.median([f[k] for _, s, f in table if s == side and f[k] is not None] or [0]) for k in keys}
    print(f"median {side:<6} " + " ".join(f"{fmt(med[k]):>12}" for k in keys) + f"   {names[side]}")
PY
