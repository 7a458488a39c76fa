# cnt.sh TAG uws|hf [server args]: count the server's sends, packets and CPU for 6 s mid-run (18k x RATE admin)
cd /work/main; ulimit -n 20000; B=/tmp/hf50c; T=$1; K=$2; shift 2
if [ $K = uws ]; then $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!
else $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 "$@" >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-18000} --topics 1 --publish-rate ${RATE:-60} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 14 --settle 5 --server-pid $P --json /tmp/s50/$T.json > /tmp/s50/$T.log 2>&1 & L=$!
sleep 8; perf stat -e task-clock,io_uring:io_uring_submit_req,net:net_dev_xmit,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_sendto,sock:sock_send_length,context-switches -p $P -o /tmp/s50/$T.stat -- sleep 6 >/dev/null 2>&1; wait $L; kill $P; wait $P 2>/dev/null
echo "$T $(tail -1 /tmp/s50/$T.log | grep -o 'server CPU.*')"; grep -E "^ +[0-9]" /tmp/s50/$T.stat | awk '{printf "%s %s | ", $1, $2} END {print ""}'
