# count42.sh CONFIG TAG: fan42.sh's run once with perf stat on the server for 8 s mid-run:
# sends (uWebSockets: sendto/write syscalls; holdfast: io_uring requests by opcode) and packets.
k=$1; TAG=$2; B=${BIN:-target/release}; UWS=${UWS:-$(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1)}
ulimit -n 20000
case $k in
  uws) $UWS 9321 9322 >/dev/null 2>&1 & P=$! ;;
  *) $B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 --fanout-send-interval $k $EXTRA >/dev/null 2>&1 & P=$! ;;
esac
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections 18000 --topics 1 --publish-rate 60 --admin 127.0.0.1:9322 --warmup 3 --duration 14 --settle 5 --server-pid $P --json /tmp/s42/c-$TAG.json >/dev/null 2>&1 &
L=$!
sleep 8
perf stat -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,net:net_dev_xmit,task-clock,context-switches' -p $P -o /tmp/s42/stat-$TAG.txt -- sleep 8
perf record -e io_uring:io_uring_submit_req -p $P -o /tmp/s42/sub-$TAG.data -- sleep 2 >/dev/null 2>&1
wait $L
kill $P; wait $P 2>/dev/null
cat /tmp/s42/stat-$TAG.txt | grep -v "^#" | grep .
