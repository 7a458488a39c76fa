# one.sh BIN SERVER RATE VIA CLIENT TAG [extra server args...]   (CLIENT: lg | fc)
set -u
B=$1 S=$2 RATE=$3 VIA=$4 C=$5 TAG=$6; shift 6
OUT=/tmp/cmp
UWS=/tmp/holdfast-bench-uws-x/uws-peer
ulimit -n 20000
log=$OUT/$TAG.server.log
if [ $S = holdfast ]; then
  HOLDFAST_LOG=warn $B/holdfast serve --listen 127.0.0.1:18080 --admin 127.0.0.1:19080 --max-connections 36000 --client-publish "$@" >$log 2>&1 &
else
  $UWS 18080 19080 >$log 2>&1 &
fi
P=$!
for i in $(seq 100); do grep -q "^listening on" $log && break; sleep 0.1; done
if [ $C = lg ]; then
  $B/holdfast-loadgen fanout --url ws://127.0.0.1:18080/ws --connections 18000 --topics 1 --publish-rate $RATE --admin 127.0.0.1:19080 --warmup 5 --duration 20 --rate 20000 --settle 5 --publish-via $VIA --server-pid $P --json $OUT/$TAG.json > $OUT/$TAG.out 2>&1 &
  L=$!
else
  $B/holdfast-bench fanout-client --url ws://127.0.0.1:18080/ws --admin 127.0.0.1:19080 --subscribers 18000 ${FC_ARGS:-} --publish-rate $RATE --publish-via $VIA --warmup 5 --duration 20 --settle 5 --server-pid $P > $OUT/$TAG.json 2>$OUT/$TAG.out &
  L=$!
fi
if [ -n "${PERF:-}" ]; then (sleep 12; perf record -F 999 -g -p $L -o $OUT/$TAG.lg.perf.data -- sleep 10 >/dev/null 2>&1) & fi
if [ -n "${PERFS:-}" ]; then (sleep 12; perf record -F 999 -g -p $P -o $OUT/$TAG.perf.data -- sleep 10 >/dev/null 2>&1) & fi
wait $L
[ $S = holdfast ] && curl -s 127.0.0.1:19080/metrics > $OUT/$TAG.metrics
kill $P; wait $P 2>/dev/null; sleep 1
