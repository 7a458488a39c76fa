#!/bin/bash
# run.sh: each server build held by 64 and 200 silent admin connections (patient, churn),
# 20 s each, /healthz probed every 100 ms. Output: /tmp/s56/hold.txt
out=/tmp/s56/hold.txt; : > $out
for tag in base:/tmp/hf55a/holdfast new:/tmp/s56/holdfast-new; do
  name=${tag%%:*}; bin=${tag#*:}
  for spec in 64:patient 64:churn 200:churn; do
    n=${spec%%:*}; mode=${spec#*:}
    $bin serve --listen 127.0.0.1:18080 --admin 127.0.0.1:19090 > /tmp/s56/srv-$name.log 2>&1 &
    pid=$!
    for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:19090/healthz && break; sleep 0.1; done
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    r=$(python3 /tmp/s56/hold.py 19090 $n 20 $mode)
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    m=$(curl -s 127.0.0.1:19090/metrics | grep -E '^holdfast_admin_connections_(displaced|refused)_total\{listener="admin"' | tr '\n' ' ')
    echo "$name $r server_cpu_s=$(echo "($t1-$t0)/100" | bc -l | cut -c1-5) $m" | tee -a $out
    kill $pid; wait $pid 2>/dev/null
  done
done
