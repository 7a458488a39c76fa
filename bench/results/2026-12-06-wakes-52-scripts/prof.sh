# prof.sh BUILD TAG: one worker on CPU1, loadgen on CPU0, SUBS x RATE admin; perf on the server for 6 s of steady state.
cd /work/main; ulimit -n 20000; B=$1; T=$2; shift 2; O=/tmp/s52; 
if [ $B = uws ]; then taskset -c 1 $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!
else taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers 1 --max-connections 20000 "$@" >$O/$T.srv 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
taskset -c 0 /tmp/hf51a/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-18000} --topics 1 --publish-rate ${RATE:-60} --publish-via ${VIA:-admin} --admin 127.0.0.1:9322 --warmup 1 --duration 10 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1 & L=$!
if [ -n "$PROF" ]; then sleep 9; perf record -F 2999 -g -p $P -o $O/$T.perf -- sleep 6 >/dev/null 2>&1; fi
wait $L; kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,1), round(d['publish_to_delivery_us']['p99']/1000,1), 'per read', round(d['deliveries_per_read'] or 0,1), 'lost', d['lost_in_stream']+d['lost_at_end'])"
