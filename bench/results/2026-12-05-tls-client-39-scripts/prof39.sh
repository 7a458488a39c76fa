# prof39.sh off|always [lg|uc]: perf profile of one pinned holdfast worker over a wss:// ramp
# of 10,000 (16 in flight) by the loadgen (lg) or the independent upgrade-client (uc).
K=${1:-always}; C=${2:-lg}; B=${BIN:-target/release}; T=tests/fixtures/tls
ulimit -n 20000
taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 --tls-cert $T/server.pem --tls-key $T/server.key >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
perf record -F 2999 -g -p $P -o /tmp/prof39-$K-$C.data 2>/dev/null & R=$!
sleep 0.5
if [ $C = lg ]; then
  taskset -c 0 $B/holdfast-loadgen hold --url wss://localhost:9301/echo --connections 10000 --rate 40000 --duration 0.5 --workers 1 --concurrency 16 --tls-ca $T/ca.pem --tls-resumption $K --server-pid $P --json /tmp/prof39-$K-$C.json >/dev/null 2>&1
else
  taskset -c 0 $B/holdfast-bench upgrade-client --url wss://localhost:9301/echo --connections 10000 --rate 40000 --hold 0.5 --concurrency 16 --tls-ca $T/ca.pem --tls-resumption $K --server-pid $P > /tmp/prof39-$K-$C.json
fi
kill -INT $R; wait $R 2>/dev/null
kill $P; wait $P 2>/dev/null
perf report -i /tmp/prof39-$K-$C.data --no-children --sort dso,symbol 2>/dev/null | grep -v "^#" | grep -v "^$" | head -40
