# istat42.sh CONFIG: the server's task-clock per second over a whole fan-out run (perf stat -I 1000),
# beside the loadgen's own meter over its measurement window. CONFIG: uws or an interval.
ulimit -n 20000; B=${BIN:-target/release}
if [ "$1" = uws ]; then $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!; else $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 --fanout-send-interval $1 >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
perf stat -I 1000 -e task-clock -p $P -o /tmp/s42/istat.txt & S=$!
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections 18000 --topics 1 --publish-rate 60 --admin 127.0.0.1:9322 --warmup 3 --duration 14 --settle 5 --server-pid $P --json /tmp/s42/i.json > /tmp/s42/i.log 2>&1
kill -INT $S; wait $S; kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('/tmp/s42/i.json'));print('loadgen meter', round(d['server_cpu_seconds'],2), 'over', round(d['measure_seconds'],1), 's, per CPU', round(d['deliveries_per_server_cpu_s']))"
awk '/task-clock/ {printf "%d:%.0f ", $1, $2}' /tmp/s42/istat.txt; echo
