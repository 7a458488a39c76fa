import re,glob,statistics,sys
rows={}
for f in sorted(glob.glob('/tmp/cmp/*.out')):
    n=f.split('/')[-1][:-4]
    m=re.match(r'(ab31|ab31a|ng31)-(.+)-r(\d)$',n)
    if not m: continue
    t=open(f).read()
    p=re.search(r'p50 ([0-9.]+) p90 [0-9.]+ p99 ([0-9.]+)',t)
    c=re.search(r'server CPU ([0-9.]+) s = ([0-9]+)',t)
    r=re.search(r'([0-9.]+) deliveries per read',t)
    if not (p and c): continue
    rows.setdefault((m.group(1),m.group(2)),[]).append((float(p.group(1))/1000,float(p.group(2))/1000,float(c.group(1)),int(c.group(2))/1e6,float(r.group(1))))
for (s,k),v in sorted(rows.items()):
    md=lambda i: statistics.median(x[i] for x in v)
    lo=min(x[3] for x in v); hi=max(x[3] for x in v)
    print(f"{s} {k}: n={len(v)} p50 {md(0):.0f} ({min(x[0] for x in v):.0f}-{max(x[0] for x in v):.0f}) p99 {md(1):.0f} ({min(x[1] for x in v):.0f}-{max(x[1] for x in v):.0f}) cpu {md(2):.2f} per-cpu {md(3):.2f}M ({lo:.2f}-{hi:.2f}) fps {md(4):.1f}")
