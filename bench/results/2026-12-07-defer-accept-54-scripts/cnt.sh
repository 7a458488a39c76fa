# cnt.sh TAG DIR [server args]: io_uring events over one loadgen ramp of 10,000 ws:// upgrades (server on CPU 1, loadgen on CPU 0), per connection
ulimit -n 20000; T=$1; D=$2; shift 2; O=/tmp/s54/cnt; mkdir -p $O
taskset -c 1 $D/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 "$@" >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done; sleep 1.5
perf stat -x, -e io_uring:io_uring_poll_arm,io_uring:io_uring_task_add,io_uring:io_uring_complete,io_uring:io_uring_submit_req,io_uring:io_uring_local_work_run,sched:sched_switch -p $P -o $O/$T.perf &
Q=$!; sleep 0.3
taskset -c 0 /tmp/hf52a/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections 10000 --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json $O/$T.json >/dev/null 2>&1
kill -INT $Q; wait $Q; kill $P; wait $P 2>/dev/null
python3 - $O/$T.perf $T <<'P'
import sys
out=[]
for l in open(sys.argv[1]):
    f=l.strip().split(',')
    if len(f)>3 and f[0].replace('.','').isdigit(): out.append(f"{f[2].split(':')[-1]} {int(float(f[0]))/10000:.2f}")
print(sys.argv[2], "per connection:", ", ".join(out))
P
