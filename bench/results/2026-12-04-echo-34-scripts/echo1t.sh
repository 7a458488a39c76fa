# echo1t.sh BIN holdfast|uws CONNS TAG [server args]: one echo run (server on CPU 0, loadgen on CPU 1) with
# the lo device's queued packets (net:net_dev_queue, len = 66 B headers + payload) recorded for 1 s
# from the server; count them with: perf script -i TAG.tp.data | awk '{print $NF}' | sort | uniq -c
B=$1 K=$2 C=$3 TAG=$4; shift 4
ulimit -n 20000
UWS=$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)
if [ $K = uws ]; then taskset -c 0 $UWS 9301 9302 >/dev/null 2>&1 & P=$!
else taskset -c 0 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 "$@" >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
(sleep 3; perf record -e net:net_dev_queue -p $P -o /tmp/cmp/$TAG.tp.data -- sleep 1 >/dev/null 2>&1) &
taskset -c 1 $B/holdfast-loadgen echo --url ws://127.0.0.1:9301/echo --connections $C --duration 5 --warmup 1 --workers 1 --server-pid $P --json /tmp/cmp/$TAG.json >/tmp/cmp/$TAG.out 2>&1
kill $P; wait $P 2>/dev/null; sleep 1
