# ceil36.sh ROUNDS "RATES" VIA [server args]: the new loadgen, defaults, client or admin publishing
R=$1 RATES=$2 VIA=$3; shift 3
for r in $(seq $R); do for rate in $RATES; do
  bash /tmp/cmp/one.sh /tmp/b36n holdfast $rate $VIA lg ceil36-$VIA-$rate-$r${TAGX:-} "$@"
  python3 -c "
import json;d=json.load(open('/tmp/cmp/ceil36-$VIA-$rate-$r${TAGX:-}.json'))
print('$VIA $rate r$r', 'published %d'%d['published_during_measurement'], 'errors', d['publish_errors'], 'dps %.2fM'%(d['deliveries_per_s']/1e6), 'p50 %d p99 %d'%(d['publish_to_delivery_us']['p50']/1000, d['publish_to_delivery_us']['p99']/1000), 'srv %.1f lg %.1f'%(d['server_cpu_seconds'], d['loadgen_cpu_seconds']), 'behind', d['lost_at_end'], 'perread %.1f'%d['deliveries_per_read'])"
done; done
