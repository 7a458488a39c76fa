ulimit -n 20000; B=/tmp/hf49-auto
$B/holdfast serve --listen 127.0.0.1:9321 --admin 127.0.0.1:9322 --max-connections 40000 "$@" >/dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9321) 2>/dev/null && break; sleep 0.1; done
$B/holdfast-loadgen fanout --url ws://127.0.0.1:9321/ws --connections 18000 --topics 1 --publish-rate 60 --publish-via admin --admin 127.0.0.1:9322 --warmup 1 --duration 10 --settle 5 --server-pid $P --json /tmp/w49.json > /tmp/w49.log 2>&1 & L=$!
sleep 8
for t in /proc/$P/task/*; do echo "$(cat $t/comm) $(cat $t/schedstat)"; done > /tmp/a.txt; sleep 2
for t in /proc/$P/task/*; do echo "$(cat $t/comm) $(cat $t/schedstat)"; done > /tmp/b.txt
paste /tmp/a.txt /tmp/b.txt | awk '{r=($6-$2)/1e6; w=($7-$3)/1e6; if (r>10) printf "%s ran %.0f ms waited %.0f ms slices %d\n",$1,r,w,$8-$4}'
wait $L; kill $P; wait $P 2>/dev/null
