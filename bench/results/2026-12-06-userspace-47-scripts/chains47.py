import sys, collections
f, comm = sys.argv[1], sys.argv[2]; depth=int(sys.argv[3]) if len(sys.argv)>3 else 6
c=collections.Counter(); n=0
cur=None; st=[]
def flush():
    global n
    if cur and cur.startswith(comm) and st:
        n+=1
        names=[s for a,s in st]
        c[' < '.join(x[:40] for x in names[:depth])]+=1
for l in open(f):
    if not l.strip():
        flush(); cur=None; st=[]; continue
    if not l[0].isspace(): cur=l.split()[0]; st=[]; continue
    p=l.strip().split(None,1); st.append((p[0], p[1] if len(p)>1 else '?'))
flush()
print(n)
for k,v in c.most_common(int(sys.argv[4]) if len(sys.argv)>4 else 30): print(v,k)
