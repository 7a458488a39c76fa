# tuned44.sh ROUNDS [configs...]: interleaved fan-out runs (18k x 60/s, admin publishing, istat43.sh)
# each config untuned and under tuning/c1m.conf; configs: uws, eager or an interval (default: 280ms uws).
# Sysctls are restored after every tuned run.
D=$(dirname $0); I=$D/../2026-12-05-cpu-swing-43-scripts/istat43.sh; N=$1; shift
CS=${@:-280ms uws}; bash $D/tune44.sh save
for r in $(seq $N); do for c in $CS; do
  NOSAMPLE=1 bash $I $c $c-off-$r | grep meter
  bash $D/tune44.sh on; NOSAMPLE=1 bash $I $c $c-c1m-$r | grep meter; bash $D/tune44.sh off
done; done
