# l3ab44.sh ROUNDS CONFIGS...: run44.sh rounds with and without /tmp/thrash44 (thrash44.c: SCHED_IDLE
# threads sweeping 512 MiB each, so the 480 MiB L3 keeps little between a socket's sends), interleaved.
D=$(dirname $0); N=$1; shift
for r in $(seq $N); do for c in "$@"; do
  bash $D/run44.sh $c l3-$c-quiet-$r
  /tmp/thrash44 512 40 & T=$!; sleep 1; bash $D/run44.sh $c l3-$c-thrash-$r; kill $T; wait $T 2>/dev/null
done; done
