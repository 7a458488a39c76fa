# bimodal.sh N: N rounds of [cache-line round trip CPU 0 <-> 1; echo at 1,000 connections on a
# fresh holdfast pinned to CPU 1 with the loadgen on CPU 0, 5 s; round trip again].
cd /work/main; ulimit -n 20000; B=target/release; O=/tmp/s57/bim; mkdir -p $O
for r in $(seq $1); do
  pp1=$(/tmp/s57/pingpong)
  taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9331 --admin 127.0.0.1:9332 --workers 1 >/dev/null 2>&1 & P=$!
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9331) 2>/dev/null && break; sleep 0.1; done
  taskset -c 0 $B/holdfast-loadgen echo --url ws://127.0.0.1:9331/echo --connections ${C:-1000} --duration 5 --server-pid $P --json $O/$r.json > $O/$r.log 2>&1
  kill $P; wait $P 2>/dev/null
  pp2=$(/tmp/s57/pingpong)
  python3 -c "
import json;d=json.load(open('$O/$r.json'));print($r, 'per CPU', round(d.get('messages_per_server_cpu_s') or 0), 'rtt p50 us', d['rtt_us'].get('p50'), 'srv cpu', round(d['server_cpu_seconds'],2), 'lg cpu', round(d['loadgen_cpu_seconds'],2), 'pingpong before', '$pp1', 'after', '$pp2')"
done
