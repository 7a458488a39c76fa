# arms45.sh TAG [N]: one pinned holdfast upgrade/close ramp (as profup45.sh) counting, on CPU 1,
# io_uring's submissions, completions, poll arms (io_uring:io_uring_poll_arm: an operation that
# found nothing ready and waits for readiness) and task-work additions, per connection.
N=${2:-10000}; . $(dirname $0)/start45.sh; start45 holdfast
perf stat -x, -C 1 -e io_uring:io_uring_poll_arm,io_uring:io_uring_task_add,io_uring:io_uring_submit_req,io_uring:io_uring_complete -o $O/$1.stat & R=$!
ramp45 $1
awk -F, -v n=$N '$1 ~ /^[0-9]+$/ {printf "%s %s %.2f per connection\n", $3, $1, $1/n}' $O/$1.stat
