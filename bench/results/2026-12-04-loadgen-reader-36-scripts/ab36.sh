# ab36.sh ROUNDS RATE VIA: loadgen before (/tmp/b36) and after (/tmp/b36n), same server code, interleaved
R=$1 RATE=$2 VIA=$3
for r in $(seq $R); do for v in b36 b36n; do
  bash /tmp/cmp/one.sh /tmp/$v holdfast $RATE $VIA lg ab36-$v-$VIA-$RATE-$r
  python3 -c "
import json;d=json.load(open('/tmp/cmp/ab36-$v-$VIA-$RATE-$r.json'))
print('$v r$r', 'dps %.2fM'%(d['deliveries_per_s']/1e6), 'p50 %d p99 %d'%(d['publish_to_delivery_us']['p50']/1000, d['publish_to_delivery_us']['p99']/1000), 'srv %.1f lg %.1f'%(d['server_cpu_seconds'], d['loadgen_cpu_seconds']), 'behind', d['lost_at_end'], 'perCPU %.2fM'%(d['deliveries_per_server_cpu_s']/1e6))"
done; done
