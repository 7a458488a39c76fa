# ab32.sh ROUNDS: base 500 / grouped 500 / grouped 450 / uWS, one worker or uWS on CPU 0, admin, interleaved
cd /tmp/cmp
for r in $(seq $1); do
  TS="taskset -c 0" bash one.sh /tmp/b32base holdfast 60 admin lg ab32-base500-r$r --workers 1 --fanout-send-interval 500ms
  TS="taskset -c 0" bash one.sh /tmp/b32g holdfast 60 admin lg ab32-g500-r$r --workers 1 --fanout-send-interval 500ms
  TS="taskset -c 0" bash one.sh /tmp/b32g holdfast 60 admin lg ab32-g450-r$r --workers 1 --fanout-send-interval 450ms
  TS="taskset -c 0" bash one.sh /tmp/b32g uws 60 admin lg ab32-uws-r$r
done
