# sum39.py: medians (min–max) of tls39.sh's rounds, per row and client.
import json, glob, statistics, re
rows = {}
for f in glob.glob('/tmp/tls39/*-*-*.json'):
    c, k, r = re.match(r'.*/(lg|uc)-(\w+)-(\d+)\.json', f).groups()
    try:
        d = json.load(open(f))
    except Exception:
        continue
    for key in ('server_cpu_us_per_upgrade', 'server_cpu_us_per_close'):
        if d.get(key) is not None:
            rows.setdefault((k, c, key), []).append(d[key])
for k in ('plain', 'off', 'always'):
    for c in ('lg', 'uc'):
        cells = []
        for key in ('server_cpu_us_per_upgrade', 'server_cpu_us_per_close'):
            v = sorted(rows.get((k, c, key), []))
            cells.append(f"{statistics.median(v):.1f} ({v[0]:.1f}–{v[-1]:.1f}) n={len(v)}" if v else "—")
        print(f"| {k} | {c} | {cells[0]} | {cells[1]} |")
