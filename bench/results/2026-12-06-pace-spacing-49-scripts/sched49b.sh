ulimit -n 20000; B=/tmp/hf49-auto
$B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 "$@" >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections ${SUBS:-18000} --topics 1 --publish-rate ${RATE:-60} --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 10 --settle 5 --server-pid $P --json /tmp/w49.json > /tmp/w49.log 2>&1 & L=$!
sleep 7
python3 - $P <<'PY'
import sys,time,glob
P=sys.argv[1]
ts=[t for t in glob.glob(f'/proc/{P}/task/*') if open(t+'/comm').read().strip()=='holdfast-w0']
t=ts[0]
def rd(): return [int(x) for x in open(t+'/schedstat').read().split()]
prev=rd(); out=[]
for i in range(30):
    time.sleep(0.1); cur=rd(); r=(cur[0]-prev[0])/1e6; w=(cur[1]-prev[1])/1e6; out.append(f"{r:.0f}/{w:.0f}"); prev=cur
print(' '.join(out))
PY
wait $L; kill $P; wait $P 2>/dev/null
