# reg32.sh ROUNDS: tuned c1m, ws publishing, defaults, 500 ms: base (58b5fb9) vs g (28cc5f3), interleaved
cd /tmp/cmp
for r in $(seq $1); do
  bash one.sh /tmp/b32base holdfast 60 ws lg reg32-base-r$r --fanout-send-interval 500ms
  bash one.sh /tmp/b32g holdfast 60 ws lg reg32-g-r$r --fanout-send-interval 500ms
done
