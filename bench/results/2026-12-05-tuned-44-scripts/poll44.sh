# poll44.sh ROUNDS CONFIGS...: run44.sh rounds with the guest's halt polling off (this guest's
# default, haltpoll.guest_halt_poll_ns=0 on its command line) and at 200 us, interleaved; the
# parameter is put back to what it was after every run.
D=$(dirname $0); N=$1; shift; F=/sys/module/haltpoll/parameters/guest_halt_poll_ns; W=$(cat $F)
for r in $(seq $N); do for c in "$@"; do
  bash $D/run44.sh $c hp-$c-off-$r
  echo 200000 > $F; bash $D/run44.sh $c hp-$c-200us-$r; echo $W > $F
done; done
