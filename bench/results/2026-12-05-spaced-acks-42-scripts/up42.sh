# up42.sh KIND TAG [CONNS]: one upgrade-and-close round pinned like the report's echo section
# (server on CPU 1, one worker / thread; loadgen on CPU 0), with perf stat on the server for
# the whole round: system calls, packets sent in its context, task-clock; and perf record of
# io_uring requests by opcode. Counts per connection.
K=$1; TAG=$2; N=${3:-10000}; B=${BIN:-target/release}
UWS=${UWS:-$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)}
ulimit -n 20000
if [ $K = holdfast ]; then taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 >/dev/null 2>&1 & P=$!
else taskset -c 1 $UWS 9301 9302 >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
sleep 0.5
EV=net:net_dev_xmit,task-clock,context-switches
for s in accept4 recvfrom read sendto write writev epoll_ctl epoll_wait epoll_pwait setsockopt getsockopt close shutdown io_uring_enter; do EV=$EV,syscalls:sys_enter_$s; done
perf stat -e $EV -p $P -o /tmp/s42/up-$TAG.txt &
S=$!
perf record -e io_uring:io_uring_submit_req -p $P -o /tmp/s42/upsub-$TAG.data >/dev/null 2>&1 &
R=$!
sleep 0.5
taskset -c 0 $B/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json /tmp/s42/up-$TAG.json >/dev/null 2>&1
sleep 0.5
kill -INT $S $R; wait $S $R 2>/dev/null
kill $P; wait $P 2>/dev/null
python3 - $TAG $N <<'P'
import json,sys,re,subprocess
tag,n=sys.argv[1],int(sys.argv[2])
d=json.load(open(f'/tmp/s42/up-{tag}.json'))
print(f"{tag}: up {d['server_cpu_us_per_upgrade']:.1f} close {d['server_cpu_us_per_close']:.1f} µs")
for l in open(f'/tmp/s42/up-{tag}.txt'):
    m=re.match(r'\s*([\d,.]+)\s+(?:msec\s+)?(\S+)',l)
    if m and m.group(2) not in ('seconds',):
        v=float(m.group(1).replace(',',''))
        if v: print(f"  {m.group(2):40s} {v/n:8.3f} per connection")
out=subprocess.run(['perf','script','-i',f'/tmp/s42/upsub-{tag}.data'],capture_output=True,text=True).stdout
from collections import Counter
c=Counter(re.findall(r'opcode (\w+)',out))
for k,v in c.most_common(): print(f"  io_uring {k:32s} {v/n:8.3f} per connection")
P
