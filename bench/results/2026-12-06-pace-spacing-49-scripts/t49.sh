ulimit -n 20000; B=/tmp/hf49-auto
$B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers 1 --max-connections 10000 >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
taskset -c 0 $B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-5000} --topics 1 --publish-rate ${RATE:-100} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 4 --server-pid $P --json /tmp/t49.json > /tmp/t49.log 2>&1 & L=$!
while kill -0 $L 2>/dev/null; do
  curl -s 127.0.0.1:9322/metrics | grep -E "^holdfast_workers_(spacing|pacing) " | tr '\n' ' '; echo; sleep 0.1
done | uniq -c
for i in 1 2 3 4 5 6 7 8 9 10; do curl -s 127.0.0.1:9322/metrics | grep -E "^holdfast_workers_(spacing|pacing) " | tr '\n' ' '; echo; sleep 0.1; done | uniq -c
kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('/tmp/t49.json'));print({k:d.get(k) for k in ['lost_in_stream','lost_at_end','duplicates','reordered','gaps','deliveries_per_read','deliveries_per_server_cpu_s']}, d['publish_to_delivery_us']['p50'])"
