#!/usr/bin/env bash
# Memory under backlog: N requests (4 processes each) wait in the bulk
# lane before the worker starts; the worker's RSS is sampled while it
# drains them.
#
#   benches/backlog.sh [N]        (default 100000)
#
# Worker settings come from the environment (PROCINST_PREFETCH, ...);
# BENCH_METRICS=1 prints the worker's stage timings after the drain;
# BENCH_BIN runs that executable instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
n=${1:-100000}
export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/procinst_bench}
export PROCINST_REQUEST_QUEUE=procinst.backlog.requests
export PROCINST_REPLY_QUEUE=procinst.backlog.replies
export PROCINST_DEAD_LETTER_QUEUE=procinst.backlog.dead
export PROCINST_DEAD_LETTER_EXCHANGE=procinst.backlog.dlx
export RUST_LOG=${RUST_LOG:-warn}
bin=$(bench_bin)
db=${DATABASE_URL##*/}
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && { wait "$pid" || true; }; remove_bench_objects' EXIT
python3 - "$n" "$work" <<'PY'
import json, sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/si.jsonl", "w") as f:
    for i in range(64):
        f.write(json.dumps({"id": 910000000 + i, "bk_biz_id": 910000}) + "\n")
with open(f"{work}/requests.jsonl", "w") as f:
    for i in range(n):
        procs = [{"process_info": {
            "bk_process_name": f"bl-{i}-{p}", "bk_func_name": f"bl-func-{i}-{p}",
            "bk_start_param_regex": "--port=\\d+", "work_path": "/data/app/current",
            "pid_file": "/data/app/run/app.pid", "start_cmd": "./bin/start.sh --daemon",
            "stop_cmd": "./bin/stop.sh", "user": "app", "proc_num": 1, "priority": 1,
            "timeout": 30, "auto_start": True,
            "bind_info": [{"enable": True, "ip": "127.0.0.1", "port": "8000-8010",
                           "protocol": "1", "template_row_id": p}]}} for p in range(4)]
        f.write(json.dumps({"request_id": f"bl-{i}", "bk_biz_id": 910000,
                            "service_instance_id": 910000000 + i % 64,
                            "bk_username": "backlog", "processes": procs}) + "\n")
PY
$bin service-instance import "$work/si.jsonl"
# Purge what an earlier run may have left, then fill the queue: the bulk
# lane's, where `publish` puts a backfill (a build from before the lanes
# puts it on the request queue; the depth counts both).
bulk_queue=$PROCINST_REQUEST_QUEUE.bulk
rabbitmqctl -q purge_queue "$PROCINST_REQUEST_QUEUE" >/dev/null 2>&1 || true
rabbitmqctl -q purge_queue "$bulk_queue" >/dev/null 2>&1 || true
rabbitmqctl -q purge_queue "$PROCINST_REPLY_QUEUE" >/dev/null 2>&1 || true
$bin publish "$work/requests.jsonl"
depth() { rabbitmqctl -q list_queues name messages | awk -v q="$PROCINST_REQUEST_QUEUE" -v b="$bulk_queue" '$1==q || $1==b {s += $2} END {print s + 0}'; }
# Quorum queue counts reach list_queues a few seconds late: wait for them.
for _ in $(seq 1 60); do [ "$(depth)" -ge "$n" ] 2>/dev/null && break; sleep 1; done
echo "backlog: $(depth) messages"
answered() { curl -s 127.0.0.1:9479/metrics | awk '/^procinst_requests_total/ {s += $2} END {print s + 0}'; }
# Busy and total jiffies of the whole machine, from /proc/stat.
machine() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
PROCINST_HTTP_ADDR=127.0.0.1:9479 $bin run &
pid=$!
start=$(date +%s.%N)
read -r busy0 total0 < <(machine)
peak=0
samples=()
busy=()
done_by=()
last_busy=$busy0 last_total=$total0
while :; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  [ "$rss" -gt "$peak" ] && peak=$rss
  samples+=("$((rss / 1024))")
  a=$(answered)
  done_by+=("$EPOCHREALTIME $a")
  [ "$a" -ge "$n" ] && break
  sleep 1
  read -r b t < <(machine)
  busy+=("$(( 100 * (b - last_busy) / (t - last_total) ))")
  last_busy=$b last_total=$t
done
end=$(date +%s.%N)
[ -n "${BENCH_METRICS:-}" ] && curl -s 127.0.0.1:9479/metrics | grep -E "stage_seconds_(sum|count)|batch_size_(sum|count)|batch_seconds_(sum|count)"
read -r busy1 total1 < <(machine)
# utime + stime of the worker, in jiffies.
worker_cpu=$(awk '{print $14 + $15}' /proc/$pid/stat)
rabbitmqctl -q purge_queue "$PROCINST_REPLY_QUEUE" >/dev/null 2>&1 || true
echo "drained $n requests in $(echo "$end - $start" | bc) s; worker RSS MiB per second: ${samples[*]}"
# The rate once the drain is under way: from the first second that answered
# anything to the last whole second, so start-up and the tail are left out.
steady=$(printf '%s\n' "${done_by[@]}" | awk '$2 > 0 && i0 == "" {i0 = NR} {t[NR] = $1; a[NR] = $2} END {
  last = NR - 1; if (i0 != "" && last > i0) printf "%d req/s over %.1f s", (a[last] - a[i0]) / (t[last] - t[i0]), t[last] - t[i0]; else print "too short to tell"}')
echo "steady drain rate: $steady"
echo "peak RSS: $((peak / 1024)) MiB"
echo "machine busy while draining: $(( 100 * (busy1 - busy0) / (total1 - total0) )) % (idle and iowait are the rest; start-up and the last batches included); per second: ${busy[*]}"
# The seconds wholly inside the drain: the first (start-up) and the last
# (the tail, and whatever follows it) left out.
whole=()
[ ${#busy[@]} -ge 3 ] && whole=("${busy[@]:1:${#busy[@]}-2}")
inner=$(printf '%s\n' "${whole[@]}" | sort -n | awk 'NF {v[++n] = $1} END {
  if (n) printf "median %d %% (%d-%d) over %d s", v[int((n + 1) / 2)], v[1], v[n], n; else print "too short to tell"}')
echo "machine busy per whole second of the drain: $inner"
echo "worker CPU per 1000 requests: $(echo "scale=3; $worker_cpu / $(getconf CLK_TCK) * 1000 / $n" | bc) s (start-up included)"
