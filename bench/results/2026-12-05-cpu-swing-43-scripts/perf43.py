#!/usr/bin/env python3
"""perf43.py TAG [DIR]: per second, task-clock ms of each worker and loadgen thread (perf stat
--per-thread -I 1000), the server's total, and the server's deliveries, spaced sends and bytes
sent in that second (sample43.py's counters, nearest second)."""
import json, re, sys, collections
tag, d = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "/tmp/s43")
sec = collections.defaultdict(dict)
cs = collections.defaultdict(dict)
for line in open(f"{d}/{tag}.perf"):
    m = re.match(r"\s*([\d.]+)\s+(\S+)-(\d+)\s+([\d.,]+)\s+(msec|)\s*(task-clock|context-switches)", line)
    if m:
        t, k, v = round(float(m.group(1))), m.group(2), float(m.group(4).replace(",", ""))
        tgt = sec if m.group(6) == "task-clock" else cs
        tgt[t][k] = tgt[t].get(k, 0) + v
rows = [json.loads(l) for l in open(f"{d}/{tag}.samples")]
ctr = {}
for a, b in zip(rows, rows[1:]):
    m0, m1 = a["metrics"], b["metrics"]
    g = lambda k: m1.get(k + "/all", 0) - m0.get(k + "/all", 0)
    ctr[round(b["t"])] = (g("pubsub_deliveries_total"), g("fanout_spaced_sends_total"), g("sent_bytes_total"))
print(" t   w0   w1  srv  lg-0 lg-1 | deliv/s  sends/s  MB/s  µs/deliv | switches w0 w1 lg-0 lg-1 | ksoftirqd ms 0 1")
for t in sorted(sec):
    s = sec[t]
    srv = sum(v for k, v in s.items() if (k.startswith("holdfast") or k.startswith("uws")) and k != "holdfast-loadge")
    dl, sp, by = ctr.get(t, (0, 0, 0))
    per = f"{srv * 1000 / dl:6.3f}" if dl else "   -"
    print(f"{t:2d} {s.get('holdfast-w0', 0):4.0f} {s.get('holdfast-w1', 0):4.0f} {srv:4.0f}  {s.get('loadgen-0', 0):4.0f} {s.get('loadgen-1', 0):4.0f} | {dl/1e3:6.0f}k {sp/1e3:6.1f}k {by/1e6:5.1f}  {per} | " + " ".join(f"{cs[t].get(k, 0):6.0f}" for k in ("holdfast-w0", "holdfast-w1", "loadgen-0", "loadgen-1")) + " | ksoftirqd ms " + " ".join(f"{sec[t].get(k, 0):4.1f}" for k in ("ksoftirqd/0", "ksoftirqd/1")))
