# prof47.sh CONFIG TAG [server args...]: one run44.sh fan-out run (DUR 16 s; TOPICS, SUBS, RATE as
# run44.sh) with a system-wide call-graph profile (cpu-clock, 1999 Hz) over 8 s of its steady state,
# written as perf script text to $OUT/TAG.txt.
D=$(dirname $0); O=${OUT:-/tmp/s47}; mkdir -p $O
C=$1; T=$2; shift 2
DUR=16 bash $D/../2026-12-05-tuned-44-scripts/run44.sh $C $T "$@" &
sleep 12; perf record -a -g -F 1999 -o $O/$T.data -- sleep 8 > /dev/null 2>&1
wait; perf script -i $O/$T.data -F comm,tid,ip,sym > $O/$T.txt 2>/dev/null
