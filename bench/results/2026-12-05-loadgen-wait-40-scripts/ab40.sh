# ab40.sh ROUNDS OLD NEW: the loadgen's wait (eventfd + ppoll, OLD) against waiting in the
# ring's io_uring_enter (NEW), interleaved, the same holdfast build: closed-loop echo at 100
# and 1,000 connections pinned like the report (holdfast one worker on CPU 1, loadgen one
# thread on CPU 0, 5 s after 1 s warm-up), and the 18k x 60/s fan-out (admin publish, the
# defaults, 10 s). Prints msgs (deliveries) per server-CPU-s, the loadgen's CPU-s and the
# latency the loadgen saw.
R=${1:-3}; OLD=$2; NEW=$3; B=${BIN:-target/release}
O=/tmp/ab40; mkdir -p $O
ulimit -n 20000
for r in $(seq $R); do
  for v in old new; do
    L=$OLD; [ $v = new ] && L=$NEW
    for c in 100 1000; do
      taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 >/dev/null 2>&1 & P=$!
      for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
      taskset -c 0 $L echo --url ws://127.0.0.1:9301/echo --connections $c --workers 1 --warmup 1 --duration 5 --server-pid $P --json $O/echo-$v-$c-$r.json >/dev/null 2>&1
      kill $P; wait $P 2>/dev/null; sleep 0.5
    done
    $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 >/dev/null 2>&1 & P=$!
    for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
    $L fanout --url ws://127.0.0.1:9301/ws --connections 18000 --topics 1 --publish-rate 60 --admin 127.0.0.1:9302 --warmup 2 --duration 10 --server-pid $P --json $O/fan-$v-$r.json >/dev/null 2>&1
    kill $P; wait $P 2>/dev/null; sleep 0.5
  done
  python3 - $O $r <<'P'
import json,sys
o,r=sys.argv[1:3]
for v in ('old','new'):
    for c in (100,1000):
        try: d=json.load(open(f'{o}/echo-{v}-{c}-{r}.json'))
        except Exception as e: print(v,c,'failed',e); continue
        print(f"r{r} {v} echo {c}: {d['messages_per_server_cpu_s']:.0f} msgs/server-CPU-s, loadgen {d['loadgen_cpu_seconds']:.2f} s, rtt p50 {d['rtt_us']['p50']} p99 {d['rtt_us']['p99']}")
    try: d=json.load(open(f'{o}/fan-{v}-{r}.json'))
    except Exception as e: print(v,'fan failed',e); continue
    print(f"r{r} {v} fanout: {d.get('deliveries_per_server_cpu_s',0):.0f} per server-CPU-s, loadgen {d.get('loadgen_cpu_seconds',0):.2f} s, latency p50 {d['publish_to_delivery_us']['p50']} p99 {d['publish_to_delivery_us']['p99']} us")
P
done
