#!/bin/bash
# Interleaved A/B of a rung's cost: LIST="name:binary ..." ROUNDS=n RATE=r RUNG=poll|sse EXTRA="server flags"; 10k subscribers, 1 topic, admin publishing
ulimit -n 20000
cd /work/main
for r in $(seq 1 ${ROUNDS:-3}); do
 for e in $LIST; do
  n=${e%%:*}; b=${e#*:}
  $b serve --listen 127.0.0.1:18080 --admin 127.0.0.1:19090 $EXTRA > /tmp/h59/ab-srv.log 2>&1 & SP=$!
  sleep 1
  ./target/release/holdfast-loadgen fanout --url "http://127.0.0.1:18080/${RUNG:-poll}?topics=t" --connections 10000 --topics 1 --publish-rate ${RATE:-50} --publish-via admin --admin 127.0.0.1:19090 --duration 10 --server-pid $SP > /tmp/h59/ab-lg.txt 2>&1
  kill $SP; wait $SP 2>/dev/null
  echo "$r $n $(grep -o 'server CPU [0-9.]* s = [0-9]* deliveries per server-CPU-s' /tmp/h59/ab-lg.txt) $(grep -o 'p50 [0-9.]* p90 [0-9.]* p99 [0-9.]*' /tmp/h59/ab-lg.txt)"
 done
done
