#!/usr/bin/env bash
# Backlog drains of several builds or settings, alternated round after
# round in one run (benches/backlog.sh each time), so that the machine's
# drift hits all alike. Prints one line per drain and the medians.
#
#   benches/backlog_rounds.sh ROUNDS SIDE... [-- N]
#   e.g. benches/backlog_rounds.sh 5 "before=9ebbb01 PROCINST_PREFETCH=1024" "after=HEAD"
#
# A SIDE is LABEL=WHAT followed by worker settings: WHAT is an executable
# or a git revision (built once into target/compare/). N is the backlog
# (default 100000). Per drain: the steady rate (start-up and tail left
# out), peak RSS, the worker's CPU per 1,000 requests and the machine's
# busy share per second; the median busy leaves out the first and last
# seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
[ $# -ge 2 ] || { sed -n '2,15p' "$0"; exit 2; }
rounds=$1
shift
sides=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sides+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
n=${1:-100000}

# Each side as "label bin VAR=value ...", with its executable built first.
resolved=()
for side in "${sides[@]}"; do
  read -r head settings <<<"$side"
  resolved+=("${head%%=*} $(build "${head#*=}") ${settings:-}")
done

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
  for side in "${resolved[@]}"; do
    read -r label bin settings <<<"$side"
    # shellcheck disable=SC2086 # settings are words on purpose
    report=$(env $settings BENCH_BIN="$bin" benches/backlog.sh "$n" 2>&1)
    rate=$(sed -n 's/^steady drain rate: \([0-9]*\) req\/s.*/\1/p' <<<"$report")
    rss=$(sed -n 's/^peak RSS: \([0-9]*\) MiB/\1/p' <<<"$report")
    cpu=$(sed -n 's/^worker CPU per 1000 requests: \([.0-9]*\) s.*/\1/p' <<<"$report")
    busy=$(sed -n 's/^machine busy while draining:.*per second: //p' <<<"$report")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$label" "${rate:-0}" "${rss:-0}" "${cpu:-0}" "$busy" | tee -a "$results"
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
print()
print(f"{'median':<8}{'side':<10}{'req/s':>8}{'RSS MiB':>9}{'CPU s/1000':>11}{'busy % (inner seconds)':>24}")
for label in dict.fromkeys(r[1] for r in rows):
    mine = [r for r in rows if r[1] == label]
    inner = [int(b) for r in mine for b in r[5].split()[1:-1]]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"{'':<8}{label:<10}{med(2):>8.0f}{med(3):>9.0f}{med(4):>11.3f}"
          f"{statistics.median(inner) if inner else 0:>14.0f} ({min(inner, default=0)}-{max(inner, default=0)})")
PY
