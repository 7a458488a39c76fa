# prof.sh ROUNDS CONNS: interleaved profiled echo rounds (holdfast, floor poll, floor multi, uWebSockets):
# per message, the kernel's socket work (tcp_sendmsg + tcp_recvmsg, inclusive) and the rest
R=$1 C=$2
for r in $(seq $R); do
  PERF=1 bash echo1.sh ${BIN:-target/release} holdfast $C P-hp-$C-$r > /dev/null
  PERF=1 bash echo1.sh ${BIN:-target/release} floor $C P-fp-$C-$r --read poll > /dev/null
  PERF=1 bash echo1.sh ${BIN:-target/release} floor $C P-fm-$C-$r --read multi > /dev/null
  PERF=1 bash echo1.sh ${BIN:-target/release} uws $C P-u-$C-$r > /dev/null
done
for k in hp fp fm u; do for r in $(seq $R); do
  perf report -i P-$k-$C-$r.perf.data --children --stdio -g none --sort symbol 2>/dev/null \
   | awk -v t="$k-$C-$r" '$NF=="-" || 1 {for(i=1;i<=NF;i++) if($i=="tcp_sendmsg"||$i=="tcp_recvmsg") print t, $i, $1}' > P-$k-$C-$r.pct
done; done
python3 - $R $C <<'P'
import json,sys,statistics as st
R,C=int(sys.argv[1]),sys.argv[2]
rows={}
for k,name in [('hp','holdfast'),('fp','floor poll'),('fm','floor multi'),('u','uWebSockets')]:
    out=[]
    for r in range(1,R+1):
        rate=json.load(open(f'/tmp/cmp/P-{k}-{C}-{r}.json'))['messages_per_server_cpu_s']
        pct={}
        for line in open(f'/tmp/cmp/P-{k}-{C}-{r}.pct'):
            t,f,p=line.split(); pct.setdefault(f,float(p.rstrip('%')))
        per=1e6/rate; sock=(pct.get('tcp_sendmsg',0)+pct.get('tcp_recvmsg',0))/100
        out.append((rate,per,sock*per,(1-sock)*per))
    rows[k]=out
    print(f"{name:12s} {C}: msgs/CPU-s " + " ".join(f"{o[0]/1e3:.0f}k" for o in out) +
          " | µs/msg " + " ".join(f"{o[1]:.2f}" for o in out) +
          " | socket work µs " + " ".join(f"{o[2]:.2f}" for o in out) +
          " | rest µs " + " ".join(f"{o[3]:.2f}" for o in out))
u=st.median(o[1] for o in rows['u'])
best=min(st.median(o[2] for o in rows[k]) for k in rows)
print(f"uWS median µs/msg {u:.2f}; least median socket work {best:.2f} µs -> ceiling {u/best:.2f}x")
P
