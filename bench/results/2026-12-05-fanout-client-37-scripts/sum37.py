# sum37.py FILE.json...: one line per run (fanout-client or loadgen JSON; the loadgen's
# latency from its .out beside the JSON).
import json, re, sys
for f in sys.argv[1:]:
    v = json.load(open(f))
    tag = f.rsplit('/', 1)[-1][:-5]
    if 'publishes_refused' in v:  # fanout-client
        lat = v['latency_ms']
        print(f"{tag:24} fc pub {v['published']:5} refused {v['publishes_refused']:5} unanswered {v['publishes_unanswered']:3} "
              f"measured {v['published_measured']:5} {v['deliveries_per_s']/1e6:5.2f}M/s "
              f"p50 {lat['p50']:7.0f} p99 {lat['p99']:7.0f} ms srvCPU {v['server_cpu_seconds'] or 0:5.1f} "
              f"cliCPU {v['client_cpu_seconds'] or 0:5.1f} perCPU {(v['deliveries_per_server_cpu_s'] or 0)/1e6:5.2f}M "
              f"unread-med {v['client_unread'].get('median_ms') or 0:6.0f} ms behind {v['behind_at_end']} lost {v['lost']} errors {v['errors']}")
    else:  # loadgen
        out = open(f[:-5] + '.out').read()
        m = re.search(r'publish→delivery: p50 ([\d.]+) p90 [\d.]+ p99 ([\d.]+)', out)
        p50, p99 = (float(m.group(1)) / 1e3, float(m.group(2)) / 1e3) if m else (0, 0)
        print(f"{tag:24} lg pub {v['published_total']:5} errors {v['publish_errors']:5} "
              f"measured {v['published_during_measurement']:5} {v['deliveries_per_s']/1e6:5.2f}M/s "
              f"p50 {p50:7.0f} p99 {p99:7.0f} ms srvCPU {v['server_cpu_seconds']:5.1f} "
              f"cliCPU {v['loadgen_cpu_seconds']:5.1f} perCPU {v['deliveries_per_server_cpu_s']/1e6:5.2f}M "
              f"lost {v['lost_in_stream']}+{v['lost_at_end']}")
