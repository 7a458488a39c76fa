#!/bin/bash
# 35,000 held on one worker; trace io_uring task work and the server's enters while the probe runs.
B=/work/main/target/release
S=$(dirname "$(readlink -f "$0")"); cd "${OUT:-/tmp}"  # logs and traces go to OUT
$B/holdfast serve --listen 127.0.0.1:19100 --admin 127.0.0.1:19101 --workers 1 > srv.log 2>&1 &
SP=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:19101/metrics >/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen hold --url ws://127.0.0.1:19100/ --connections 17500 --duration 40s --sources 127.0.1.1-127.0.1.8 > h1.log 2>&1 &
H1=$!
$B/holdfast-loadgen hold --url ws://127.0.0.1:19100/ --connections 17500 --duration 40s --sources 127.0.2.1-127.0.2.8 > h2.log 2>&1 &
H2=$!
for i in $(seq 300); do c=$(curl -s http://127.0.0.1:19101/metrics | awk '/^holdfast_connections_open /{print $2}'); [ "${c%.*}" -ge 35000 ] 2>/dev/null && break; sleep 0.2; done
sleep 2
perf record -q -o trace.data -a -e io_uring:io_uring_task_add,io_uring:io_uring_local_work_run,io_uring:io_uring_complete,syscalls:sys_enter_io_uring_enter,syscalls:sys_exit_io_uring_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom -- python3 "$S/probe.py" 19100 50 
wait $H1 $H2
kill $SP; wait $SP
# Who signalled the later rings' eventfds (ring 0's poll woken with EPOLL_URING_WAKE|POLLIN):
#   perf script -i trace.data | grep "mask 8000001" | awk '{print $1}' | sort | uniq -c
# 2026-12-05, old build (404cef2): 51 swapper (RCU callbacks), 3 holdfast-w0, 0 python3.
