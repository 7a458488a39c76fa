# run44.sh CONFIG TAG [server args...]: one fan-out run (18k x RATE/s, admin publishing) driven by the
# loadgen as the report drives it, printing its meter line. CONFIG: uws, eager or an interval (280ms).
# Env: RATE (60), WARMUP (1, the report's), DUR (10, the report's), SUBS (18000), TOPICS (1), BIN (target/release),
# VIA (admin; ws publishes over a client WebSocket and gives holdfast --client-publish),
# PERSEC=1 also writes the server's task-clock every second (perf stat) to $OUT/TAG.perf.
ulimit -n 20000; B=${BIN:-target/release}; O=${OUT:-/tmp/s44}; mkdir -p $O
C=$1; T=$2; shift 2
if [ "$C" = uws ]; then $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!
else
  IV=""; [ "$C" != eager ] && IV="--fanout-send-interval $C"
  [ "${VIA:-admin}" = ws ] && IV="$IV --client-publish"
  $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 $IV "$@" >/dev/null 2>&1 & P=$!
fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-18000} --topics ${TOPICS:-1} --publish-rate ${RATE:-60} \
  --publish-via ${VIA:-admin} --admin 127.0.0.1:9322 --warmup ${WARMUP:-1} --duration ${DUR:-10} --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1 & L=$!
[ -n "$PERSEC" ] && { perf stat -I 1000 -e task-clock -p $P -o $O/$T.perf & Q=$!; }
wait $L; [ -n "$PERSEC" ] && { kill -INT $Q; wait $Q; }; kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'over', round(d['measure_seconds'],1), 's, per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,1), round(d['publish_to_delivery_us']['p99']/1000,1), 'per read', round(d['deliveries_per_read'] or 0,1))"
