#!/bin/bash
# A worker with 256-slot file tables holding 600 connections (7-8 rings): the independent
# probe's round trips, then the server's CPU and voluntary wake-ups over 10 s of idle holding.
# SRV=/path/to/holdfast to measure another build (the old one: a worktree at 404cef2).
B=/work/main/target/release
SRV=${SRV:-$B/holdfast}
S=$(dirname "$(readlink -f "$0")"); cd "${OUT:-/tmp}"  # logs and traces go to OUT
$SRV serve --listen 127.0.0.1:19100 --admin 127.0.0.1:19101 --workers 1 --ring-files 256 > /tmp/idle41-srv.log 2>&1 &
SP=$!
sleep 0.5
$B/holdfast-loadgen hold --url ws://127.0.0.1:19100/ --connections 600 --duration 25s > /tmp/idle41-hold.log 2>&1 &
H=$!
sleep 2
curl -s http://127.0.0.1:19101/metrics | grep -E "^holdfast_rings "
python3 "$S/probe.py" 19100 100
wakeups() { grep -h '^voluntary_ctxt_switches' /proc/$SP/task/*/status | awk '{s+=$2} END {print s}'; }
t0=$(awk '{print $14+$15}' /proc/$SP/stat); v0=$(wakeups)
sleep 10
t1=$(awk '{print $14+$15}' /proc/$SP/stat); v1=$(wakeups)
echo "idle 10 s: cpu $(( (t1-t0)*10 )) ms, wakeups $((v1-v0))"
wait $H
kill $SP; wait $SP
