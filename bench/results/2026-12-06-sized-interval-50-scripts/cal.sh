# cal.sh TAG SUBS RATE VIA [server args]: default build with debug spacing log
cd /work/main; ulimit -n 20000; T=$1; SUBS=$2; RATE=$3; VIA=$4; shift 4
X=""; [ "$VIA" = ws ] && X="--client-publish"
HOLDFAST_LOG="info,holdfast::reactor::worker=debug" /tmp/hf50c/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 $X "$@" > /tmp/s50/$T.srv 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
/tmp/hf50c/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections $SUBS --topics 1 --publish-rate $RATE --publish-via $VIA --admin 127.0.0.1:9322 --warmup 1 --duration 10 --settle 5 --server-pid $P --json /tmp/s50/$T.json > /tmp/s50/$T.log 2>&1
kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('/tmp/s50/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,1), round(d['publish_to_delivery_us']['p99']/1000,1), 'per read', round(d['deliveries_per_read'] or 0,1))"
grep -o "spacing sends.*" /tmp/s50/$T.srv | head -3; grep -c "spacing sends" /tmp/s50/$T.srv
