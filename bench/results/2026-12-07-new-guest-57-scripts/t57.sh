# t57.sh KIND TAG [server args]: one server thread on CPU 0 (holdfast --workers 1 pins itself;
# uWebSockets by taskset), the loadgen on all CPUs (the report's "server on CPU 0, loadgen on
# all"); SUBS x RATE, admin publishing. KIND: uws | hf. Prints CPU, deliveries per CPU-s,
# p50/p99, and the spacing interval the worker reported (metrics, every 0.5 s).
cd /work/main; ulimit -n 20000; K=$1; T=$2; shift 2; O=/tmp/s57/out; mkdir -p $O
B=/work/main/target/release
if [ $K = uws ]; then taskset -c 0 $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!
else HOLDFAST_LOG=debug $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers 1 --max-connections 20000 "$@" >$O/$T.server.log 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
[ -n "$SLICE" ] && python3 /tmp/s57/slice.py $P $SLICE $([ $K = uws ] && echo uws-peer || echo holdfast-w) > /dev/null
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-10000} --topics 1 --publish-rate ${RATE:-100} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 8 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1 & L=$!
IV=""; while kill -0 $L 2>/dev/null; do
  [ $K != uws ] && IV="$IV $(curl -s 127.0.0.1:9322/metrics | grep -E '^holdfast_worker_spacing_interval_seconds' | awk '{print $2}')"; sleep 0.5
done
kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,1), round(d['publish_to_delivery_us']['p99']/1000,1), 'per read', round(d['deliveries_per_read'] or 0,1), 'lost', d['lost_in_stream']+d['lost_at_end'], 'iv', '$IV'.split()[4:12])"
[ $K != uws ] && grep -h "spacing sends" $O/$T.server.log | head -3 | sed 's/^.*DEBUG//' | cut -c1-200
