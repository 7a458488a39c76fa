"""userleaf48.py TXT [COMM]: the samples of threads named COMM* (holdfast-w) by leaf function
(user-space leaves only), then by inclusive user-space frame, from `perf script -F comm,tid,ip,sym`."""
import sys, collections
fn=sys.argv[1]; comm=sys.argv[2] if len(sys.argv)>2 else 'holdfast-w'
c=collections.Counter(); incl=collections.Counter(); n=0; user=0; kern=0
cur=None; st=[]
def flush():
    global n,user,kern
    if cur and cur.startswith(comm) and st:
        n+=1
        a,s=st[0]
        if a.startswith('ffffffff'): kern+=1
        else: user+=1; c[s]+=1
        seen=set()
        for a,s in st:
            if not a.startswith('ffffffff') and s not in seen:
                seen.add(s); incl[s]+=1
for l in open(fn):
    if not l.strip(): flush(); cur=None; st=[]; continue
    if not l.startswith('\t') and not l.startswith(' '): cur=l.split()[0]; st=[]; continue
    p=l.strip().split(None,1); st.append((p[0], p[1] if len(p)>1 else '?'))
flush()
print('samples',n,'user leaf',user,'kernel leaf',kern)
for k,v in c.most_common(40): print(f"{v:6d} {100*v/n:5.2f}%  {k[:120]}")
print('--- inclusive (user frames)')
for k,v in incl.most_common(60): print(f"{v:6d} {100*v/n:5.2f}%  {k[:120]}")
