# ab38.sh ROUNDS: per upgrade/close, old (/tmp/s38/bin) vs new (/tmp/s38/new) holdfast, both clients, interleaved
R=${1:-5}; N=10000; B=/tmp/s38/bin
ulimit -n 20000
for r in $(seq $R); do
 for v in old new; do
  H=/tmp/s38/bin/holdfast; [ $v = new ] && H=/tmp/s38/new/holdfast
  for c in lg uc; do
   taskset -c 1 $H serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 >/dev/null 2>&1 & P=$!
   for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
   if [ $c = lg ]; then taskset -c 0 $B/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json /tmp/cmp/ab-$v-$c-$r.json >/dev/null 2>&1
   else taskset -c 0 $B/holdfast-bench upgrade-client --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --hold 0.5 --server-pid $P > /tmp/cmp/ab-$v-$c-$r.json 2>/dev/null; fi
   kill $P; wait $P 2>/dev/null; sleep 0.5
  done
 done
done
python3 - $R <<'P'
import json,sys,statistics as st
R=int(sys.argv[1])
for c in ('lg','uc'):
  for v in ('old','new'):
    up=[];cl=[]
    for r in range(1,R+1):
      try: d=json.load(open(f'/tmp/cmp/ab-{v}-{c}-{r}.json'))
      except Exception: continue
      up.append(d['server_cpu_us_per_upgrade']); cl.append(d['server_cpu_us_per_close'])
    print(f"{c} {v}: n={len(up)} up {st.median(up):.1f} ({min(up):.1f}-{max(up):.1f})  close {st.median(cl):.1f} ({min(cl):.1f}-{max(cl):.1f})  rounds up "+" ".join(f"{x:.1f}" for x in up))
P
