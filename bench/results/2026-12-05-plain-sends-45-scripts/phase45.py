import sys, collections
from perfchains import samples
from catup_cats import category
# phase45.py PREFIX FILES...: split each file's server-thread samples (perf script with time) at
# the longest pause between two of them (the loadgen's 0.5 s hold between ramp and close), and
# print, for the ramp (the upgrades) and for the close, the samples per category summed over files.
pref, files = sys.argv[1], sys.argv[2:]
tot = {"ramp": collections.Counter(), "close": collections.Counter()}
for f in files:
    s = sorted(samples(f, pref), key=lambda x: x[0])
    g, i = max((s[j + 1][0] - s[j][0], j) for j in range(len(s) - 1))
    for j, (_, frames) in enumerate(s):
        tot["ramp" if j <= i else "close"][category(frames)] += 1
for ph in ("ramp", "close"):
    n = sum(tot[ph].values()); print(f"{pref} {ph}: {n} samples")
    for k, v in tot[ph].most_common(14): print(f"  {v:5d} {100*v/n:5.1f}% {k}")
