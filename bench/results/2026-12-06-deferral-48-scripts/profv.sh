# profv.sh CONFIG TAG VIA [server args...]: one run44.sh fan-out run at 1,000 topics x 10 subscribers and
# 2,000 publishes/s (SUBS, TOPICS, RATE override), published by VIA (admin or ws), DUR 16 s, with a
# system-wide call-graph profile (cpu-clock, 1999 Hz) over 8 s of its steady state, as perf script text in
# $OUT/TAG.txt (for ../2026-12-05-tuned-44-scripts/cat44.py and ../2026-12-06-userspace-47-scripts/chains47.py).
# Without the profile the same runs were `VIA=... SUBS=10000 TOPICS=1000 RATE=2000 run44.sh CONFIG TAG`.
D=$(dirname $0); O=${OUT:-/tmp/s48}; C=$1; T=$2; V=$3; shift 3
VIA=$V SUBS=${SUBS:-10000} TOPICS=${TOPICS:-1000} RATE=${RATE:-2000} DUR=16 OUT=$O \
  bash $D/../2026-12-05-tuned-44-scripts/run44.sh $C $T "$@" &
sleep 12; perf record -a -g -F 1999 -o $O/$T.data -- sleep 8 > /dev/null 2>&1
wait; perf script -i $O/$T.data -F comm,tid,ip,sym > $O/$T.txt 2>/dev/null
