# ab33b.sh ROUNDS: base vs frames copied once, the second set (server CPU from the loadgen)
cd /tmp/cmp
for r in $(seq $1); do
  for via in admin ws; do
    TS="taskset -c 0" bash one.sh /tmp/b33base holdfast 60 $via lg ab33b-base-$via-r$r --workers 1 --fanout-send-interval 500ms
    TS="taskset -c 0" bash one.sh /tmp/b33s holdfast 60 $via lg ab33b-s-$via-r$r --workers 1 --fanout-send-interval 500ms
  done
done
