cd /work/main; ulimit -n 20000; B=$1; T=$2; shift 2; O=/tmp/s52
taskset -c 0 $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers 1 --max-connections 20000 "$@" >$O/$T.srv 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
taskset -c 0,1 /tmp/hf51a/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-10000} --topics 1 --publish-rate ${RATE:-100} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 10 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1 & L=$!
sleep 9; W=$(grep -l "holdfast-w0" /proc/$P/task/*/comm | head -1 | cut -d/ -f5)
perf record -e sched:sched_switch -g -t $W -o $O/$T.sw -- sleep 4 >/dev/null 2>&1
wait $L; kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,1), round(d['publish_to_delivery_us']['p99']/1000,1), 'per read', round(d['deliveries_per_read'] or 0,1))"
