#!/bin/bash
# 2 × PER connections on one holdfast worker (PER=17500 by default: 35,000, three rings;
# PER=7500: 15,000, one ring, the control), then: idle CPU over 20 s, an open-loop echo at
# 100 msgs/s from 100 more connections, and the independent probe.
PER=${PER:-17500}
B=/work/main/target/release
S=$(dirname "$(readlink -f "$0")"); cd "${OUT:-/tmp}"  # logs and traces go to OUT
${SRV:-$B/holdfast} serve --listen 127.0.0.1:19100 --admin 127.0.0.1:19101 --workers 1 > srv.log 2>&1 &
SP=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:19101/metrics >/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen hold --url ws://127.0.0.1:19100/ --connections $PER --duration 75s --sources 127.0.1.1-127.0.1.8 > h1.log 2>&1 &
H1=$!
$B/holdfast-loadgen hold --url ws://127.0.0.1:19100/ --connections $PER --duration 75s --sources 127.0.2.1-127.0.2.8 > h2.log 2>&1 &
H2=$!
for i in $(seq 300); do c=$(curl -s http://127.0.0.1:19101/metrics | awk '/^holdfast_connections_open /{print $2}'); [ "${c%.*}" -ge $((2 * PER)) ] 2>/dev/null && break; sleep 0.2; done
echo "open: $c rings: $(curl -s http://127.0.0.1:19101/metrics | awk '/^holdfast_rings /{print $2}')"
t0=$(awk '{print $14+$15}' /proc/$SP/stat); sleep 20; t1=$(awk '{print $14+$15}' /proc/$SP/stat)
echo "idle server CPU over 20 s: $(( (t1-t0)*10 )) ms"
$B/holdfast-loadgen echo --url ws://127.0.0.1:19100/ --connections 100 --message-rate 100 --duration 20s --sources 127.0.3.1 > e.log 2>&1
grep -iE "rtt" e.log | head -8
python3 "$S/probe.py" 19100
wait $H1 $H2
kill $SP; wait $SP
