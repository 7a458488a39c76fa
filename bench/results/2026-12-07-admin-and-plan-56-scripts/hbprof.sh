#!/bin/bash
# hbprof.sh N PING SECS TAG: perf record (cpu-clock, call graphs) of the server over SECS
# seconds of a hold of N idle connections with a ping every PING s; then the top symbols.
N=$1; PI=$2; SECS=$3; TAG=$4; BIN=${BIN:-/work/main/target/release}; port=$((18500 + RANDOM % 400))
$BIN/holdfast serve --listen 127.0.0.1:$port --admin 127.0.0.1:19091 --ping-interval $PI > /tmp/s56/hbp-srv.log 2>&1 &
pid=$!
for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:19091/healthz && break; sleep 0.1; done
$BIN/holdfast-loadgen hold --url ws://127.0.0.1:$port/ --connections $N --duration $((SECS+PI+60)) > /tmp/s56/hbp-lg.log 2>&1 &
lg=$!
for i in $(seq 900); do
  c=$(curl -s 127.0.0.1:19091/metrics | awk '/^holdfast_connections_open /{print $2}')
  [ "${c%.*}" -ge "$N" ] 2>/dev/null && break; sleep 0.1
done
sleep 6
p0=$(curl -s 127.0.0.1:19091/metrics | awk '/^holdfast_pings_sent_total /{print $2}')
perf record -F 2000 -g -p $pid -o /tmp/s56/hbp-$TAG.data -- sleep $SECS > /dev/null 2>&1
p1=$(curl -s 127.0.0.1:19091/metrics | awk '/^holdfast_pings_sent_total /{print $2}')
echo "N=$N pings=$((${p1%.*}-${p0%.*})) in $SECS s" > /tmp/s56/hbp-$TAG.txt
kill $lg 2>/dev/null; wait $lg 2>/dev/null; kill $pid; wait $pid 2>/dev/null
perf report -i /tmp/s56/hbp-$TAG.data --no-children --sort sym --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -45 >> /tmp/s56/hbp-$TAG.txt
perf report -i /tmp/s56/hbp-$TAG.data --no-children --sort dso --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -8 >> /tmp/s56/hbp-$TAG.txt
