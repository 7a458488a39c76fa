# idle43.sh ROUNDS RATE...: for each round and rate, interleaved: the previous binary (b00a63a,
# /tmp/old43) and this one at --fanout-send-interval 280ms, and this one eager; 18k
# subscribers, admin publishing, untuned, the server's /metrics unread. One line each.
D=$(dirname $0); R=$1; shift
for r in $(seq $R); do for rate in "$@"; do
  RATE=$rate NOSAMPLE=1 BIN=/tmp/old43 bash $D/istat43.sh 280ms old-$rate-$r 2>&1 | tail -1
  RATE=$rate NOSAMPLE=1 bash $D/istat43.sh 280ms new-$rate-$r 2>&1 | tail -1
  RATE=$rate NOSAMPLE=1 bash $D/istat43.sh eager eager-$rate-$r 2>&1 | tail -1
done; done
