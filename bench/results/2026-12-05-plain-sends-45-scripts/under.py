import sys, collections
from perfchains import samples
# under.py FILE COMM_PREFIX SYM: for samples whose chain holds SYM, the leaf and the frame just below SYM
f, pref, sym = sys.argv[1], sys.argv[2], sys.argv[3]
leaf = collections.Counter(); child = collections.Counter(); caller = collections.Counter(); tot = 0; n = 0
for _, frames in samples(f, pref):
    tot += 1
    if sym in frames:
        n += 1; i = frames.index(sym)
        leaf[frames[0]] += 1
        child[frames[i-1] if i > 0 else "(self)"] += 1
        caller[" < ".join(frames[i+1:i+4])] += 1
print(f"{sym}: {n} of {tot} samples ({100*n/tot:.1f}%)")
for name, c in (("leaf", leaf), ("child", child), ("callers", caller)):
    print(" ", name); [print(f"    {100*v/tot:5.1f}% {k}") for k, v in c.most_common(8)]
