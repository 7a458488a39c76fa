import sys, collections
# sub.py FILE COMM_PREFIX SYM [DEPTH]: samples whose chain holds SYM, by the path from SYM down to the leaf (DEPTH frames below SYM)
f, pref, sym = sys.argv[1], sys.argv[2], sys.argv[3]; d = int(sys.argv[4]) if len(sys.argv) > 4 else 2
c = collections.Counter(); n = 0; cur = None; frames = []
def flush():
    global n
    if cur and cur.startswith(pref) and sym in frames:
        n += 1; i = frames.index(sym)
        c[" > ".join(reversed(frames[max(0, i - d):i]))] += 1
for line in open(f, errors="replace"):
    if not line.strip():
        flush(); cur = None; frames = []; continue
    if not line.startswith("\t") and not line.startswith(" "):
        cur = line.split()[0]; frames = []; continue
    p = line.split(None, 1); frames.append(p[1].strip() if len(p) > 1 else "?")
flush()
print(f"{sym}: {n} samples")
for k, v in c.most_common(20): print(f"  {v:5d} {k}")
