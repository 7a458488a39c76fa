# ab34.sh ROUNDS (fan-out, not echo), run in /tmp/cmp beside one.sh and sum.sh from 2026-12-04-fanout-31-scripts/
# ab34.sh ROUNDS: phase step 10 ms (b33r = 509622e) vs 25 ms vs 50 ms; admin, 500 ms;
# one worker on CPU 0 and defaults; uWebSockets on CPU 0; interleaved, untuned
cd /tmp/cmp
for r in $(seq $1); do
  for b in b33r b34s25 b34s50; do
    TS="taskset -c 0" bash one.sh /tmp/$b holdfast 60 admin lg ab34-$b-one-r$r --workers 1 --fanout-send-interval 500ms
    bash one.sh /tmp/$b holdfast 60 admin lg ab34-$b-def-r$r --fanout-send-interval 500ms
  done
  TS="taskset -c 0" bash one.sh /tmp/b33r uws 60 admin lg ab34-uws-one-r$r
done
