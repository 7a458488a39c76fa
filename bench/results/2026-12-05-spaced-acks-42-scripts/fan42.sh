# fan42.sh ROUNDS CONFIGS...: the 18k x 60/s fan-out (admin publish unless VIA=ws), each server
# placed by itself, interleaved rounds, each server fresh, read by the kept loadgen. A config
# is `uws`, `eager` (holdfast's defaults) or an interval such as `350ms` (holdfast's defaults
# with --fanout-send-interval). Prints deliveries per server-CPU-s and latency per run.
R=${1:-3}; shift; CONFIGS=${@:-uws 500ms}; B=${BIN:-target/release}; VIA=${VIA:-admin}
RATE=${RATE:-60}; SUBS=${SUBS:-18000}
UWS=${UWS:-$(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1)}
ulimit -n 20000
for r in $(seq $R); do for k in $CONFIGS; do
  case $k in
    uws) $UWS 9321 9322 >/dev/null 2>&1 & P=$! ;;
    eager) $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 --client-publish >/dev/null 2>&1 & P=$! ;;
    *) $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 --client-publish --fanout-send-interval $k >/dev/null 2>&1 & P=$! ;;
  esac
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
  $B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections $SUBS --topics 1 --publish-rate $RATE --publish-via $VIA --admin 127.0.0.1:9322 --warmup 3 --duration 10 --settle 5 --server-pid $P --json /tmp/s42/f.json >/dev/null 2>&1
  kill $P; wait $P 2>/dev/null; sleep 0.5
  python3 -c "
import json
d=json.load(open('/tmp/s42/f.json'))
l=d['publish_to_delivery_us']
print('r$r $k', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(l['p50']/1000,1), round(l['p99']/1000,1), 'cpu', round(d['server_cpu_seconds'],2), 'pub', d['published_during_measurement'], 'lost', d['lost_in_stream'], d['lost_at_end'])"
done; done
