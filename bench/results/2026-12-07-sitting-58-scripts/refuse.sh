#!/bin/bash
# refuse.sh: each build churned by CONNS admin connections that send a request at once; 20 s
# each, twice, interleaved. Output: /tmp/s58/refuse.txt
out=/tmp/s58/refuse.txt; : > $out
for round in 1 2 3; do
for tag in base:/tmp/s58/holdfast-base new:/tmp/s58/holdfast-new; do
  name=${tag%%:*}; bin=${tag#*:}
  for n in 200 400; do
    $bin serve --listen 127.0.0.1:18080 --admin 127.0.0.1:19090 > /tmp/s58/srv-$name.log 2>&1 &
    pid=$!
    for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:19090/healthz && break; sleep 0.1; done
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    r=$(python3 /tmp/s58/refuse.py 19090 $n 20)
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    m=$(curl -s 127.0.0.1:19090/metrics | grep -E '^holdfast_admin_connections_(displaced|refused)_total\{listener="admin"' | sed 's/holdfast_admin_connections_//; s/{listener="admin"}//' | tr '\n' ' ')
    echo "round=$round $name $r server_cpu_s=$(echo "($t1-$t0)/100" | bc -l | cut -c1-5) $m" | tee -a $out
    kill $pid; wait $pid 2>/dev/null
  done
done
done
