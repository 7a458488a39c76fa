#!/usr/bin/env bash
# Reproduce the holdfast-loadgen benchmarks recorded in bench/results/*-loadgen-*.json:
# echo (closed loop, 100 and 1,000 connections, 32 B; open loop at a fixed rate), hold, the
# upgrade rate during a ramp, and reconnect storms — against holdfast and against
# tokio-tungstenite and fastwebsockets echo servers (`holdfast-bench peer ...`), same loadgen.
# Changes nothing system-wide. Usage: bash bench/loadgen-runs.sh [section...]
# Sections: echo hold ramp storm (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace >&2
OUT=${OUT:-bench/results}
D=$(date +%F)
L=target/release/holdfast-loadgen
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start_server NAME PORT [server args...]: sets $pid once the server listens.
start_server() {
  local name=$1 port=$2; shift 2
  # Each kind gets its own ports, so one never waits for the other's to be released.
  case $name in tokio-tungstenite) port=$((port + 10)) ;; fastwebsockets) port=$((port + 20)) ;; esac
  local log; log=$(mktemp)
  if [ "$name" = holdfast ]; then
    HOLDFAST_LOG=warn target/release/holdfast serve --listen 127.0.0.1:"$port" \
      --admin 127.0.0.1:$((port + 1000)) "$@" >"$log" 2>&1 &
  else
    target/release/holdfast-bench peer "$name" --listen 127.0.0.1:"$port" >"$log" 2>&1 &
  fi
  pid=$!
  PORT=$port
  PIDS+=("$pid")
  for _ in $(seq 100); do grep -q "^listening on" "$log" && break; sleep 0.1; done
  grep -q "^listening on" "$log" || { echo "$name did not start" >&2; cat "$log" >&2; exit 1; }
}

sections=${*:-echo hold ramp storm}

for s in $sections; do case $s in
echo)
  for name in ${PEERS:-holdfast tokio-tungstenite fastwebsockets}; do
    start_server "$name" 18080
    for c in 100 1000; do
      $L echo --url ws://127.0.0.1:$PORT/echo --connections $c --size 32 --duration 10 \
        --server-pid "$pid" --json "$OUT/$D-loadgen-echo-closed-$c-$name.json"
    done
    $L echo --url ws://127.0.0.1:$PORT/echo --connections 1000 --size 32 --duration 10 \
      --message-rate 50000 --server-pid "$pid" --json "$OUT/$D-loadgen-echo-open-50k-$name.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done ;;
hold)
  # 15,000: tokio-tungstenite holds its sockets as fds, under `ulimit -n` (20,000 here).
  for name in ${PEERS:-holdfast tokio-tungstenite fastwebsockets}; do
    start_server "$name" 18080
    $L hold --url ws://127.0.0.1:$PORT/echo --connections 15000 --rate 30000 --duration 10 \
      --server-pid "$pid" --json "$OUT/$D-loadgen-hold-15k-$name.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done ;;
ramp)
  start_server holdfast 18080 --backlog 65535
  $L hold --url ws://127.0.0.1:18080/echo --connections 200000 --rate 100000 \
    --concurrency 16384 --duration 5 --server-pid "$pid" \
    --json "$OUT/$D-loadgen-ramp-200k-holdfast.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true ;;
storm)
  start_server holdfast 18080 --backlog 65535
  $L storm --url ws://127.0.0.1:18080/echo --connections 50000 --rate 50000 --cause cut \
    --json "$OUT/$D-loadgen-storm-cut-50k-jitter.json" || true
  $L storm --url ws://127.0.0.1:18080/echo --connections 50000 --rate 50000 --cause cut \
    --no-jitter --json "$OUT/$D-loadgen-storm-cut-50k-nojitter.json" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # Drain and restart: the loadgen drains the server; when it exits, its replacement starts.
  start_server holdfast 18080 --backlog 65535 --drain-window 5 --drain-grace 2
  $L storm --url ws://127.0.0.1:18080/echo --connections 50000 --rate 50000 --cause drain \
    --admin 127.0.0.1:19080 --cap-ms 2000 --max-attempts 30 \
    --json "$OUT/$D-loadgen-storm-drain-50k.json" &
  lg=$!
  wait "$pid" || true
  start_server holdfast 18080 --backlog 65535
  wait "$lg" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true ;;
*) echo "unknown section $s" >&2; exit 2 ;;
esac; done
