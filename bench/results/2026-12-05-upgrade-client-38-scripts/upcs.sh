# upcs.sh CLIENT KIND: context switches and CPU of the pinned server over one 10k ramp+close
C=$1; K=$2; B=${BIN:-target/release}
ulimit -n 20000
if [ $K = holdfast ]; then taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 >/dev/null 2>&1 & P=$!
else taskset -c 1 ${UWS:-$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)} 9301 9302 >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
sleep 0.2
perf stat -e context-switches,task-clock -p $P -o /tmp/cmp/cs.txt & S=$!
sleep 0.2
if [ $C = lg ]; then taskset -c 0 $B/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections 10000 --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json /tmp/cmp/o.json >/dev/null 2>&1
else taskset -c 0 $B/holdfast-bench upgrade-client --url ws://127.0.0.1:9301/echo --connections 10000 --server-pid $P > /tmp/cmp/o.json 2>/dev/null; fi
kill -INT $S; wait $S
echo "$C $K $(python3 -c "import json;d=json.load(open('/tmp/cmp/o.json'));print(round(d['server_cpu_us_per_upgrade'],1), round(d['server_cpu_us_per_close'],1))") cs $(grep context-switches /tmp/cmp/cs.txt | awk '{print $1}') ms $(grep task-clock /tmp/cmp/cs.txt | awk '{print $1}')"
kill $P; wait $P 2>/dev/null; sleep 0.3
