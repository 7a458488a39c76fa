"""Does scraping /metrics (the observe listener: the one exposed to scrapers) make the
workers wait? A server holding --topics topics; admin publishes to `probe`, one after
another, each timed (the publish takes the hub's lock, as a worker's subscribe does), for
--secs seconds without scrapes and then with --scrapers threads scraping /metrics in a loop.

Usage: scrapes.py HOLDFAST_BIN [--topics N] [--scrapers N] [--secs S]
"""
import argparse, http.client, signal, socket, statistics, subprocess, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("--topics", type=int, default=100_000)
ap.add_argument("--scrapers", type=int, default=4)
ap.add_argument("--secs", type=float, default=5)
a = ap.parse_args()

srv = subprocess.Popen([a.bin, "serve", "--listen", "127.0.0.1:18401", "--admin", "127.0.0.1:19400",
                        "--metrics-listen", "127.0.0.1:19401", "--max-topics", str(a.topics + 10)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for port in (18401, 19400, 19401):
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
    c = http.client.HTTPConnection("127.0.0.1", 19400)
    t = time.time()
    for i in range(a.topics):
        c.request("POST", f"/publish?topic=t{i}", body=b"x", headers={"Host": "localhost"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
    print(f"{a.topics} topics made in {time.time()-t:.1f} s")

    def probe(secs):
        c = http.client.HTTPConnection("127.0.0.1", 19400)
        lat, end = [], time.time() + secs
        while time.time() < end:
            t = time.perf_counter()
            c.request("POST", "/publish?topic=probe", body=b"x", headers={"Host": "localhost"})
            r = c.getresponse(); r.read()
            lat.append((time.perf_counter() - t) * 1000)
            time.sleep(0.005)
        lat.sort()
        return (f"{len(lat)} publishes: p50 {statistics.median(lat):.2f} ms, "
                f"p99 {lat[int(len(lat)*0.99)]:.2f} ms, max {lat[-1]:.2f} ms")

    alone = []
    m = http.client.HTTPConnection("127.0.0.1", 19401)
    for _ in range(5):
        time.sleep(0.1)
        t = time.perf_counter()
        m.request("GET", "/metrics", headers={"Host": "h"})
        r = m.getresponse(); r.read()
        alone.append((time.perf_counter() - t) * 1000)
    print(f"a scrape alone: median {statistics.median(alone):.1f} ms of 5")
    print("no scrapes:   " + probe(a.secs))
    stop, scrapes, took = False, [0], []

    def scrape():
        c = http.client.HTTPConnection("127.0.0.1", 19401)
        while not stop:
            t = time.perf_counter()
            c.request("GET", "/metrics", headers={"Host": "h"})
            r = c.getresponse(); body = r.read()
            took.append((time.perf_counter() - t) * 1000)
            scrapes[0] += 1

    ts = [threading.Thread(target=scrape, daemon=True) for _ in range(a.scrapers)]
    for t in ts:
        t.start()
    line = probe(a.secs)
    stop = True
    for t in ts:
        t.join()
    took.sort()
    print(f"{a.scrapers} scrapers: " + line +
          f"; {scrapes[0]} scrapes, each p50 {statistics.median(took):.1f} ms")
finally:
    srv.send_signal(signal.SIGKILL)
    srv.wait()
