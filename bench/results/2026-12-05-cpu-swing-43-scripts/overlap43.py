#!/usr/bin/env python3
"""overlap43.py SWITCHES: from `perf record -e sched:sched_switch -a` (istat43.sh SW=1), per
second: each worker's and loadgen thread's on-CPU ms, and the ms in which both workers ran at
once (one on each CPU), and in which each worker ran beside the other CPU's loadgen thread."""
import collections, re, subprocess, sys
out = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "cpu,time,trace"], capture_output=True, text=True).stdout
ev = []
for line in out.splitlines():
    m = re.match(r"\s*\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=\d+ .*next_comm=(.*?) next_pid=", line)
    if m:
        ev.append((float(m.group(2)), int(m.group(1)), m.group(3), m.group(4)))
ev.sort()
t0 = ev[0][0]
running = {0: None, 1: None}
on = collections.defaultdict(lambda: collections.defaultdict(float))
last = t0
def add(a, b):
    # credit [a, b) to the per-second buckets
    cur = a
    while cur < b:
        s = int(cur - t0)
        end = min(b, t0 + s + 1)
        for cpu, comm in running.items():
            if comm: on[s][comm] += end - cur
        r = set(c for c in running.values() if c)
        if {"holdfast-w0", "holdfast-w1"} <= r: on[s]["both workers"] += end - cur
        if {"holdfast-w0", "loadgen-1"} <= r: on[s]["w0+lg-1"] += end - cur
        if {"holdfast-w1", "loadgen-0"} <= r: on[s]["w1+lg-0"] += end - cur
        if {"loadgen-0", "loadgen-1"} <= r: on[s]["both loadgen"] += end - cur
        cur = end
for t, cpu, prev, nxt in ev:
    add(last, t)
    last = t
    running[cpu] = None if nxt.startswith("swapper") else nxt
keys = ["holdfast-w0", "holdfast-w1", "loadgen-0", "loadgen-1", "both workers", "w0+lg-1", "w1+lg-0", "both loadgen"]
print(" s  " + " ".join(f"{k[:12]:>12s}" for k in keys))
for s in sorted(on):
    print(f"{s:2d}  " + " ".join(f"{on[s][k] * 1000:12.0f}" for k in keys))
