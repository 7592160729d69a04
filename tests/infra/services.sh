#!/usr/bin/env bash
# Installs (when missing) and starts the services procinst's tests use on
# this machine: PostgreSQL on 127.0.0.1:5432 with trust auth for the test
# user, RabbitMQ 3.x on 127.0.0.1:5672, and the tools some tests run
# (debootstrap for RabbitMQ 4, iptables for a partition, chromium). Safe to
# run when they are up.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

need_apt=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
# The chaos run cuts a RabbitMQ 4 node off from its cluster on loopback.
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
# The loadtest report test renders the page in a real headless browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

version=$(ls /etc/postgresql | sort -V | tail -n1)
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
pg_isready -h 127.0.0.1 -p 5432 >/dev/null
# Tests connect as postgres over TCP without a password.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  log "allowing trust auth on 127.0.0.1 for the test user"
  hba=/etc/postgresql/$version/main/pg_hba.conf
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi

if ! rabbitmqctl -q status >/dev/null 2>&1; then
  log "starting RabbitMQ"
  rabbitmq-server -detached || true
fi
for _ in $(seq 1 90); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
rabbitmqctl -q await_startup
# Quorum queues need the feature flag on brokers upgraded from older versions.
rabbitmqctl -q enable_feature_flag all >/dev/null 2>&1 || true
