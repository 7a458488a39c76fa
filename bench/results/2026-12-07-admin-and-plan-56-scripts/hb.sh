#!/bin/bash
# hb.sh N SECS: server CPU of holding N idle WebSockets with pings every 5 s against pings
# every 1,000 s (none in the window); task-clock of the server process over SECS seconds
# once the ramp is done. Default sysctls; server defaults (2 workers), loadgen unpinned.
N=${1:-100000}; SECS=${2:-40}; BIN=${BIN:-/work/main/target/release}
port=18080
for pi in ${PIS:-1000 5}; do
  port=$((port+1))
  $BIN/holdfast serve --listen 127.0.0.1:$port --admin 127.0.0.1:19090 --ping-interval $pi --idle-timeout $((pi*3)) > /tmp/s56/hb-srv.log 2>&1 &
  pid=$!
  for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:19090/healthz && break; sleep 0.1; done
  perf stat -x, -e task-clock -p $pid -o /tmp/s56/ramp-$pi.txt &
  rp=$!
  $BIN/holdfast-loadgen hold --url ws://127.0.0.1:$port/ --connections $N --duration $((SECS+pi+40)) > /tmp/s56/hb-lg-$pi.log 2>&1 &
  lg=$!
  # the ramp is over when the server holds N
  for i in $(seq 600); do
    c=$(curl -s 127.0.0.1:19090/metrics | awk '/^holdfast_connections_open /{print $2}')
    [ "${c%.*}" -ge "$N" ] 2>/dev/null && break; sleep 0.1
  done
  kill -INT $rp; wait $rp 2>/dev/null
  ramp=$(awk -F, '/task-clock/{print $1}' /tmp/s56/ramp-$pi.txt)
  sleep 6   # one ping interval for the pings to spread (not a synchronisation: a settling time)
  p0=$(curl -s 127.0.0.1:19090/metrics | awk '/^holdfast_pings_sent_total /{print $2}')
  tc=$(perf stat -x, -e task-clock -p $pid -- sleep $SECS 2>&1 | awk -F, '/task-clock/{print $1}')
  p1=$(curl -s 127.0.0.1:19090/metrics | awk '/^holdfast_pings_sent_total /{print $2}')
    echo "ping_interval=$pi held=$c ramp_task_clock_ms=$ramp task_clock_ms=$tc pings=$((${p1%.*}-${p0%.*})) secs=$SECS"
  kill $lg 2>/dev/null; wait $lg 2>/dev/null
  kill $pid; wait $pid 2>/dev/null
done
