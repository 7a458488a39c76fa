import sys, collections
from perfchains import samples
# chain.py FILE COMM_PREFIX SYM...: share of the threads' samples whose call chain holds each SYM
f, pref, syms = sys.argv[1], sys.argv[2], sys.argv[3:]
hit = collections.Counter(); tot = 0
for _, frames in samples(f, pref):
    tot += 1; names = set(frames)
    for s in syms:
        if s in names: hit[s] += 1
print(f"{f} {pref}: {tot} samples")
for s in syms: print(f"  {100*hit[s]/tot:5.1f}% {s}")
