# ab31.sh ROUNDS: deferral (b31d) vs before (b31) beside uWebSockets, 18k x 60/s admin, untuned, interleaved
set -u
for r in $(seq $1); do
  bash /tmp/cmp/one.sh /tmp/b31d uws 60 admin lg ab31-uws-r$r
  bash /tmp/cmp/one.sh /tmp/b31 holdfast 60 admin lg ab31-old500-r$r --fanout-send-interval 500ms
  bash /tmp/cmp/one.sh /tmp/b31d holdfast 60 admin lg ab31-new500-r$r --fanout-send-interval 500ms
  bash /tmp/cmp/one.sh /tmp/b31d holdfast 60 admin lg ab31-new430-r$r --fanout-send-interval 430ms
  bash /tmp/cmp/one.sh /tmp/b31d holdfast 60 admin lg ab31-new1w430-r$r --workers 1 --fanout-send-interval 430ms
done
echo done
