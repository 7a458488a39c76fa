# istat43.sh CONFIG TAG [server args...]: one fan-out run (18k x 60/s, admin publishing, untuned)
# with sample43.py reading every thread's CPU, each CPU's softirq time and the server's
# counters every second, and perf's task-clock per thread every second (the loadgen's meter;
# schedstat under-counts a sender that wakes ksoftirqd, docs/loadgen.md). PROBE=1 also runs
# /tmp/probe43 (probe43.c: each CPU's speed at fixed work, every second) over the run; REC=1
# records a system-wide profile with timestamps over the run (perf record -a -g); SW=1 records
# every context switch (sched:sched_switch) for overlap43.py. RATE: msgs/s (60); NOSAMPLE=1 leaves
# the server's /metrics unread (its admin thread's CPU is counted in the server's). CONFIG: uws or an interval (e.g. 280ms) or eager.
ulimit -n 20000; B=${BIN:-target/release}; D=$(dirname $0); O=${OUT:-/tmp/s43}; mkdir -p $O
C=$1; T=$2; shift 2
if [ "$C" = uws ]; then $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!; A=-
else
  IV=""; [ "$C" != eager ] && IV="--fanout-send-interval $C"
  $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 $IV "$@" >/dev/null 2>&1 & P=$!; A=127.0.0.1:9322
fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections 18000 --topics 1 --publish-rate ${RATE:-60} --admin 127.0.0.1:9322 --warmup 3 --duration 14 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1 & L=$!
[ -n "$NOSAMPLE" ] && A=-
python3 $D/sample43.py $P $L $A 40 $O/$T.samples &  S=$!
[ -n "$REC" ] && { perf record -a -g -F 499 -o $O/$T.data -- sleep 24 > /dev/null 2>&1 & }
[ -n "$SW" ] && { perf record -a -e sched:sched_switch -o $O/$T.sw -- sleep 24 > /dev/null 2>&1 & }
[ -n "$PROBE" ] && { /tmp/probe43 32 > $O/$T.probe & }
perf stat --per-thread -I 1000 -e task-clock,context-switches,cpu-migrations -p $P,$L,$(pgrep -d, ksoftirqd) -o $O/$T.perf & Q=$!
wait $L; kill -INT $Q; wait $Q; kill $P; wait $P 2>/dev/null; wait $S
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'meter', round(d['server_cpu_seconds'],2), 'over', round(d['measure_seconds'],1), 's, per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', d['publish_to_delivery_us']['p50']/1000, d['publish_to_delivery_us']['p99']/1000, 'per read', round(d['deliveries_per_read'] or 0,1))"
