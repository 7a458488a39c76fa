# prof42.sh CONFIG TAG: fan42.sh's run once with perf record -g on the server for 8 s mid-run.
k=$1; TAG=$2; B=${BIN:-target/release}; UWS=${UWS:-$(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1)}
ulimit -n 20000
case $k in
  uws) $UWS 9321 9322 >/dev/null 2>&1 & P=$! ;;
  eager) $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 >/dev/null 2>&1 & P=$! ;;
  *) $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 --fanout-send-interval $k $EXTRA >/dev/null 2>&1 & P=$! ;;
esac
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections 18000 --topics 1 --publish-rate 60 --admin 127.0.0.1:9322 --warmup 3 --duration 14 --settle 5 --server-pid $P --json /tmp/s42/p-$TAG.json >/dev/null 2>&1 &
L=$!
sleep 8
perf record -F 2000 -g -p $P -o /tmp/s42/perf-$TAG.data -- sleep 8 2>/dev/null >/dev/null
wait $L
kill $P; wait $P 2>/dev/null
python3 -c "
import json
d=json.load(open('/tmp/s42/p-$TAG.json'))
l=d['publish_to_delivery_us']
print('$TAG', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(l['p50']/1000,1), round(l['p99']/1000,1), 'cpu', round(d['server_cpu_seconds'],2), 'deliv', d['deliveries_during_measurement'])"
