#!/usr/bin/env python3
"""sample43.py SERVER_PID LOADGEN_PID ADMIN SECONDS OUT: every second, each thread's CPU
(schedstat runtime and run-queue wait, stat utime/stime, the CPU it last ran on), each CPU's
softirq/system/user/idle ticks from /proc/stat, and the server's counters (per worker where labelled) from
/metrics (holdfast only; empty for a peer). One JSON line per second."""
import json, os, re, sys, time, urllib.request

spid, lpid, admin, secs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
WANT = ("pubsub_deliveries_total", "fanout_spaced_sends_total", "sent_bytes_total",
        "worker_ticks_total", "fanout_deferred_deliveries_total")

def threads(pid):
    d = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return d
    for t in tids:
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read()
            run, wait, slices = map(int, open(f"/proc/{pid}/task/{t}/schedstat").read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        d[f"{comm}/{t}"] = dict(run=run, wait=wait, slices=slices, ut=int(f[11]), st=int(f[12]),
                                cpu=int(f[36]), vcs=0)
    return d

def cpus():
    d = {}
    for line in open("/proc/stat"):
        if re.match(r"cpu\d", line):
            f = line.split()
            d[f[0]] = dict(user=int(f[1]), sys=int(f[3]), idle=int(f[4]), irq=int(f[6]), soft=int(f[7]))
        if line.startswith("softirq"):
            f = line.split()
            d["net_rx"], d["net_tx"] = int(f[4]), int(f[3])
    return d

def metrics():
    if admin == "-":
        return {}
    try:
        body = urllib.request.urlopen(f"http://{admin}/metrics", timeout=0.5).read().decode()
    except Exception:
        return {}
    d = {}
    for line in body.splitlines():
        for w in WANT:
            if line.startswith("holdfast_" + w + "{") or line.startswith("holdfast_" + w + " "):
                m = re.search(r'worker="(\d+)"', line)
                d[f"{w}/{m.group(1) if m else 'all'}"] = float(line.rsplit(" ", 1)[1])
    return d

with open(out, "w") as o:
    t0 = time.monotonic()
    nxt = t0
    while time.monotonic() - t0 < secs:
        snap = dict(t=round(time.monotonic() - t0, 3), server=threads(spid), loadgen=threads(lpid),
                    cpus=cpus(), metrics=metrics())
        o.write(json.dumps(snap) + "\n"); o.flush()
        nxt += 1.0
        time.sleep(max(0, nxt - time.monotonic()))
        if not os.path.exists(f"/proc/{spid}"):
            break
