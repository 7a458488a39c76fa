#!/usr/bin/env python3
"""diff43.py DATA SPIKE_S [BASE_S...]: from a system-wide `perf record` (istat43.sh REC=1),
samples per (thread name, symbol) in second SPIKE_S after the recording started against the
mean of the BASE_S seconds: which functions grew when a worker's CPU stepped up."""
import collections, subprocess, sys
data, spike, base = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3:]]
out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,time,ip,sym", "-G"], capture_output=True, text=True).stdout
cnt = collections.defaultdict(collections.Counter)
t0 = None
comm_tot = collections.defaultdict(collections.Counter)
for line in out.splitlines():
    parts = line.split()
    if len(parts) < 2: continue
    # comm may contain spaces in theory; ours do not
    try:
        i = next(k for k, p in enumerate(parts) if p.endswith(":") and p[:-1].replace(".", "").isdigit())
    except StopIteration:
        continue
    comm, t, sym = " ".join(parts[:i]), float(parts[i][:-1]), " ".join(parts[i + 1:]) or "?"
    if t0 is None: t0 = t
    s = int(t - t0)
    cnt[s][(comm, sym)] += 1
    comm_tot[s][comm] += 1
def mean(key, src):
    return sum(src[b][key] for b in base) / len(base)
print("thread totals (samples): spike vs base mean")
for c in sorted(set(k for b in base + [spike] for k in comm_tot[b])):
    a, m = comm_tot[spike][c], mean(c, comm_tot)
    if a + m >= 20: print(f"  {c:16s} {a:5d} {m:7.1f} {a - m:+7.1f}")
print("largest growth (thread, symbol): spike, base mean, growth")
keys = set(k for b in base + [spike] for k in cnt[b])
rows = sorted(((cnt[spike][k] - mean(k, cnt), k) for k in keys), reverse=True)
for g, k in rows[:25]:
    print(f"  {g:+7.1f}  {cnt[spike][k]:5d} {mean(k, cnt):7.1f}  {k[0]:14s} {k[1]}")
