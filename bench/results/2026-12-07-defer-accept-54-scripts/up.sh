# up.sh ROUNDS LIST: LIST of "tag:dir:args" (args space-separated, e.g. "--defer-accept 0"; dir "uws" for the peer), interleaved;
# per round a loadgen ramp and an upgrade-client ramp of N (10,000) ws:// connections, server on CPU 1, client on CPU 0
R=${1:-3}; shift; N=${N:-10000}
UWS=$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1); ulimit -n 20000; O=/tmp/s54/up; mkdir -p $O
start() { local d=$1; shift
  if [ $d = uws ]; then taskset -c 1 $UWS 9301 9302 >/dev/null 2>&1 & P=$!
  else taskset -c 1 $d/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 "$@" >/dev/null 2>&1 & P=$!; fi
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done; sleep 1.5; }
stop() { kill $P; wait $P 2>/dev/null; sleep 0.5; }
for r in $(seq $R); do for item in "$@"; do IFS=: read tag d a <<< "$item"
  start $d $a; taskset -c 0 /tmp/hf52a/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json $O/lg-$tag-$r.json >/dev/null 2>&1; stop
  start $d $a; taskset -c 0 /tmp/hf52a/holdfast-bench upgrade-client --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --hold 0.5 --server-pid $P > $O/uc-$tag-$r.json 2>/dev/null; stop
  python3 - $tag $r <<'P'
import json,sys
k,r=sys.argv[1],sys.argv[2]
out=[]
for c in ('lg','uc'):
    try: d=json.load(open(f'/tmp/s54/up/{c}-{k}-{r}.json')); out.append(f"{c} up {d['server_cpu_us_per_upgrade']:.1f} close {d['server_cpu_us_per_close']:.1f} wakes/up {d['server_wakeups_per_upgrade']:.2f}")
    except Exception as e: out.append(f"{c} failed")
print(f"{k:8s} r{r} "+"  ".join(out))
P
done; done
