# tlsprof.sh uws|holdfast off|always TAG: one TLS server on CPU 1, the loadgen ramping 10,000 wss connections from CPU 0 (16 in flight), perf over the ramp
cd /work/main; ulimit -n 20000; K=$1; R=$2; T=$3; O=/tmp/s53; F=tests/fixtures/tls
if [ $K = uws ]; then taskset -c 1 ${UWSBIN:-$(ls /tmp/holdfast-bench-uws-*/uws-peer-tls | head -1)} 9331 9332 $F/server.pem $F/server.key > /dev/null 2>&1 & P=$!
else HOLDFAST_LOG=warn taskset -c 1 target/release/holdfast serve --listen 127.0.0.1:9331 --admin 127.0.0.1:9332 --workers 1 --tls-cert $F/server.pem --tls-key $F/server.key > /dev/null 2>&1 & P=$!; fi
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9331) 2>/dev/null && break; sleep 0.1; done
perf record -F 2999 -g -p $P -o $O/$T.perf 2>/dev/null >/dev/null & Q=$!
taskset -c 0 target/release/holdfast-loadgen hold --url wss://localhost:9331/echo --connections 10000 --rate 20000 --duration 0.5 --workers 1 --concurrency 16 --server-pid $P --tls-ca $F/ca.pem --tls-resumption $R > $O/$T.log 2>&1
kill -INT $Q; wait $Q; kill $P; wait $P 2>/dev/null
grep -i "cpu" $O/$T.log | head -3
perf report -i $O/$T.perf --no-children --sort dso -q 2>/dev/null | head -8
perf report -i $O/$T.perf --no-children --sort sym -q 2>/dev/null | head -25
