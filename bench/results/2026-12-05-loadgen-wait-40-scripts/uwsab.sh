# uwsab.sh: the 18k x 60/s fan-out (admin publish) against uWebSockets placed by the scheduler, one or more loadgen builds in turn (edit the L list): deliveries per server-CPU-s, latency, deliveries per read, the loadgen CPU.
ulimit -n 20000
for r in 1; do for L in /tmp/lg-new8; do
/tmp/holdfast-bench-uws-x/uws-peer 9321 9322 >/dev/null 2>&1 & U=$!
sleep 0.5
$L fanout --url ws://127.0.0.1:9321/ws --connections 18000 --topics 1 --publish-rate 60 --admin 127.0.0.1:9322 --warmup 2 --duration 8 --server-pid $U --json /tmp/uf.json >/dev/null 2>&1
kill $U; wait $U 2>/dev/null; sleep 0.5
python3 -c "
import json
d=json.load(open('/tmp/uf.json'))
print('$L', round(d['deliveries_per_server_cpu_s']), 'lat', d['publish_to_delivery_us']['p50'], d['publish_to_delivery_us']['p99'], 'per read', round(d['deliveries_per_read'],1), 'lg cpu', round(d['loadgen_cpu_seconds'],2))"
done; done
