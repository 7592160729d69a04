#!/usr/bin/env bash
# Cost as the tables grow: throughput at full load and latency at a fixed
# rate (about half of the empty database's maximum), with 0, 1 million and
# 5 million processes already stored and 1 million request_log rows within
# retention. The stored rows are generated with SQL, not through the queue.
#
#   benches/grow.sh [SIZES...]      (default: 0 1000000 5000000)
#   RATE=1500 REQUESTS=10000 benches/grow.sh 0 5000000
# BENCH_BIN runs that executable instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(0 1000000 5000000)
requests=${REQUESTS:-10000}
export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/procinst_grow}
export PROCINST_REQUEST_QUEUE=procinst.grow.requests
export PROCINST_REPLY_QUEUE=procinst.grow.replies
export PROCINST_DEAD_LETTER_QUEUE=procinst.grow.dead
export PROCINST_DEAD_LETTER_EXCHANGE=procinst.grow.dlx
export PROCINST_HTTP_ADDR=127.0.0.1:9481
export RUST_LOG=${RUST_LOG:-warn}
bin=$(bench_bin)
db=${DATABASE_URL##*/}
admin="${DATABASE_URL%/*}/postgres"
pid=
trap '[ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && { wait "$pid" || true; }; remove_bench_objects' EXIT

# Stored history: N processes over N/4 service instances (with their
# relation rows and one audit row per 4 processes), and 1M request_log rows
# written within the last day.
fill() {
  local n=$1
  psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO service_instance (id, bk_biz_id, bk_supplier_account, name, service_template_id, bk_host_id)
SELECT 100000000 + g, 800000, '0', 'grown-' || g, 0, g FROM generate_series(1, greatest($n / 4, 1)) g;
INSERT INTO process (bk_process_id, bk_biz_id, bk_supplier_account, service_instance_id, bk_process_name,
                     bk_func_name, bk_start_param_regex, work_path, start_cmd, proc_num, bind_info, bk_created_by)
SELECT nextval('process_id_seq'), 800000, '0', 100000000 + (g - 1) / 4 + 1, 'grown-proc-' || g,
       'grown-func-' || g, '--port=\d+', '/data/app/current', './bin/start.sh', 1,
       '[{"enable": true, "ip": "127.0.0.1", "port": "8000", "protocol": "1", "template_row_id": 1}]'::jsonb, 'grow'
FROM generate_series(1, $n) g;
INSERT INTO process_instance_relation (bk_process_id, service_instance_id, process_template_id, bk_host_id, bk_biz_id, bk_supplier_account)
SELECT bk_process_id, service_instance_id, 0, 1, bk_biz_id, bk_supplier_account FROM process WHERE bk_biz_id = 800000;
INSERT INTO audit_log (request_id, resource_type, action, resource_id, bk_biz_id, bk_supplier_account, operator, detail)
SELECT 'grown-' || g, 'service_instance', 'update', 100000000 + g, 800000, '0', 'grow', '{"created_processes": []}'
FROM generate_series(1, $n / 4) g;
INSERT INTO request_log (request_id, meaning, reply, created_at)
SELECT 'grown-req-' || g, sha256(g::text::bytea), convert_to('{"result":true,"code":0}', 'UTF8'),
       now() - make_interval(secs => (g % 86400))
FROM generate_series(1, 1000000) g;
VACUUM ANALYZE;
-- Measure the steady state, not the checkpoint that the fill's WAL would
-- otherwise start in the middle of the measured run.
CHECKPOINT;
SQL
}

printf '%-12s %-10s %10s %10s %10s %10s\n' "processes" "mode" "req/s" "p50 ms" "p99 ms" "max ms"
for n in "${sizes[@]}"; do
  psql "$admin" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
  $bin migrate >/dev/null
  [ "$n" -gt 0 ] && fill "$n"
  $bin run & pid=$!
  for _ in $(seq 1 100); do curl -sf "$PROCINST_HTTP_ADDR/readyz" >/dev/null && break; sleep 0.1; done
  full=$($bin loadtest --allow-foreign-data --requests "$requests" --worker-pid "$pid" --json)
  rate=${RATE:-$(python3 -c 'import json,sys; print(int(json.load(sys.stdin)["worker"]["requests_per_s"] / 2))' <<<"$full")}
  half=$($bin loadtest --allow-foreign-data --requests "$requests" --rate "$rate" --worker-pid "$pid" --json)
  kill -TERM "$pid"; wait "$pid" || true; pid=
  for mode in full half; do
    python3 -c '
import json, sys
r = json.load(sys.stdin)["worker"]
print("%-12s %-10s %10.0f %10.1f %10.1f %10.1f" % (sys.argv[1], sys.argv[2], r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["max_ms"]))
' "$n" "$mode$([ "$mode" = half ] && echo "@$rate")" <<<"${!mode}"
  done
done
