# storm.sh ROUNDS: interleaved storms of 15,000 (every client cut at once, backoff 100 ms–5 s) on DIR_base, DIR_new (env) and uWebSockets, each fresh, unpinned
ulimit -n 20000; O=/tmp/s55/storm; mkdir -p $O; UWS=$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)
for r in $(seq ${1:-3}); do for k in base new uws; do
  if [ $k = uws ]; then $UWS 9351 9352 >/dev/null 2>&1 & P=$!
  else $(eval echo \$DIR_$k)/holdfast serve --listen 127.0.0.1:9351 --admin 127.0.0.1:9352 --max-connections 30000 >/dev/null 2>&1 & P=$!; fi
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9351) 2>/dev/null && break; sleep 0.1; done; sleep 1.5
  /tmp/hf52a/holdfast-loadgen storm --url ws://127.0.0.1:9351/echo --connections 15000 --rate ${RATE:-20000} --hold 1 --duration 60 --server-pid $P --json $O/$k-$r.json >/dev/null 2>&1
  kill $P; wait $P 2>/dev/null; sleep 0.5
  python3 -c "import json;d=json.load(open('$O/$k-$r.json'));print('$k r$r', 'per reconnect', round(d['server_cpu_us_per_reconnect'],1), 'recovery s', round(d['recovery_seconds'],2), 'wakes', d.get('server_wakeups_per_reconnect'))"
done; done
