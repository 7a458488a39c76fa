# up38.sh ROUNDS [CONNS]: interleaved upgrade/close rounds, pinned like the report's echo
# section (server on CPU 1 with one worker / thread, client on CPU 0): per round and per
# server, a fresh server ramped and closed by the loadgen, then a fresh one by the
# independent upgrade-client. BIN (default target/release) holds the binaries; UWS the peer.
R=${1:-5}; N=${2:-10000}; B=${BIN:-target/release}
UWS=${UWS:-$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)}
mkdir -p /tmp/cmp
ulimit -n 20000
start() {
  if [ $1 = holdfast ]; then taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 >/dev/null 2>&1 & P=$!
  else taskset -c 1 $UWS 9301 9302 >/dev/null 2>&1 & P=$!; fi
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
}
stop() { kill $P; wait $P 2>/dev/null; sleep 0.5; }
for r in $(seq $R); do
  for k in holdfast uws; do
    start $k
    taskset -c 0 $B/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json /tmp/cmp/up-lg-$k-$r.json >/dev/null 2>&1
    stop
    start $k
    taskset -c 0 $B/holdfast-bench upgrade-client --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --hold 0.5 --server-pid $P > /tmp/cmp/up-uc-$k-$r.json 2>/tmp/cmp/up-uc-$k-$r.err
    stop
    python3 - $k $r <<'P'
import json,sys
k,r=sys.argv[1],sys.argv[2]
for c in ('lg','uc'):
    try: d=json.load(open(f'/tmp/cmp/up-{c}-{k}-{r}.json'))
    except Exception as e: print(k,r,c,'failed',e); continue
    print(f"{k:9s} r{r} {c}: up {d['server_cpu_us_per_upgrade']:.1f} close {d['server_cpu_us_per_close']:.1f} µs  est {d.get('established', d.get('held_at_end'))}")
P
  done
done
