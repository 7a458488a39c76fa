# sum38.py ROUNDS: medians (min-max) of up38.sh's rounds, per server and client
import json,sys,statistics as st
R=int(sys.argv[1])
rows={}
for k in ('holdfast','uws'):
    for c,name in (('lg','loadgen'),('uc','upgrade-client')):
        up,cl,bad=[],[],0
        for r in range(1,R+1):
            try: d=json.load(open(f'/tmp/cmp/up-{c}-{k}-{r}.json'))
            except Exception: bad+=1; continue
            if c=='uc' and (d['failed_to_open'] or d['failed_to_close'] or d['closed_without_close_frame']): bad+=1
            up.append(d['server_cpu_us_per_upgrade']); cl.append(d['server_cpu_us_per_close'])
        rows[(k,c)]=(st.median(up),st.median(cl))
        print(f"{k:9s} {name:15s} n={len(up)} bad={bad}  per upgrade {st.median(up):5.1f} ({min(up):.1f}-{max(up):.1f})  per close {st.median(cl):5.1f} ({min(cl):.1f}-{max(cl):.1f})")
for c,name in (('lg','loadgen'),('uc','upgrade-client')):
    h,u=rows[('holdfast',c)],rows[('uws',c)]
    print(f"{name:15s} holdfast / uWebSockets: per upgrade {h[0]/u[0]:.2f}x, per close {h[1]/u[1]:.2f}x")
