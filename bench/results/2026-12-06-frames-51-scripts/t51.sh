# t51.sh KIND TAG [server args]: one server thread on CPU 0, the loadgen on CPU 0 (LG_CPUS=0,1: on both, as the bench places it); SUBS x RATE admin (VIA=ws: over a WebSocket).
# KIND: uws | a holdfast build dir. The holdfast server logs the worker's pacing decisions (debug) to $O/TAG.srv.
# WORKERS=2 SRV_CPUS=0,1: holdfast's defaults and uWebSockets unconfined (the bench's `own` placement, with LG_CPUS=0,1).
cd /work/main; ulimit -n 20000; K=$1; T=$2; shift 2; O=/tmp/s51t; mkdir -p $O
if [ $K = uws ]; then taskset -c ${SRV_CPUS:-0} $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!
else HOLDFAST_LOG="info,holdfast::reactor::worker=debug" $K/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers ${WORKERS:-1} --max-connections 20000 "$@" >$O/$T.srv 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
taskset -c ${LG_CPUS:-0} /tmp/hf51a/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-10000} --topics 1 --publish-rate ${RATE:-10} --publish-via ${VIA:-admin} --admin 127.0.0.1:9322 --warmup 1 --duration 8 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1
kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,1), round(d['publish_to_delivery_us']['p99']/1000,1), 'per read', round(d['deliveries_per_read'] or 0,1), 'lost', d['lost_in_stream']+d['lost_at_end'])"
[ $K != uws ] && grep -h 'spacing sends' $O/$T.srv | sed 's/.*worker: //' | head -3
true
