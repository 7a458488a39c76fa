import sys, collections
from perfchains import samples
# leaf.py FILE COMM_PREFIX [N] [pairs]: leaf symbol shares of the samples of threads whose comm starts with COMM_PREFIX
f, pref = sys.argv[1], sys.argv[2]; n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
leaf = collections.Counter(); pair = collections.Counter(); tot = 0
for _, frames in samples(f, pref):
    tot += 1; leaf[frames[0]] += 1
    pair[frames[0] + " <- " + (frames[1] if len(frames) > 1 else "")] += 1
print(f"{pref}: {tot} samples")
for s, c in leaf.most_common(n): print(f"{100*c/tot:6.2f}% {s}")
if len(sys.argv) > 4:
    print("-- pairs")
    for s, c in pair.most_common(n): print(f"{100*c/tot:6.2f}% {s}")
