import sys, collections
# phase45.py PREFIX FILES...: split each file's server-thread samples at the longest pause between
# two of them (the loadgen's 0.5 s hold between ramp and close), and print, for the ramp (the
# upgrades) and for the close, the samples per category (catup.py's categories) summed over files.
sys.argv, pref, files = sys.argv[:1], sys.argv[1], sys.argv[2:]
exec(open(__file__.replace("phase45.py", "catup_cats.py")).read())
tot = {"ramp": collections.Counter(), "close": collections.Counter()}
for f in files:
    samples = []; cur = None; t = 0.0; frames = []
    def flush():
        if cur and cur.startswith(pref) and frames: samples.append((t, frames[:]))
    for line in open(f, errors="replace"):
        if not line.strip():
            flush(); cur = None; frames = []; continue
        if not line.startswith("\t") and not line.startswith(" "):
            p = line.split(); cur = p[0]; t = float(p[2].rstrip(":")); frames = []; continue
        p = line.split(None, 1); frames.append(p[1].strip() if len(p) > 1 else "?")
    flush()
    samples.sort(key=lambda s: s[0])
    gaps = [(samples[i + 1][0] - samples[i][0], i) for i in range(len(samples) - 1)]
    g, i = max(gaps)
    for j, (ts, fr) in enumerate(samples):
        tot["ramp" if j <= i else "close"][category(fr)] += 1
for ph in ("ramp", "close"):
    n = sum(tot[ph].values()); print(f"{pref} {ph}: {n} samples")
    for k, v in tot[ph].most_common(14): print(f"  {v:5d} {100*v/n:5.1f}% {k}")
