# rm34.sh ROUNDS CONNS: echo, read mode poll (default) vs recv vs uWebSockets, interleaved (fixed loadgen), server on CPU 0 (echo1.sh); the CPU 1 series used echo1b.sh (echo1.sh with the two CPUs swapped)
for r in $(seq $1); do
  bash echo1.sh /tmp/b34e holdfast $2 rm34-poll-$2-r$r >/dev/null
  bash echo1.sh /tmp/b34e holdfast $2 rm34-recv-$2-r$r --read-mode recv >/dev/null
  bash echo1.sh /tmp/b34e uws $2 rm34-uws-$2-r$r >/dev/null
done
