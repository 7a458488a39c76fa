# ceil37.sh ROUNDS "RATES" VIA [CLIENTS]: 18k subscribers on 1 topic, holdfast defaults
# (2 workers), each run a fresh server; CLIENTS (default "fc lg") interleaved per rate.
# Writes /tmp/cmp/c37-VIA-RATE-CLIENT-ROUND.{json,out,metrics,server.log}. One run is the
# thirty-sixth sitting's one.sh (the copy these runs used differed only by an unused hook
# for extra fanout-client arguments).
set -u
ROUNDS=$1 RATES=$2 VIA=$3 CLIENTS=${4:-fc lg}
B=/work/main/target/release
H=$(dirname "$0")/../2026-12-04-loadgen-reader-36-scripts
mkdir -p /tmp/cmp
for r in $(seq $ROUNDS); do
  for rate in $RATES; do
    for c in $CLIENTS; do
      echo "round $r rate $rate client $c"
      bash $H/one.sh $B holdfast $rate $VIA $c c37-$VIA-$rate-$c-$r
    done
  done
done
