#!/usr/bin/env bash
# Reproduce the pub/sub fan-out benchmarks recorded in bench/results/*-fanout-*.json with
# holdfast-loadgen's `fanout` scenario: one topic to 10k and 100k subscribers, 1,000 topics ×
# 100 subscribers, and the same fan-out side by side with the tokio-tungstenite broadcast
# peer (`holdfast-bench peer tokio-tungstenite-broadcast`). Publishes go through each
# server's HTTP publish endpoint (binary payloads, 16 B, stamped). Changes nothing
# system-wide. Usage: bash bench/fanout-runs.sh [section...]; sections: one10k one100k many
# (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace >&2
OUT=${OUT:-bench/results}
D=$(date +%F)
L=target/release/holdfast-loadgen
DUR=${DUR:-10}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start NAME: sets $pid, $PORT, $ADMIN once the server listens.
start() {
  local name=$1 log; log=$(mktemp)
  if [ "$name" = holdfast ]; then
    PORT=18080 ADMIN=127.0.0.1:19080
    HOLDFAST_LOG=warn target/release/holdfast serve --listen 127.0.0.1:$PORT --admin $ADMIN \
      --max-connections 2000000 >"$log" 2>&1 &
  else
    PORT=18090 ADMIN=127.0.0.1:19090
    target/release/holdfast-bench peer tokio-tungstenite-broadcast --listen 127.0.0.1:$PORT \
      --admin $ADMIN >"$log" 2>&1 &
  fi
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do grep -q "^listening on" "$log" && break; sleep 0.1; done
  grep -q "^listening on" "$log" || { echo "$name did not start" >&2; cat "$log" >&2; exit 1; }
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }

# run NAME SUBS TOPICS RATE
run() {
  local name=$1 subs=$2 topics=$3 rate=$4
  echo "== $name: $subs subscribers, $topics topics, $rate msgs/s" >&2
  $L fanout --url ws://127.0.0.1:$PORT/ws --connections "$subs" --topics "$topics" \
    --publish-rate "$rate" --admin "$ADMIN" --duration "$DUR" --rate 30000 \
    --server-pid "$pid" --json "$OUT/$D-fanout-$subs-$topics-$rate-$name.json" || true
}

for s in ${*:-one10k one100k many}; do case $s in
one10k)
  # tokio-tungstenite holds sockets as fds: 10k fits under `ulimit -n` (20,000 here).
  for name in ${PEERS:-holdfast tokio-tungstenite-broadcast}; do
    start "$name"
    for r in 10 50 100; do run "$name" 10000 1 $r; done
    stop
  done ;;
one100k)
  start holdfast
  for r in 2 5 10; do run holdfast 100000 1 $r; done
  stop ;;
many)
  start holdfast
  run holdfast 100000 1000 2000
  stop
  for name in ${PEERS:-holdfast tokio-tungstenite-broadcast}; do
    start "$name"
    run "$name" 10000 1000 2000
    stop
  done ;;
*) echo "unknown section $s" >&2; exit 2 ;;
esac; done
