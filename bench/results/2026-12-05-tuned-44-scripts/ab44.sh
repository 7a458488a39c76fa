# ab44.sh ROUNDS CONFIGS...: interleaved run44.sh rounds (18k x 60/s, admin publishing, the report's
# warmup and duration), one line per run.
D=$(dirname $0); N=$1; shift
for r in $(seq $N); do for c in "$@"; do bash $D/run44.sh $c ab-$c-$r; done; done
