# start45.sh, sourced by profup45.sh, countup45.sh and arms45.sh.
# start45 SERVER: start holdfast (one worker) or the uWebSockets peer pinned to CPU 1 on
#   127.0.0.1:9301 (admin 9302), as the report's echo section pins it; sets P to its pid and
#   waits until it accepts.
# ramp45 TAG: the loadgen on CPU 0 ramps N connections at 40,000/s, holds them 0.5 s and closes
#   every one (the report's upgrade/close round; figures in $O/TAG.json); then stops the
#   recorder the caller started as R (SIGINT) and the server.
# BIN holds holdfast's binaries, UWS the peer, OUT the outputs.
B=${BIN:-target/release}; O=${OUT:-/tmp/s45}; mkdir -p $O
UWS=${UWS:-$(ls -t /tmp/holdfast-bench-uws-*/uws-peer | head -1)}
ulimit -n 20000
start45() {
  if [ $1 = holdfast ]; then taskset -c 1 $B/holdfast serve --listen 127.0.0.1:9301 --admin 127.0.0.1:9302 --workers 1 >/dev/null 2>&1 & P=$!
  else taskset -c 1 $UWS 9301 9302 >/dev/null 2>&1 & P=$!; fi
  for t in $(seq 50); do (echo > /dev/tcp/127.0.0.1/9301) 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
}
ramp45() {
  sleep 0.3
  taskset -c 0 $B/holdfast-loadgen hold --url ws://127.0.0.1:9301/echo --connections $N --rate 40000 --duration 0.5 --workers 1 --server-pid $P --json $O/$1.json >/dev/null 2>&1
  kill -INT $R; wait $R
  kill $P; wait $P 2>/dev/null
}
