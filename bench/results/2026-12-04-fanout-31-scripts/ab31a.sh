# ab31a.sh ROUNDS: every recipient deferred, no gather (b31a) vs held-only deferral with the gather (b31d), beside uWebSockets, 18k x 60/s admin, untuned, interleaved
set -u
for r in $(seq $1); do
  bash /tmp/cmp/one.sh /tmp/b31a uws 60 admin lg ab31a-uws-r$r
  bash /tmp/cmp/one.sh /tmp/b31d holdfast 60 admin lg ab31a-d430-r$r --fanout-send-interval 430ms
  bash /tmp/cmp/one.sh /tmp/b31a holdfast 60 admin lg ab31a-a540-r$r --fanout-send-interval 540ms
  bash /tmp/cmp/one.sh /tmp/b31a holdfast 60 admin lg ab31a-a500-r$r --fanout-send-interval 500ms
  bash /tmp/cmp/one.sh /tmp/b31a holdfast 60 admin lg ab31a-a1w540-r$r --workers 1 --fanout-send-interval 540ms
done
echo done
