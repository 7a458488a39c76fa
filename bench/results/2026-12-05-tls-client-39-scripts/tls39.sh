# tls39.sh ROUNDS [CONNS]: interleaved TLS setup rounds, pinned like the report's TLS
# section (holdfast on CPU 1 with one worker, the client on CPU 0, 16 openings in flight):
# per round, for plain ws://, wss:// with every handshake full (off) and wss:// resuming
# (always), a fresh holdfast ramped and closed by the loadgen, then a fresh one by the
# independent upgrade-client (its own rustls client). BIN (default target/release).
R=${1:-5}; N=${2:-10000}; B=${BIN:-target/release}
T=tests/fixtures/tls
mkdir -p /tmp/tls39
ulimit -n 20000
start() {
  if [ $1 = plain ]; then taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 >/dev/null 2>&1 & P=$!
  else taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 --tls-cert $T/server.pem --tls-key $T/server.key >/dev/null 2>&1 & P=$!; fi
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
}
stop() { kill $P; wait $P 2>/dev/null; sleep 0.5; }
for r in $(seq $R); do
  for k in plain off always; do
    if [ $k = plain ]; then U=ws://127.0.0.1:9301/echo; LT=""; UT="";
    else U=wss://localhost:9301/echo; LT="--tls-ca $T/ca.pem --tls-resumption $k"; UT="--tls-ca $T/ca.pem --tls-resumption $k"; fi
    start $k
    taskset -c 0 $B/holdfast-loadgen hold --url $U --connections $N --rate 40000 --duration 0.5 --workers 1 --concurrency 16 $LT --server-pid $P --json /tmp/tls39/lg-$k-$r.json >/dev/null 2>/tmp/tls39/lg-$k-$r.err
    stop
    start $k
    taskset -c 0 $B/holdfast-bench upgrade-client --url $U --connections $N --rate 40000 --hold 0.5 --concurrency 16 $UT --server-pid $P > /tmp/tls39/uc-$k-$r.json 2>/tmp/tls39/uc-$k-$r.err
    stop
    python3 - $k $r <<'P'
import json,sys
k,r=sys.argv[1],sys.argv[2]
for c in ('lg','uc'):
    try: d=json.load(open(f'/tmp/tls39/{c}-{k}-{r}.json'))
    except Exception as e: print(k,r,c,'failed',e); continue
    h=d.get('tls_handshakes') or {}
    print(f"{k:6s} r{r} {c}: up {d['server_cpu_us_per_upgrade']:.1f} close {d['server_cpu_us_per_close']:.1f} µs  est {d.get('established')} full/resumed {h.get('full')}/{h.get('resumed')} unnotified {d.get('closes_without_close_notify')}")
P
  done
done
