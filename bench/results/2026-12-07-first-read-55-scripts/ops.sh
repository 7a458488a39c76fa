# ops.sh DIR [server args]: io_uring submissions by opcode and completions by result over one loadgen hold of 10,000 ws:// connections (server: one worker on CPU 1; loadgen on CPU 0)
ulimit -n 20000; D=$1; shift
taskset -c 1 $D/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 "$@" >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done; sleep 1.5
perf record -e io_uring:io_uring_submit_req -e io_uring:io_uring_complete -p $P -o /tmp/s55/ops.perf >/dev/null 2>&1 &
Q=$!; sleep 0.5
taskset -c 0 /tmp/hf52a/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections 10000 --rate 40000 --duration 0.5 --workers 1 --server-pid $P >/dev/null 2>&1
sleep 0.5; kill -INT $Q; wait $Q; kill $P; wait $P 2>/dev/null
perf script -i /tmp/s55/ops.perf 2>/dev/null | grep submit_req | grep -o "opcode [A-Z_]*" | sort | uniq -c
perf script -i /tmp/s55/ops.perf 2>/dev/null | grep io_uring_complete | grep -o "result -\?[0-9]*" | awk '{r=$2; if (r>0) r="pos"; print r}' | sort | uniq -c
