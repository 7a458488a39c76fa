"""callers48.py TXT PATTERN [DEPTH]: the callers (DEPTH frames) of the holdfast-w samples whose leaf
function contains PATTERN."""
import sys, collections
fn, pat = sys.argv[1], sys.argv[2]; depth=int(sys.argv[3]) if len(sys.argv)>3 else 4
c=collections.Counter(); cur=None; st=[]
def flush():
    if cur and cur.startswith('holdfast-w') and st and pat in st[0][1]:
        c[' < '.join(s[:60] for a,s in st[1:1+depth])]+=1
for l in open(fn):
    if not l.strip(): flush(); cur=None; st=[]; continue
    if not l.startswith('\t') and not l.startswith(' '): cur=l.split()[0]; st=[]; continue
    p=l.strip().split(None,1); st.append((p[0], p[1] if len(p)>1 else '?'))
flush()
for k,v in c.most_common(8): print(v, k)
