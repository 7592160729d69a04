# Sourced by the benchmark scripts: the executable under test, builds of
# other revisions, and removing what a run leaves on the servers (its
# queues, its dead-letter exchange and its database, named by the
# PROCINST_* and DATABASE_URL settings the script exported).

# The executable to measure: BENCH_BIN when set, else this tree's release
# build (built first).
bench_bin() {
  if [ -n "${BENCH_BIN:-}" ]; then
    printf '%s\n' "$BENCH_BIN"
    return
  fi
  cargo build --release --quiet
  printf '%s\n' target/release/procinst
}

# An executable as it is, or a git revision built (release) from a worktree
# of its own into target/compare/procinst-REV, once.
build() {
  local what=$1 out=target/compare
  if [ -x "$what" ] && [ -f "$what" ]; then
    printf '%s\n' "$what"
    return
  fi
  local rev
  rev=$(git rev-parse --short "$what^{commit}")
  local bin="$out/procinst-$rev"
  if [ ! -x "$bin" ]; then
    local tree="$out/tree-$rev"
    mkdir -p "$out"
    git worktree add --detach -f "$tree" "$rev" >/dev/null 2>&1
    CARGO_TARGET_DIR="$PWD/$out/target" cargo build --release --quiet --manifest-path "$tree/Cargo.toml" >&2
    cp "$out/target/release/procinst" "$bin"
    git worktree remove --force "$tree"
  fi
  printf '%s\n' "$bin"
}

remove_bench_objects() {
  local q
  local bulk=
  if [ -n "${PROCINST_REQUEST_QUEUE:-}" ]; then bulk=${PROCINST_BULK_QUEUE:-$PROCINST_REQUEST_QUEUE.bulk}; fi
  for q in "${PROCINST_REQUEST_QUEUE:-}" "$bulk" "${PROCINST_REPLY_QUEUE:-}" "${PROCINST_DEAD_LETTER_QUEUE:-}"; do
    if [ -n "$q" ]; then rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; fi
  done
  # The bulk lane's shards: as many as the default or the setting gives.
  if [ -n "$bulk" ]; then
    local i shards=${PROCINST_BULK_SHARDS:-8}
    [ "$shards" -lt 8 ] && shards=8
    for ((i = 0; i < shards; i++)); do rabbitmqctl -q delete_queue "$bulk.$i" >/dev/null 2>&1 || true; done
  fi
  # rabbitmqctl has no delete_exchange; the broker's own function does it.
  local x
  for x in "${PROCINST_DEAD_LETTER_EXCHANGE:-}" "$bulk" "${bulk:+$bulk.unrouted}"; do
    if [ -n "$x" ]; then
      rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$x\">>), false, <<\"procinst-bench\">>)." >/dev/null 2>&1 || true
    fi
  done
  psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"${DATABASE_URL##*/}\" WITH (FORCE)" >/dev/null 2>&1 || true
  true
}
