# arms45.sh TAG [N]: one pinned holdfast upgrade/close ramp (as profup45.sh) counting, on CPU 1,
# io_uring's poll arms (io_uring:io_uring_poll_arm: an operation that found nothing ready and
# waits for readiness) and task-work adds, per connection.
N=${2:-10000}; . $(dirname $0)/start45.sh; start45 holdfast
perf stat -x, -C 1 -e io_uring:io_uring_poll_arm,io_uring:io_uring_task_add,io_uring:io_uring_submit_req,io_uring:io_uring_complete -o $O/$1.stat & R=$!
sleep 0.3
taskset -c 0 $B/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json $O/$1.json >/dev/null 2>&1
kill -INT $R; wait $R
kill $P; wait $P 2>/dev/null
awk -F, -v n=$N '$1 ~ /^[0-9]+$/ {printf "%s %s %.2f per connection\n", $3, $1, $1/n}' $O/$1.stat
