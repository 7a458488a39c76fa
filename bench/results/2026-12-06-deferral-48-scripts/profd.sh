# profd.sh CONFIG TAG: one run44.sh fan-out run (18k x RATE/s admin, DUR 16 s) with a DWARF call-graph
# profile of the server alone (499 Hz, 6 s of its steady state), as perf script text in $OUT/TAG.txt
# (for userleaf48.py and callers48.py: inlined frames are named).
D=$(dirname $0); O=${OUT:-/tmp/s48}
DUR=16 OUT=$O bash $D/../2026-12-05-tuned-44-scripts/run44.sh $1 $2 &
sleep 11; P=$(pgrep -f "holdfast serve --listen 127.0.0.1:9321" | head -1)
perf record -p $P --call-graph dwarf,16384 -F 499 -o $O/$2.data -- sleep 6 > /dev/null 2>&1
wait; perf script -i $O/$2.data -F comm,tid,ip,sym > $O/$2.txt 2>/dev/null
