cd /work/main; ulimit -n 20000; B=$1; T=$2; shift 2; O=/tmp/s52
$B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --workers ${WORKERS:-2} --max-connections 20000 "$@" >$O/$T.srv 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
taskset -c 0,1 /tmp/hf51a/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections 10000 --topics 1000 --publish-rate 2000 --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 10 --settle 5 --server-pid $P --json $O/$T.json > $O/$T.log 2>&1 & L=$!
sleep 8; perf record -F 4999 -g -p $P -o $O/$T.perf -- sleep 5 >/dev/null 2>&1
wait $L; kill $P; wait $P 2>/dev/null
