# indep43.sh RATE TAG BINDIR [server args...]: one fan-out round with the independent client
# (holdfast-bench fanout-client: tokio, epoll, no code shared with the loadgen), 18k
# subscribers, admin publishing, untuned. BINDIR holds the holdfast binary to run.
ulimit -n 20000; B=target/release; O=${OUT:-/tmp/s43}; mkdir -p $O
RATE=$1; T=$2; H=$3; shift 3
$H/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 "$@" >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-bench fanout-client --url ws://127.0.0.1:9321/ws --admin 127.0.0.1:9322 --subscribers 18000 --publish-rate $RATE --publish-via admin --warmup 3 --duration 14 --settle 5 --server-pid $P > $O/$T.indep 2>&1
kill $P; wait $P 2>/dev/null
echo "$T: $(grep -iE 'p50|per server-CPU' $O/$T.indep | tr '\n' ' ' | cut -c1-300)"
