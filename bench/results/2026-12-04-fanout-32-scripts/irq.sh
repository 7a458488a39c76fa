# irq.sh TAG -- one.sh args... : one run with /proc/interrupts and softirqs deltas
TAG=$1; shift
snap() { awk '/RES:|CAL:|TLB:/{print $1, $2, $3}' /proc/interrupts; awk '/NET_RX|NET_TX|TASKLET/{print $1, $2, $3}' /proc/softirqs; }
snap > /tmp/cmp/$TAG.irq0
bash /tmp/cmp/one.sh "$@"
snap > /tmp/cmp/$TAG.irq1
paste /tmp/cmp/$TAG.irq0 /tmp/cmp/$TAG.irq1 | awk -v t=$TAG '{printf "%s %s cpu0 %d cpu1 %d\n", t, $1, $5-$2, $6-$3}'
