#!/usr/bin/env bash
# A chaos run of any seed and length: two workers, the three-node RabbitMQ 4
# cluster, a PostgreSQL primary with a synchronous standby, overlapping
# faults every 1.5-4 s, then the checker (tests/it/chaos/). Prints each
# fault as it strikes and a summary line starting with FIGURE.
#
#   benches/chaos.sh [SEED] [MINUTES] [RATE]   (default: a random seed, 30, 300)
#
# Starts the RabbitMQ 4 cluster (tests/infra/rabbitmq4.sh up 3) and stops it
# afterwards. The workers are release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-$RANDOM$RANDOM}
minutes=${2:-30}
rate=${3:-300}
tests/infra/services.sh
tests/infra/rabbitmq4.sh up 3
trap 'tests/infra/rabbitmq4.sh down' EXIT
echo "chaos: seed $seed, $minutes min of faults, $rate messages/s"
PROCINST_CHAOS_SEED=$seed PROCINST_CHAOS_SECONDS=$((minutes * 60)) PROCINST_CHAOS_RATE=$rate \
  cargo test --release --test it chaos:: -- --ignored --test-threads=1 --nocapture
