#!/usr/bin/env bash
# RabbitMQ 4 for procinst's tests, beside the machine's own RabbitMQ.
#
# Debian trixie's rabbitmq-server (4.0) needs a newer libc than the host may
# have, so it runs in a debootstrapped chroot. Its nodes share the host's epmd
# and listen on their own ports, so a 3.x node on 5672 keeps running.
#
#   rabbitmq4.sh up [N]           make the chroot if missing; start N nodes (default 3),
#                                 clustered, on ports 5682, 5683, ...; wipe their old state
#   rabbitmq4.sh down             stop every node of the chroot; unmount /proc
#   rabbitmq4.sh start NAME PORT  start one more node (RABBITMQ_CONFIG_FILE may point to a
#                                 config file inside the chroot, e.g. for a TLS listener)
#   rabbitmq4.sh stop NAME        stop one node
#   rabbitmq4.sh ctl NAME ARGS..  rabbitmqctl -n NAME@localhost ARGS
#   rabbitmq4.sh partition NAME   cut NAME off from the other nodes (iptables on loopback)
#   rabbitmq4.sh heal NAME        undo that
#   rabbitmq4.sh root             print the chroot's path
#
# The nodes run with `cluster_partition_handling = pause_minority` (RabbitMQ's
# advice for three nodes) and a 15 s net_ticktime, so that a cut node notices
# within seconds. Each node makes its outgoing distribution connections
# from an address of its own (127.0.0.N, N = port - 5680), and listens for
# them on port + 20000: `partition` drops both on loopback, leaving its
# AMQP port reachable, as in a real partition.
# Environment: PROCINST_RMQ4_ROOT (default /var/lib/procinst/rabbitmq4),
# PROCINST_RMQ4_MIRROR (default: the Debian mirror apt already uses).
set -euo pipefail

ROOT=${PROCINST_RMQ4_ROOT:-/var/lib/procinst/rabbitmq4}
FIRST_PORT=5682
NODE_PREFIX=procinst4

log() { printf '[rabbitmq4] %s\n' "$*" >&2; }

mirror() {
  if [ -n "${PROCINST_RMQ4_MIRROR:-}" ]; then
    echo "$PROCINST_RMQ4_MIRROR"
    return
  fi
  local uri
  uri=$(grep -hoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hoE '^deb +http[^ ]*/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_chroot() {
  if [ -x "$ROOT/usr/sbin/rabbitmq-server" ]; then
    return
  fi
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
  }
  log "debootstrapping trixie with rabbitmq-server into $ROOT"
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  debootstrap --variant=minbase --include=rabbitmq-server trixie "$ROOT" "$(mirror)" >"$ROOT.debootstrap.log" 2>&1 ||
    { tail -n 20 "$ROOT.debootstrap.log" >&2; exit 1; }
  # The package's service would start a node on 5672; nothing starts it in a chroot,
  # but keep its default node from ever claiming the host's port.
  echo "NODE_PORT=$FIRST_PORT" >"$ROOT/etc/rabbitmq/rabbitmq-env.conf"
}

prepare() {
  ensure_chroot
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  cp /etc/hosts "$ROOT/etc/hosts"
  mkdir -p "$ROOT/var/log/procinst"
  echo "cluster_partition_handling = pause_minority" >"$ROOT/etc/rabbitmq/rabbitmq.conf"
}

# The loopback address a node's outgoing distribution connections come from.
dist_source() { echo "127.0.0.$(($1 - FIRST_PORT + 2))"; }

# iptables rules that cut the node NAME listening on PORT off (-I) or let it
# back (-D).
partition_rules() {
  local action=$1 name=$2 port=$3 source
  source=$(dist_source "$port")
  local tag=(-m comment --comment "procinst-partition-$name")
  iptables "$action" INPUT -p tcp -s "$source" "${tag[@]}" -j DROP
  iptables "$action" INPUT -p tcp -d "$source" "${tag[@]}" -j DROP
  iptables "$action" INPUT -p tcp --dport $((port + 20000)) "${tag[@]}" -j DROP
  iptables "$action" INPUT -p tcp --sport $((port + 20000)) "${tag[@]}" -j DROP
}

node_port() {
  local name=$1
  echo $((FIRST_PORT + $(printf '%d' "'${name: -1}") - 97))
}

partition() {
  command -v iptables >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null
  heal "$1"
  log "cutting $1@localhost off from the cluster"
  partition_rules -I "$1" "$(node_port "$1")"
}

