# ab33.sh ROUNDS: base (6b12b67) vs frames copied once (b33s), one worker on CPU 0, 500 ms,
# admin and ws publishing, and uWebSockets on CPU 0; interleaved, untuned
cd /tmp/cmp
for r in $(seq $1); do
  for via in admin ws; do
    TS="taskset -c 0" bash one.sh /tmp/b33base holdfast 60 $via lg ab33-base-$via-r$r --workers 1 --fanout-send-interval 500ms
    TS="taskset -c 0" bash one.sh /tmp/b33s holdfast 60 $via lg ab33-s-$via-r$r --workers 1 --fanout-send-interval 500ms
    TS="taskset -c 0" bash one.sh /tmp/b33s uws 60 $via lg ab33-uws-$via-r$r
  done
done
