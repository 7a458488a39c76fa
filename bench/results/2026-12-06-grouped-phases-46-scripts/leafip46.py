"""leafip46.py FILE COMM_PREFIX SYM...: where in each kernel function SYM the samples whose leaf it is
fall (instruction addresses, most sampled first), to read beside kdis46.sh's disassembly. Needs perf
script text with ip columns (prof44.sh writes `-F comm,tid,ip,sym`)."""
import collections, sys
path, pref, want = sys.argv[1], sys.argv[2], set(sys.argv[3:])
c = {w: collections.Counter() for w in want}
cur, first = None, True
for line in open(path, errors="replace"):
    if not line.strip():
        cur = None; continue
    if not line.startswith(("\t", " ")):
        cur, first = line.split()[0], True; continue
    if first and cur and cur.startswith(pref):
        p = line.split()
        if len(p) > 1 and p[1] in want:
            c[p[1]][p[0]] += 1
    first = False
for w in sorted(want):
    print(w, sum(c[w].values()), c[w].most_common(4))
