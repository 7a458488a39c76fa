# t50.sh KIND TAG [server args]: one server thread and the loadgen on CPU 0; SUBS x RATE admin. KIND: uws | a holdfast build dir
cd /work/main; ulimit -n 20000; K=$1; T=$2; shift 2; O=/tmp/s50t; mkdir -p $O
if [ $K = uws ]; then taskset -c 0 $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!
else $K/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers 1 --max-connections 20000 "$@" >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
taskset -c 0 /tmp/hf50c/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-5000} --topics 1 --publish-rate ${RATE:-100} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 8 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1 & L=$!
IV=""; while kill -0 $L 2>/dev/null; do
  [ $K != uws ] && IV="$IV $(curl -s 127.0.0.1:9322/metrics | grep -E '^holdfast_worker_spacing_interval_seconds' | awk '{print $2}')"; sleep 0.5
done
kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,1), round(d['publish_to_delivery_us']['p99']/1000,1), 'per read', round(d['deliveries_per_read'] or 0,1), 'lost', d['lost_in_stream']+d['lost_at_end'], 'iv', '$IV'.split()[4:12])"
