# ng31.sh ROUNDS: deferral with the quarter-interval gather vs none, beside uWebSockets, 18k x 60/s admin, untuned, interleaved
set -u
for r in $(seq $1); do
  bash /tmp/cmp/one.sh /tmp/b31n uws 60 admin lg ng31-uws-r$r
  bash /tmp/cmp/one.sh /tmp/b31n holdfast 60 admin lg ng31-g500-r$r --fanout-send-interval 500ms
  TS="env HF_NOGATHER=1" bash /tmp/cmp/one.sh /tmp/b31n holdfast 60 admin lg ng31-n500-r$r --fanout-send-interval 500ms
  TS="env HF_NOGATHER=1" bash /tmp/cmp/one.sh /tmp/b31n holdfast 60 admin lg ng31-n600-r$r --fanout-send-interval 600ms
done
echo done
