# tk.sh BUILD TAG CLIENT(up|lg) RES: one TLS holdfast worker on CPU 1, client on CPU 0, 10,000 wss connections, 16 in flight
cd /work/main; ulimit -n 20000; B=$1; T=$2; C=$3; R=$4; O=${S54:-/tmp/s54}; F=tests/fixtures/tls
HOLDFAST_LOG=warn taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9331 --admin 127.0.0.1:9332 --workers 1 --tls-cert $F/server.pem --tls-key $F/server.key > /dev/null 2>&1 & P=$!
for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9331) 2>/dev/null && break; sleep 0.1; done
if [ $C = up ]; then taskset -c 0 target/release/holdfast-bench upgrade-client --url wss://localhost:9331/echo --connections ${N:-10000} --concurrency ${CC:-16} --server-pid $P --tls-ca $F/ca.pem --tls-resumption $R > $O/$T.log 2>&1
else taskset -c 0 target/release/holdfast-loadgen hold --url wss://localhost:9331/echo --connections 10000 --rate 20000 --duration 0.5 --workers 1 --concurrency 16 --server-pid $P --tls-ca $F/ca.pem --tls-resumption $R > $O/$T.log 2>&1; fi
kill $P; wait $P 2>/dev/null
python3 -c "import json,sys;d=json.loads(open(\"$O/$T.log\").read().splitlines()[-1]);print(\"$T\",\"srv us/conn\",round(d[\"server_cpu_us_per_upgrade\"],1),\"client us/conn\",round(d[\"client_cpu_us_per_upgrade\"],1),d[\"tls_handshakes\"],\"p50 us\",d[\"connect_upgrade_latency_us\"][\"p50\"])" 2>/dev/null || tail -3 $O/$T.log
