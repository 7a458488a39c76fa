# sprof.sh KIND TAG: perf the server over a storm of 15,000 (from just before the cut)
ulimit -n 20000; O=/tmp/s55; K=$1; T=$2; UWS=$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)
if [ $K = uws ]; then $UWS 9351 9352 >/dev/null 2>&1 & P=$!
else $K/holdfast serve --listen 127.0.0.1:9351 --admin 127.0.0.1:9352 --max-connections 30000 >/dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9351) 2>/dev/null && break; sleep 0.1; done; sleep 1.5
/tmp/hf52a/holdfast-loadgen storm --url ws://127.0.0.1:9351/echo --connections 15000 --hold 1 --duration 60 --server-pid $P --json $O/$T.json >/dev/null 2>&1 & L=$!
sleep 1.5; perf record -F 2999 -g -p $P -o $O/$T.perf -- sleep 4 >/dev/null 2>&1
wait $L; kill $P; wait $P 2>/dev/null
python3 -c "import json;d=json.load(open('$O/$T.json'));print('$T', 'per reconnect', round(d['server_cpu_us_per_reconnect'],1), 'recovery s', round(d['recovery_seconds'],2))"
