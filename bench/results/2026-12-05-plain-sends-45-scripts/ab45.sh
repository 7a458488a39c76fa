# ab45.sh ROUNDS: interleaved run44.sh rounds (18k x 60/s admin, 195 ms for holdfast) of uWebSockets,
# holdfast as built (BASE) and holdfast sending on plain descriptors (PLAIN, HOLDFAST_PLAIN_SENDS=1),
# one meter line per run; with COUNT=1 each run is a count44.sh run instead (CPU per send).
D=${D44:-bench/results/2026-12-05-tuned-44-scripts}; N=$1
R=run44.sh; [ -n "$COUNT" ] && R=count44.sh
for r in $(seq $N); do
  bash $D/$R uws uws-$r
  BIN=${BASE:-/tmp/hf45-base} bash $D/$R 195ms base-$r
  BIN=${PLAIN:-/tmp/hf45-plain} HOLDFAST_PLAIN_SENDS=1 bash $D/$R 195ms plain-$r
done
