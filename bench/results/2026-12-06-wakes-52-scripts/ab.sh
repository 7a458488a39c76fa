# ab.sh KIND TAG [server args]: KIND = uws | holdfast build dir. Env: SUBS TOPICS RATE VIA WORKERS SRV_CPUS (taskset for the server; empty: none) LG_CPUS (default 0,1)
cd /work/main; ulimit -n 20000; K=$1; T=$2; shift 2; O=/tmp/s52; mkdir -p $O
TS=""; [ -n "$SRV_CPUS" ] && TS="taskset -c $SRV_CPUS"
if [ $K = uws ]; then $TS $(ls /tmp/holdfast-bench-uws-*/uws-peer | head -1) 9321 9322 >/dev/null 2>&1 & P=$!
else HOLDFAST_LOG="info,holdfast::reactor::worker=debug" $TS $K/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers ${WORKERS:-2} --max-connections 20000 "$@" >$O/$T.srv 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
taskset -c ${LG_CPUS:-0,1} /tmp/hf51a/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-10000} --topics ${TOPICS:-1} --publish-rate ${RATE:-10} --publish-via ${VIA:-admin} --admin 127.0.0.1:9322 --warmup 1 --duration 8 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1
for t in /proc/$P/task/*; do echo "$(cat $t/comm) $(grep -h ctxt_switches $t/status | tr -s " \t\n" " ") $(cut -d" " -f14,15 $t/stat)"; done; grep -E "syscr|syscw" /proc/$P/io | tr "\n" " "; echo; kill $P; wait $P 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$T.json'));print('$T', 'cpu', round(d['server_cpu_seconds'],2), 'per CPU', round(d['deliveries_per_server_cpu_s']), 'p50/p99 ms', round(d['publish_to_delivery_us']['p50']/1000,2), round(d['publish_to_delivery_us']['p99']/1000,2), 'per read', round(d['deliveries_per_read'] or 0,1), 'lost', d['lost_in_stream']+d['lost_at_end'])"
[ $K != uws ] && grep -h 'spacing sends' $O/$T.srv | sed 's/.*worker: //' | head -3
true
