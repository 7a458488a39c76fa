# echo1.sh BIN holdfast|uws CONNS TAG [server args]: one echo run, server on CPU 0, loadgen on CPU 1; PERF=1 records 3 s
B=$1 K=$2 C=$3 TAG=$4; shift 4
ulimit -n 20000
UWS=$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)
if [ $K = floor ]; then taskset -c 0 $B/holdfast-bench echo-floor --listen 127.0.0.1:9301 "$@" >/tmp/cmp/floor.err 2>&1 & P=$!
elif [ $K = uws ]; then taskset -c 0 $UWS 9301 9302 >/dev/null 2>&1 & P=$!
else taskset -c 0 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 "$@" >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
if [ -n "${PERF:-}" ]; then (sleep 3; perf record -g -p $P -o /tmp/cmp/$TAG.perf.data -- sleep 3 >/dev/null 2>&1) & fi
taskset -c 1 $B/holdfast-loadgen echo --url ws://127.0.0.1:9301/echo --connections $C --duration 7 --warmup 1 --workers 1 --server-pid $P --json /tmp/cmp/$TAG.json >/tmp/cmp/$TAG.out 2>&1
python3 -c "import json;d=json.load(open('/tmp/cmp/$TAG.json'));print('$TAG', {k:v for k,v in d.items() if 'cpu' in k or 'rate' in k or 'rtt' in k or 'per_s' in k})"
kill $P; wait $P 2>/dev/null; sleep 1
