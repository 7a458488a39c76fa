# prof.sh TAG [server args]: perf the server 6 s in the middle of an 18k x RATE run
cd /work/main; ulimit -n 20000; B=${BIN:-/tmp/hf50c}; T=$1; shift
$B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 "$@" >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-18000} --topics 1 --publish-rate ${RATE:-60} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 14 --settle 5 --server-pid $P --json /tmp/s50/$T.json > /tmp/s50/$T.log 2>&1 & L=$!
sleep 8; perf record -e cpu-clock -F 2000 -g -p $P -o /tmp/s50/$T.data -- sleep 6 >/dev/null 2>&1; wait $L; kill $P; wait $P 2>/dev/null
tail -1 /tmp/s50/$T.log
perf report -i /tmp/s50/$T.data --children --sort sym --stdio -g none -n 2>/dev/null | grep -E " (__do_sys_io_uring_enter|io_send|handle_softirqs|tcp_sendmsg|__tcp_transmit_skb|tcp_v4_rcv|run_timer_softirq|schedule|io_submit_sqes|io_cqring_wait|__io_run_local_work|Worker<S>::run|release_sock|tcp_ack|ep_poll|io_uring_enter)$" 
perf report -i /tmp/s50/$T.data --sort dso --stdio -n 2>/dev/null | grep "%" | head -4
