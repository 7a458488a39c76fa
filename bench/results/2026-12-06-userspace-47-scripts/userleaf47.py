import sys, collections
def parse(fn, comm):
    c = collections.Counter(); incl = collections.Counter(); n = 0
    cur = None; st = []
    def flush():
        nonlocal n
        if cur and cur.startswith(comm) and st:
            n += 1
            leaf = st[0]
            if not leaf[0].startswith('ffffffff'):
                c[leaf[1]] += 1
            seen=set()
            for a,s in st:
                if not a.startswith('ffffffff') and s not in seen:
                    seen.add(s); incl[s]+=1
    for l in open(fn):
        if not l.strip():
            flush(); cur=None; st=[]; continue
        if not l.startswith('\t') and not l.startswith(' '):
            cur = l.split()[0]; st=[]; continue
        p = l.strip().split(None,1)
        st.append((p[0], p[1] if len(p)>1 else '?'))
    flush()
    return c, incl, n
a, ai, na = parse(sys.argv[1], 'holdfast-w'); b, bi, nb = parse(sys.argv[2], 'holdfast-w')
print('samples', na, nb)
keys = sorted(set(a)|set(b), key=lambda k: -(a[k]+b[k]))[:30]
for k in keys: print(f"{a[k]:6d} {b[k]:6d} {a[k]-b[k]:+5d}  {k[:110]}")
print('--- inclusive')
keys = sorted(set(ai)|set(bi), key=lambda k: -(ai[k]))[:40]
for k in keys: print(f"{ai[k]:6d} {bi[k]:6d} {ai[k]-bi[k]:+5d}  {k[:110]}")
