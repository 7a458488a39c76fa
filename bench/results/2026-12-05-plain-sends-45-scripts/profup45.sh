# profup45.sh SERVER TAG [N]: one pinned upgrade/close ramp as the report's echo section runs it
# (start45.sh: server on CPU 1, one worker / thread; the loadgen on CPU 0: N connections at
# 40,000/s, 0.5 s hold, every connection closed), with a call-graph profile of CPU 1 (cpu-clock,
# 9999 Hz) over the whole ramp, written as perf script text to $OUT/TAG.txt; prints the
# loadgen's figures.
N=${3:-10000}; . $(dirname $0)/start45.sh; start45 $1
perf record -C 1 -g -F 9999 -o $O/$2.data > /dev/null 2>&1 & R=$!
ramp45 $2
perf script -i $O/$2.data -F comm,tid,time,ip,sym > $O/$2.txt 2>/dev/null
python3 -c "
import json;d=json.load(open('$O/$2.json'));print('$2', 'up', round(d['server_cpu_us_per_upgrade'],1), 'close', round(d['server_cpu_us_per_close'],1), 'est', d.get('established'))"
