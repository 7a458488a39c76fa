# countup45.sh SERVER TAG [N]: one pinned upgrade/close ramp (as profup45.sh) with every
# sock_recvmsg and sock_sendmsg on CPU 1 recorded (sock:sock_recv_length, sock:sock_send_length),
# tallied per server thread by call and result: how many receives and sends per connection.
N=${3:-10000}; . $(dirname $0)/start45.sh; start45 $1
perf record -C 1 -e sock:sock_recv_length,sock:sock_send_length -o $O/$2.data > /dev/null 2>&1 & R=$!
ramp45 $2
python3 $(dirname $0)/tally45.py $O/$2.data $N $2
