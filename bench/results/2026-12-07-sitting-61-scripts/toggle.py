"""One client toggling its subscription to a presence topic as fast as it can send: what it
costs the others. A node on a real redis-server (or --memory), --presence-events; a
WebSocket watcher on the topic counts presence events; the admin API's publishes to another
topic are timed meanwhile; the node's backplane counters are read at the end.

Usage: toggle.py HOLDFAST_BIN [--secs S] [--memory] [--extra 'FLAGS']
"""
import argparse, asyncio, http.client, json, os, shlex, signal, socket, subprocess, tempfile, threading, time
import websockets

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("--secs", type=float, default=5)
ap.add_argument("--memory", action="store_true")
ap.add_argument("--extra", default="")
a = ap.parse_args()
tmp = tempfile.mkdtemp()
procs = []


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


try:
    args = [a.bin, "serve", "--listen", "127.0.0.1:18601", "--admin", "127.0.0.1:19601",
            "--presence-events"] + shlex.split(a.extra)
    if not a.memory:
        procs.append(subprocess.Popen(["redis-server", "--port", "6393", "--save", "", "--appendonly", "no",
                                       "--dir", tmp], stdout=subprocess.DEVNULL))
        wait_port(6393)
        args += ["--backplane", "redis://127.0.0.1:6393"]
    procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/hf.log", "w")))
    wait_port(18601)
    wait_port(19601)
    time.sleep(0.3)
    stop = threading.Event()
    lat, refused = [], [0]

    def probe():
        c = http.client.HTTPConnection("127.0.0.1", 19601)
        while not stop.is_set():
            t = time.perf_counter()
            c.request("POST", "/publish?topic=probe", body=b"x", headers={"Host": "localhost"})
            r = c.getresponse(); r.read()
            if r.status != 200:
                refused[0] += 1
            lat.append((time.perf_counter() - t) * 1000)
            time.sleep(0.01)

    async def main():
        events = [0]
        sent = [0]
        async with websockets.connect("ws://127.0.0.1:18601/ws?topics=presence:room&client=watcher",
                                      max_queue=None) as watch, \
                websockets.connect("ws://127.0.0.1:18601/ws?client=toggler", max_queue=None) as tog:
            th = threading.Thread(target=probe)
            th.start()

            async def count():
                while True:
                    m = json.loads(await watch.recv())
                    if m.get("type") == "presence":
                        events[0] += 1

            async def drain():
                while True:
                    await tog.recv()

            tasks = [asyncio.create_task(count()), asyncio.create_task(drain())]
            end = time.time() + a.secs
            sub = json.dumps({"op": "subscribe", "topics": ["presence:room"]})
            uns = json.dumps({"op": "unsubscribe", "topics": ["presence:room"]})
            while time.time() < end:
                for _ in range(50):
                    await tog.send(sub)
                    await tog.send(uns)
                    sent[0] += 2
                await asyncio.sleep(0)
            await asyncio.sleep(1)
            for t in tasks:
                t.cancel()
            stop.set()
            th.join()
        return events[0], sent[0]

    events, sent = asyncio.run(main())
    c = http.client.HTTPConnection("127.0.0.1", 19601)
    c.request("GET", "/metrics", headers={"Host": "localhost"})
    m = c.getresponse().read().decode()
    keep = [l for l in m.splitlines() if l.startswith(("holdfast_backplane_jobs_dropped_total",
                                                       "holdfast_pubsub_subscribe_rate_limited_total"))]
    lat.sort()
    print(f"{'memory' if a.memory else 'redis'}: the toggler sent {sent} control messages in {a.secs:g} s; "
          f"the watcher got {events} presence events; admin publishes meanwhile: {len(lat)}, "
          f"p50 {lat[len(lat)//2]:.2f} ms, p99 {lat[int(len(lat)*0.99)]:.2f} ms, max {lat[-1]:.2f} ms, "
          f"not 200: {refused[0]}; " + "; ".join(keep))
finally:
    for p in procs[::-1]:
        p.send_signal(signal.SIGKILL)
        p.wait()
