# tw32.sh ROUNDS: tuned c1m, ws publishing, CPU0 shared: holdfast 1w 450 / 500, uWS
cd /tmp/cmp
for r in $(seq $1); do
  TS="taskset -c 0" bash one.sh /tmp/b32g holdfast 60 ws lg tw32-g450-r$r --workers 1 --fanout-send-interval 450ms
  TS="taskset -c 0" bash one.sh /tmp/b32g holdfast 60 ws lg tw32-g500-r$r --workers 1 --fanout-send-interval 500ms
  TS="taskset -c 0" bash one.sh /tmp/b32g uws 60 ws lg tw32-uws-r$r
done
