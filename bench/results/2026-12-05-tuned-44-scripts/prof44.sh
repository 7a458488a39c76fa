# prof44.sh CONFIG TAG: one run44.sh fan-out run (18k x 60/s admin, DUR 16 s) with a system-wide
# call-graph profile (cpu-clock, 1999 Hz) over 8 s of its steady state, written as perf script
# text to $OUT/TAG.txt for cat44.py.
D=$(dirname $0); O=${OUT:-/tmp/s44}; mkdir -p $O
DUR=16 bash $D/run44.sh $1 $2 &
sleep 12; perf record -a -g -F 1999 -o $O/$2.data -- sleep 8 > /dev/null 2>&1
wait; perf script -i $O/$2.data -F comm,tid,ip,sym > $O/$2.txt 2>/dev/null
