ulimit -n 20000; B=${BIN:-/tmp/hf50c}
$B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 "$@" >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-18000} --topics 1 --publish-rate ${RATE:-60} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 10 --settle 5 --server-pid $P --json /tmp/w50.json > /tmp/w50.log 2>&1 & L=$!
while kill -0 $L 2>/dev/null; do
  curl -s 127.0.0.1:9322/metrics | grep -E "^holdfast_(workers_spacing|worker_spacing_interval_seconds)" | awk '{print $2}' | tr '\n' ' '; echo; sleep 0.1
done | uniq -c
kill $P; wait $P 2>/dev/null; tail -1 /tmp/w50.log