heal() {
  command -v iptables >/dev/null 2>&1 || return 0
  while iptables -S INPUT 2>/dev/null | grep -qw -- "procinst-partition-$1"; do
    partition_rules -D "$1" "$(node_port "$1")" 2>/dev/null || break
  done
}

heal_all() {
  command -v iptables >/dev/null 2>&1 || return 0
  for name in $(iptables -S INPUT 2>/dev/null | grep -o 'procinst-partition-[a-z0-9]*' | sort -u); do
    heal "${name#procinst-partition-}"
  done
}

in_root() { chroot "$ROOT" env HOME=/var/lib/rabbitmq "$@"; }

ctl() {
  local name=$1
  shift
  in_root rabbitmqctl -q -n "$name@localhost" "$@"
}

running() { ctl "$1" ping >/dev/null 2>&1; }

start_node() {
  local name=$1 port=$2
  prepare
  if running "$name"; then
    log "$name already running"
    return
  fi
  log "starting $name@localhost on port $port"
  # A cluster node (ports 5682-5689) gets its own distribution source
  # address; a node of a single test (any port) needs none.
  local erl_args="-kernel net_ticktime 15"
  if [ "$port" -ge "$FIRST_PORT" ] && [ "$port" -lt $((FIRST_PORT + 8)) ]; then
    erl_args+=" -kernel inet_dist_connect_options [{ip,{$(dist_source "$port" | tr . ,)}}]"
  fi
  setsid chroot "$ROOT" env HOME=/var/lib/rabbitmq \
    RABBITMQ_NODENAME="$name@localhost" \
    RABBITMQ_NODE_PORT="$port" \
    RABBITMQ_DIST_PORT=$((port + 20000)) \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$erl_args" \
    ${RABBITMQ_CONFIG_FILE:+RABBITMQ_CONFIG_FILE="$RABBITMQ_CONFIG_FILE"} \
    ${RABBITMQ_ENABLED_PLUGINS_FILE:+RABBITMQ_ENABLED_PLUGINS_FILE="$RABBITMQ_ENABLED_PLUGINS_FILE"} \
    rabbitmq-server >"$ROOT/var/log/procinst/$name.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    if ctl "$name" await_startup --timeout 1 >/dev/null 2>&1; then
      return
    fi
    sleep 1
  done
  tail -n 30 "$ROOT/var/log/procinst/$name.log" >&2
  log "$name did not start"
  exit 1
}

stop_node() {
  local name=$1
  if running "$name"; then
    log "stopping $name@localhost"
    ctl "$name" stop >/dev/null 2>&1 || true
  fi
}

nodes_of_root() {
  [ -d "$ROOT/var/lib/rabbitmq/mnesia" ] || return 0
  find "$ROOT/var/lib/rabbitmq/mnesia" -maxdepth 1 -mindepth 1 -type d -name '*@localhost' -printf '%f\n' |
    sed 's/@localhost$//'
}

up() {
  local count=${1:-3}
  heal_all
  prepare
  for name in $(nodes_of_root); do stop_node "$name"; done
  rm -rf "$ROOT/var/lib/rabbitmq/mnesia"
  local first="${NODE_PREFIX}a"
  local names=()
  for i in $(seq 0 $((count - 1))); do
    local letter
    letter=$(printf "\\$(printf '%03o' $((97 + i)))")
    names+=("$NODE_PREFIX$letter")
  done
  for i in "${!names[@]}"; do
    start_node "${names[$i]}" $((FIRST_PORT + i))
  done
  for name in "${names[@]:1}"; do
    log "joining $name to $first"
    ctl "$name" stop_app
    ctl "$name" join_cluster "$first@localhost"
    ctl "$name" start_app
  done
  ctl "$first" enable_feature_flag all >/dev/null 2>&1 || true
  ctl "$first" await_startup
  log "cluster up: ${names[*]} on ports $FIRST_PORT..$((FIRST_PORT + count - 1))"
}

down() {
  heal_all
  [ -d "$ROOT" ] || return 0
  for name in $(nodes_of_root); do stop_node "$name"; done
  mountpoint -q "$ROOT/proc" && umount "$ROOT/proc" || true
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  down) down ;;
  start) start_node "$2" "$3" ;;
  stop) stop_node "$2" ;;
  ctl) shift; ctl "$@" ;;
  partition) partition "$2" ;;
  heal) heal "$2" ;;
  root) echo "$ROOT" ;;
  *) sed -n '2,/^set /{/^#/p}' "$0" >&2; exit 2 ;;
esac
