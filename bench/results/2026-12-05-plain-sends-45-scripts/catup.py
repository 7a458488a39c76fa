import sys, collections
from perfchains import samples
from catup_cats import category
# catup.py FILE COMM_PREFIX: each sample of the threads to the first category whose marker is in its chain (catup_cats.py)
f, pref = sys.argv[1], sys.argv[2]
cnt = collections.Counter(); tot = 0
for _, frames in samples(f, pref):
    tot += 1; cnt[category(frames)] += 1
print(f"{f} {pref}: {tot} samples")
for k, v in cnt.most_common(25): print(f"  {v:5d} {100*v/tot:5.1f}% {k}")
