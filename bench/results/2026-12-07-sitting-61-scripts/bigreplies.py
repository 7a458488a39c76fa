"""Large broker replies against a two-node fleet on a real redis-server.

1. History: topic `big` gets 1,024 messages of --size bytes on node A. A client then
   subscribes to `big` on node B, which has never listened to it: B opens the topic at the
   broker (hf_open: the newest 1,024 entries, one reply). Times until `subscribed`, and the
   admin publishes of another topic that B answers meanwhile (its backplane thread numbers
   them).
2. Presence: --members fake members are written straight into the broker for
   `presence:big`; then GET /presence on B's data port (which lists at most 1,000) and the
   admin API's (which listed them all), each timed, with the same publish probe.

Usage: bigreplies.py HOLDFAST_BIN [--size N] [--members N]
"""
import argparse, asyncio, json, os, signal, socket, subprocess, sys, tempfile, threading, time
import urllib.request
import websockets

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("--size", type=int, default=64 * 1024)
ap.add_argument("--members", type=int, default=200_000)
ap.add_argument("--history-only", action="store_true")
a = ap.parse_args()

RPORT = 6391
tmp = tempfile.mkdtemp()
procs = []


def start(cmd, log):
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} never opened")


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for x in args:
        x = x if isinstance(x, bytes) else str(x).encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out


def http(method, url, body=None, timeout=120):
    t = time.time()
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            return r.status, data, time.time() - t
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.time() - t


class Probe:
    """Admin publishes to `probe` on node B, one after another, each timed."""

    def __init__(self, admin):
        self.admin, self.times, self.stop = admin, [], False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            s, _, dt = http("POST", f"http://{self.admin}/publish?topic=probe", b"x", timeout=30)
            self.times.append((s, dt))
            time.sleep(0.02)

    def report(self):
        self.stop = True
        self.t.join()
        ts = sorted(dt for _, dt in self.times)
        bad = sum(1 for s, _ in self.times if s != 200)
        return f"{len(ts)} probes, max {ts[-1]*1000:.0f} ms, p50 {ts[len(ts)//2]*1000:.1f} ms, not 200: {bad}"


try:
    start(["redis-server", "--port", str(RPORT), "--save", "", "--appendonly", "no",
           "--dir", tmp], f"{tmp}/redis.log")
    wait_port(RPORT)
    common = ["serve", "--backplane", f"redis://127.0.0.1:{RPORT}", "--workers", "1"]
    start([a.bin] + common + ["--listen", "127.0.0.1:18181", "--admin", "127.0.0.1:19191",
                              "--node-id", "a"], f"{tmp}/a.log")
    node_b = start([a.bin] + common + ["--listen", "127.0.0.1:18182", "--admin", "127.0.0.1:19192",
                                       "--node-id", "b"], f"{tmp}/b.log")

    def hwm():
        for l in open(f"/proc/{node_b.pid}/status"):
            if l.startswith(("VmHWM", "VmRSS")):
                yield l.split()[1]
    for p in (18181, 18182, 19191, 19192):
        wait_port(p)
    time.sleep(0.5)

    body = b"y" * a.size
    t = time.time()
    for i in range(1024):
        s, d, _ = http("POST", "http://127.0.0.1:19191/publish?topic=big", body)
        assert s == 200, (s, d)
    print(f"history: 1,024 messages of {a.size} B published on A in {time.time()-t:.1f} s")

    async def subscribe():
        probe = Probe("127.0.0.1:19192")
        time.sleep(0.3)
        t = time.time()
        async with websockets.connect("ws://127.0.0.1:18182/ws?topics=big", max_size=None,
                                      open_timeout=300) as ws:
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 300))
                if m.get("type") == "subscribed":
                    break
        dt = time.time() - t
        time.sleep(0.3)
        peak, now = hwm()
        print(f"history: B's peak resident memory {int(peak)//1024} MiB (now {int(now)//1024} MiB; "
              f"{hwm0[0]//1024} MiB before the subscribe)")
        print(f"history: B's first subscriber of `big` got `subscribed` after {dt*1000:.0f} ms; "
              f"B's admin publishes meanwhile: {probe.report()}")

    hwm0 = [int(next(hwm()))]
    asyncio.run(subscribe())
    if a.history_only:
        sys.exit(0)

    # Presence members, written as hf_join writes them (expiry an hour ahead).
    topic = "presence:big"
    r = socket.create_connection(("127.0.0.1", RPORT))
    exp = int(time.time() * 1000) + 3_600_000
    batch = b""
    for i in range(a.members):
        m = f"z/{i:x}"
        info = json.dumps({"node": "z", "conn": f"{i:x}", "client": "bench", "since": 1})
        batch += resp("FCALL", "hf_join", 3, f"hf:{{{topic}}}:p", f"hf:{{{topic}}}:x",
                      f"hf:{{{topic}}}:u", m, f"u{i % 1000}", info, exp)
        if i % 5000 == 4999 or i == a.members - 1:
            r.sendall(batch)
            batch = b""
    r.sendall(resp("PING"))
    buf = b""
    while not buf.endswith(b"+PONG\r\n"):
        buf += r.recv(1 << 20)
    print(f"presence: {a.members} members written for {topic}")

    for name, url in [("data port GET /presence", f"http://127.0.0.1:18182/presence?topic={topic}"),
                      ("admin GET /presence", f"http://127.0.0.1:19192/presence?topic={topic}&members=1")]:
        probe = Probe("127.0.0.1:19192")
        time.sleep(0.3)
        res = []
        for _ in range(3):
            s, d, dt = http("GET", url, timeout=300)
            try:
                v = json.loads(d)
                desc = f"{len(v.get('members', []))} listed of {v.get('connections')}, truncated={v.get('truncated', False)}"
            except Exception:
                desc = d[:100]
            res.append(f"{s} in {dt*1000:.0f} ms ({len(d)} B: {desc})")
        time.sleep(0.3)
        print(f"presence: {name}: " + "; ".join(res) + f"; B's admin publishes meanwhile: {probe.report()}")
finally:
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    for f in ("a.log", "b.log"):
        lines = [l for l in open(f"{tmp}/{f}") if "WARN" in l or "ERROR" in l]
        for l in lines[:5]:
            print(f"{f}: {l.rstrip()}")
