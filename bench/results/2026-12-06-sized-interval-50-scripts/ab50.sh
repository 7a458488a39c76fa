# ab50.sh ROUNDS: uws, sized (/tmp/hf50c), fixed 195 (/tmp/hf50b) at 10k x 100 admin, 18k x 60 admin, 18k x 120 ws
cd /work/main; D=bench/results/2026-12-05-tuned-44-scripts; export OUT=/tmp/s50ab
for r in $(seq $1); do
 for L in "10000 100 admin 100" "18000 60 admin 60" "18000 120 ws 120"; do set -- $L
  export SUBS=$1 RATE=$2 VIA=$3; T=$4
  bash $D/run44.sh uws uws$T-$r
  BIN=/tmp/hf50c bash $D/run44.sh eager sized$T-$r
  BIN=/tmp/hf50b bash $D/run44.sh eager fixed$T-$r
 done
done
