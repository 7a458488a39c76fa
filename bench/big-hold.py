#!/usr/bin/env python3
"""Big `hold` run: holdfast + holdfast-loadgen on this machine, with per-step memory figures.

Applies a tuning profile (snapshotting what it replaces; reverted at the end whatever
happens), starts the server, ramps the loadgen to N, and every 2 s records the server's open
WebSockets, its RSS, the machine's Slab and MemFree, and the loadgen's RSS. At each step
(100k, 500k, 1M, 1.5M, 2M, ...) it prints server userspace bytes per connection (RSS delta / N)
and slab bytes per connection *pair* (both ends are on this machine; the server's share is
about half, see bench/results/2026-11-23-loadgen-hold.md). It kills the loadgen if MemFree
falls under --min-free-gb (SIGTERM: it stops, closes and reports; SIGKILL under half of
that), and never leaves anything running.

usage: bench/big-hold.py --connections 2000000 [--rate 40000] [--profile c1m] [--out FILE.md]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) * 1024
    return out


def rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def slabinfo():
    caches = {}
    with open("/proc/slabinfo") as f:
        for line in f.readlines()[2:]:
            p = line.split()
            caches[p[0]] = int(p[2]) * int(p[3])  # num_objs * objsize
    return caches


def metric(admin, name):
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=2_000_000)
    ap.add_argument("--rate", type=float, default=40_000)
    ap.add_argument("--concurrency", type=int, default=16_384)
    ap.add_argument("--hold", type=float, default=60)
    ap.add_argument("--profile", default="c1m")
    ap.add_argument("--min-free-gb", type=float, default=1.2)
    ap.add_argument("--server-args", default="")
    ap.add_argument("--json", default="/tmp/big-hold.json")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    snap = "/tmp/big-hold-tune.snapshot"
    subprocess.run([f"{BIN}/holdfast", "tune", "apply", "--profile", a.profile,
                    "--snapshot", snap], check=True)
    server = loadgen = None
    lines = []

    def say(s):
        print(s, flush=True)
        lines.append(s)

    try:
        base_mem = meminfo()
        base_slab = slabinfo()
        server = subprocess.Popen(
            [f"{BIN}/holdfast", "serve", "--listen", "127.0.0.1:18080", "--admin",
             "127.0.0.1:19080", "--max-connections", str(a.connections + 500_000),
             "--backlog", "65535"] + a.server_args.split(),
            stdout=subprocess.DEVNULL, stderr=open("/tmp/big-hold-server.log", "w"),
            env=dict(os.environ, HOLDFAST_LOG="warn"))
        admin = "127.0.0.1:19080"
        for _ in range(100):
            if metric(admin, "holdfast_rings") > 0:
                break
            time.sleep(0.1)
        base_rss = rss(server.pid)
        say(f"baseline: MemFree {base_mem['MemFree']/2**30:.2f} GiB, Slab "
            f"{base_mem['Slab']/2**20:.0f} MiB, server RSS {base_rss/2**20:.1f} MiB")
        loadgen = subprocess.Popen(
            [f"{BIN}/holdfast-loadgen", "hold", "--url", "ws://127.0.0.1:18080/echo",
             "--connections", str(a.connections), "--rate", str(a.rate),
             "--concurrency", str(a.concurrency), "--duration", str(a.hold),
             "--handshake-timeout", "30", "--close-timeout", "120", "--hard-timeout", "900",
             "--server-pid", str(server.pid), "--json", a.json],
            stdout=open("/tmp/big-hold-loadgen.log", "w"), stderr=subprocess.STDOUT)
        steps = [100_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000]
        say("| step | server WebSockets | server RSS B/conn | slab B/conn pair | MemFree GiB | loadgen RSS MiB | t s |")
        say("|---|---|---|---|---|---|---|")
        t0 = time.time()
        peak = 0
        killed = False
        stopping = False
        while loadgen.poll() is None:
            time.sleep(2)
            m = meminfo()
            ws = int(metric(admin, "holdfast_websockets"))
            if ws > peak:
                peak = ws
                peak_slab = slabinfo()
                peak_mem = m
                peak_rss = rss(server.pid)
            while steps and ws >= steps[0]:
                n = steps.pop(0)
                say(f"| {n:,} | {ws:,} | {(rss(server.pid)-base_rss)/ws:.0f} | "
                    f"{(m['Slab']-base_mem['Slab'])/ws:.0f} | {m['MemFree']/2**30:.2f} | "
                    f"{rss(loadgen.pid)/2**20:.0f} | {time.time()-t0:.0f} |")
            if m["MemFree"] < a.min_free_gb * 2**30 and not stopping:
                # SIGTERM: the loadgen stops the scenario, closes and still writes its report.
                say(f"MemFree {m['MemFree']/2**30:.2f} GiB < {a.min_free_gb}: stopping the loadgen at {ws:,}")
                loadgen.terminate()
                stopping = True
            if m["MemFree"] < a.min_free_gb * 2**30 / 2:
                say(f"MemFree {m['MemFree']/2**30:.2f} GiB: killing the loadgen at {ws:,}")
                loadgen.kill()
                killed = True
                break
        loadgen.wait()
        say(f"peak: {peak:,} WebSockets held by the server; server RSS {peak_rss/2**20:.0f} MiB "
            f"({(peak_rss-base_rss)/max(peak,1):.0f} B/conn over baseline), Slab +"
            f"{(peak_mem['Slab']-base_mem['Slab'])/2**30:.2f} GiB "
            f"({(peak_mem['Slab']-base_mem['Slab'])/max(peak,1):.0f} B per pair), MemFree "
            f"{peak_mem['MemFree']/2**30:.2f} GiB; server fds "
            f"{len(os.listdir(f'/proc/{server.pid}/fd'))}, rings "
            f"{int(metric(admin, 'holdfast_rings'))}{' (loadgen killed)' if killed else ''}")
        growth = sorted(((peak_slab.get(k, 0) - base_slab.get(k, 0), k) for k in peak_slab),
                        reverse=True)[:10]
        say("slab growth per connection pair at the peak: " + ", ".join(
            f"{k} {d/max(peak,1):.0f}" for d, k in growth if d > 0))
        try:
            with open(a.json) as f:
                v = json.load(f)
            say(f"loadgen: established {v['established']:,}, held at end {v['held_at_end']:,}, "
                f"failures {v['failed_total']:,} {dict((k, x) for k, x in v['failures'].items() if x)}, "
                f"ramp {v['ramp_seconds']} s, peak {v['peak_upgrades_per_s']:.0f} upgrades/s, "
                f"server {v['server_cpu_us_per_upgrade']} CPU-µs/upgrade, pings {v['pings_answered']:,}, "
                f"loadgen CPU {v['loadgen_cpu_seconds_total']:.0f} s, engines {v['engines']}, threads {v['threads']}")
        except (OSError, ValueError, KeyError) as e:
            say(f"loadgen report unavailable: {e}")
    finally:
        for p in (loadgen, server):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM if p is server else signal.SIGKILL)
        if server:
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        subprocess.run([f"{BIN}/holdfast", "tune", "revert", snap], check=False)
        if a.out:
            with open(a.out, "a") as f:
                f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
