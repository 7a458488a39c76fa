import sys, collections
# under.py FILE COMM_PREFIX SYM: for samples whose chain holds SYM, the leaf and the frame just below SYM
f, pref, sym = sys.argv[1], sys.argv[2], sys.argv[3]
leaf = collections.Counter(); child = collections.Counter(); caller = collections.Counter(); tot = 0; n = 0
cur = None; frames = []
def flush():
    global tot, n
    if cur and cur.startswith(pref) and frames:
        tot += 1
        if sym in frames:
            n += 1; i = frames.index(sym)
            leaf[frames[0]] += 1
            child[frames[i-1] if i > 0 else "(self)"] += 1
            caller[" < ".join(frames[i+1:i+4])] += 1
for line in open(f, errors="replace"):
    if not line.strip():
        flush(); cur = None; frames = []; continue
    if not line.startswith("\t") and not line.startswith(" "):
        cur = line.split()[0]; frames = []; continue
    p = line.split(None, 1); frames.append(p[1].strip() if len(p) > 1 else "?")
flush()
print(f"{sym}: {n} of {tot} samples ({100*n/tot:.1f}%)")
for name, c in (("leaf", leaf), ("child", child), ("callers", caller)):
    print(" ", name); [print(f"    {100*v/tot:5.1f}% {k}") for k, v in c.most_common(8)]
