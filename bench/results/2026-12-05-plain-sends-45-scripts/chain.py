import sys, collections
# chain.py FILE COMM_PREFIX SYM...: share of the threads' samples whose call chain holds each SYM
f, pref, syms = sys.argv[1], sys.argv[2], sys.argv[3:]
hit = collections.Counter(); tot = 0; cur = None; frames = []
def flush():
    global tot
    if cur and cur.startswith(pref) and frames:
        tot += 1
        names = set(frames)
        for s in syms:
            if s in names: hit[s] += 1
for line in open(f, errors="replace"):
    if not line.strip():
        flush(); cur = None; frames = []; continue
    if not line.startswith("\t") and not line.startswith(" "):
        cur = line.split()[0]; frames = []; continue
    p = line.split(None, 1); frames.append(p[1].strip() if len(p) > 1 else "?")
flush()
print(f"{f} {pref}: {tot} samples")
for s in syms: print(f"  {100*hit[s]/tot:5.1f}% {s}")
