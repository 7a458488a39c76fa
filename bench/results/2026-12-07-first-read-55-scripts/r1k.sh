# r1k.sh ROUNDS: 1,000 topics x 10 subscribers at 2,000/s by publisher (admin, ws), LIST of servers (uws or a build dir), through the 52nd sitting ab.sh
S=/work/main/bench/results/2026-12-06-wakes-52-scripts/ab.sh
for r in $(seq $1); do for v in ${VIAS:-admin ws}; do
 for k in ${LIST:-uws /tmp/hf55base}; do n=$(basename $k); a=""; [ $k != uws ] && a="--client-publish $EXTRA"; TOPICS=1000 SUBS=10000 RATE=2000 VIA=$v bash $S $k ${n}-$v-$r $a 2>&1 | grep -vE "^(tokio|loadgen)" ; done; done; done
