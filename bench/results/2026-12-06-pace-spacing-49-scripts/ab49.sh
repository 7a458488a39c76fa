# ab49.sh ROUNDS: uws, new default (auto), old default (--fanout-pace-interval 0), 195ms always; RATE, SUBS env
D=bench/results/2026-12-05-tuned-44-scripts
for r in $(seq $1); do
  bash $D/run44.sh uws uws-$r
  BIN=/tmp/hf49-auto bash $D/run44.sh eager auto-$r
  BIN=/tmp/hf49-auto bash $D/run44.sh eager eager-$r --fanout-pace-interval 0
  [ -z "$NOSPACED" ] && BIN=/tmp/hf49-auto bash $D/run44.sh 195ms spaced-$r
done
