#!/bin/bash
# Item 2 overload re-run: 18,000 subscribers, one worker, admin publish at 960 msgs/s.
# usage: run.sh LABEL [server flags...]
cd /tmp/ovl
label=$1; shift
${HOLDFAST:-./holdfast} serve --listen 127.0.0.1:18080 --admin 127.0.0.1:19090 --workers 1 "$@" > srv-$label.log 2>&1 &
SRV=$!
for i in $(seq 50); do curl -sf 127.0.0.1:19090/healthz >/dev/null && break; sleep 0.1; done
m() { curl -s 127.0.0.1:19090/metrics | grep -E "^holdfast_($1)" ; }
( while kill -0 $SRV 2>/dev/null; do
    echo "t=$(date +%s) rss_kb=$(grep VmRSS /proc/$SRV/status | awk '{print $2}') $(m 'websockets |outbound_queue_bytes|connection_heap_bytes|memory_used_bytes|memory_shed_total|memory_refused_total|aborted_total|pubsub_publish_refused_total' | tr '\n' ' ')"
    sleep 1; done ) > samples-$label.txt &
SAMP=$!
./holdfast-loadgen fanout --url ws://127.0.0.1:18080/ws --connections 18000 --publish-rate ${RATE:-960} \
   --publish-via admin --admin 127.0.0.1:19090 --duration 20 --settle 5 --server-pid $SRV \
   --json fanout-$label.json > loadgen-$label.txt 2>&1
echo "loadgen exit $?" >> loadgen-$label.txt
# After every client has gone: the gauges must return to zero.
for i in $(seq 30); do
  ws=$(m 'websockets ' | awk '{print $2}')
  [ "$ws" = "0" ] && break; sleep 1
done
sleep 2
echo "AFTER: $(m 'connections_total_open|websockets |outbound_queue_bytes|connection_heap_bytes|memory_used_bytes|aborted_total|memory_shed_total' | tr '\n' ' ')" >> samples-$label.txt
kill $SAMP; kill -TERM $SRV; sleep 1; kill -INT $SRV 2>/dev/null; wait $SRV 2>/dev/null
