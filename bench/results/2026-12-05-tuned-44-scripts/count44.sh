# count44.sh CONFIG TAG: one run44.sh fan-out run (18k x 60/s admin, DUR 16 s); over 5 s of its steady
# state, the server's task-clock, its sends (holdfast: every io_uring submission, io_uring_submit_req,
# nearly all of them sends, its few timeouts and receives included; uWebSockets: sendto calls) and the
# packets transmitted in its context (net:net_dev_xmit), printed as microseconds of server CPU per
# send and packets per send.
D=$(dirname $0); O=${OUT:-/tmp/s44}; mkdir -p $O
DUR=16 bash $D/run44.sh $1 $2 > $O/$2.line &
sleep 12; P=$(pgrep -f "uws-peer 9321|holdfast serve --listen 127.0.0.1:9321" | head -1)
perf stat -x, -e task-clock,syscalls:sys_enter_sendto,io_uring:io_uring_submit_req,net:net_dev_xmit -p $P -o $O/$2.count -- sleep 5
wait; cat $O/$2.line
python3 - $O/$2.count $2 <<'PY'
import sys
v = {}
for l in open(sys.argv[1]):
    p = l.strip().split(",")
    if len(p) > 3 and p[0].replace(".", "").isdigit():
        v[p[2]] = float(p[0])
tc = v.get("task-clock", 0)  # ms (perf prints msec)
sends = v.get("syscalls:sys_enter_sendto", 0) + v.get("io_uring:io_uring_submit_req", 0)
pk = v.get("net:net_dev_xmit", 0)
print(f"{sys.argv[2]}: {tc/5:.0f} ms/s server CPU, {sends/5:.0f} sends-or-submits/s, {tc*1000/sends:.2f} us per send, {pk/sends:.2f} packets per send")
PY
