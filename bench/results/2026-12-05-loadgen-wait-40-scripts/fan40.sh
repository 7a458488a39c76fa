# fan40.sh ROUNDS: the 18k x 60/s fan-out (admin publish), holdfast's defaults and uWebSockets
# each placed by themselves (the report's "own" rows), interleaved, each server fresh, read
# by the kept loadgen (target/release): deliveries per server-CPU-s, latency, deliveries per
# client read, the loadgen's CPU. UWS: the uws-peer binary (holdfast-bench builds it).
R=${1:-3}; B=${BIN:-target/release}; UWS=${UWS:-$(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1)}
ulimit -n 20000
for r in $(seq $R); do for k in holdfast uws; do
  if [ $k = holdfast ]; then $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 >/dev/null 2>&1 & P=$!
  else $UWS 9321 9322 >/dev/null 2>&1 & P=$!; fi
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
  $B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections 18000 --topics 1 --publish-rate 60 --admin 127.0.0.1:9322 --warmup 2 --duration 8 --server-pid $P --json /tmp/fan40.json >/dev/null 2>&1
  kill $P; wait $P 2>/dev/null; sleep 0.5
  python3 -c "
import json
d=json.load(open('/tmp/fan40.json'))
l=d['publish_to_delivery_us']
print('r$r $k', round(d['deliveries_per_server_cpu_s']), 'latency p50/p99 ms', round(l['p50']/1000,1), round(l['p99']/1000,1), 'per read', round(d['deliveries_per_read'],1), 'loadgen CPU-s', round(d['loadgen_cpu_seconds'],2), 'published', d['published_during_measurement'])"
done; done
