#!/bin/bash
# hbns.sh N SECS PI: hb.sh inside two fresh network namespaces, one sharing the host's TCP
# established hash (tcp_child_ehash_entries=0) and one with its own of 2^21 buckets.
N=${1:-1000000}; SECS=${2:-60}; PI=${3:-50}
old=$(sysctl -n net.ipv4.tcp_child_ehash_entries)
for EH in ${EHS:-0 2097152}; do
  sysctl -qw net.ipv4.tcp_child_ehash_entries=$EH
  ns=hf56-$EH
  ip netns add $ns
  ip netns exec $ns ip link set lo up
  echo "# netns $ns: tcp_ehash_entries=$(ip netns exec $ns sysctl -n net.ipv4.tcp_ehash_entries)"
  ip netns exec $ns env PIS="1000 $PI" /tmp/s56/hb.sh $N $SECS 2>&1 | grep ping_interval | sed "s/^/EH=$EH N=$N /"
  ip netns del $ns
done
sysctl -qw net.ipv4.tcp_child_ehash_entries=$old
