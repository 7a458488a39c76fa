import sys, collections
# leaf.py FILE COMM_PREFIX [N] : leaf symbol shares of the samples of threads whose comm starts with COMM_PREFIX
f, pref = sys.argv[1], sys.argv[2]; n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
leaf = collections.Counter(); pair = collections.Counter(); tot = 0
cur = None; frames = []
def flush():
    global tot
    if cur and cur.startswith(pref) and frames:
        tot += 1; leaf[frames[0]] += 1
        pair[frames[0] + " <- " + (frames[1] if len(frames) > 1 else "")] += 1
for line in open(f, errors="replace"):
    if not line.strip():
        flush(); cur = None; frames = []; continue
    if not line.startswith("\t") and not line.startswith(" "):
        cur = line.split()[0]; frames = []; continue
    parts = line.split(None, 1)
    frames.append(parts[1].strip() if len(parts) > 1 else "?")
flush()
print(f"{pref}: {tot} samples")
for s, c in leaf.most_common(n): print(f"{100*c/tot:6.2f}% {s}")
if len(sys.argv) > 4:
    print("-- pairs")
    for s, c in pair.most_common(n): print(f"{100*c/tot:6.2f}% {s}")
