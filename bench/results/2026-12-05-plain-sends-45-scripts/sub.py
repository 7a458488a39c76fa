import sys, collections
from perfchains import samples
# sub.py FILE COMM_PREFIX SYM [DEPTH]: samples whose chain holds SYM, by the path from SYM down to the leaf (DEPTH frames below SYM)
f, pref, sym = sys.argv[1], sys.argv[2], sys.argv[3]; d = int(sys.argv[4]) if len(sys.argv) > 4 else 2
c = collections.Counter(); n = 0
for _, frames in samples(f, pref):
    if sym in frames:
        n += 1; i = frames.index(sym)
        c[" > ".join(reversed(frames[max(0, i - d):i]))] += 1
print(f"{sym}: {n} samples")
for k, v in c.most_common(20): print(f"  {v:5d} {k}")
