# fl.sh ROUNDS CONNS: interleaved echo rounds: holdfast (poll), holdfast (recv), floor (poll), floor (multi), uWebSockets; server CPU 0, loadgen CPU 1
R=$1 C=$2
for r in $(seq $R); do
  bash echo1.sh ${BIN:-target/release} holdfast $C hp-$C-$r > /dev/null
  bash echo1.sh ${BIN:-target/release} holdfast $C hr-$C-$r --read-mode recv > /dev/null
  bash echo1.sh ${BIN:-target/release} floor $C fp-$C-$r --read poll > /dev/null
  bash echo1.sh ${BIN:-target/release} floor $C fm-$C-$r --read multi > /dev/null
  bash echo1.sh ${BIN:-target/release} uws $C u-$C-$r > /dev/null
done
python3 - $R $C <<'P'
import json,sys,statistics as st
R,C=int(sys.argv[1]),sys.argv[2]
for k,name in [('hp','holdfast poll'),('hr','holdfast recv'),('fp','floor poll'),('fm','floor multi'),('u','uWebSockets')]:
    v=[json.load(open(f'/tmp/cmp/{k}-{C}-{r}.json'))['messages_per_server_cpu_s'] for r in range(1,R+1)]
    print(f"{name:14s} {C} conns: median {st.median(v)/1e3:6.0f}k  ({min(v)/1e3:.0f}-{max(v)/1e3:.0f}k)  rounds " + " ".join(f"{x/1e3:.0f}" for x in v))
P
