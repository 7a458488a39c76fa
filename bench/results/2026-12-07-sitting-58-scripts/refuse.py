"""Churn an admin listener with connections that each send a request at once, and record
how each connection the server ends looked to its client.

usage: refuse.py PORT CONNS SECONDS
Each attacker connection sends `GET /healthz` (keep-alive) as soon as it connects, reads
its answers, and is reopened at once when the server ends it. An end is counted as
"503" (a 503 answer, then EOF), "reset" (ECONNRESET, whatever had arrived), "eof-idle"
(EOF after its 200: displaced while idle), or "eof-other". Also probes /healthz every 100 ms.
"""
import selectors, socket, sys, time, collections, threading
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
addr = ("127.0.0.1", port)
stop = time.time() + secs
ends = collections.Counter()
connects = 0
REQ = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"
def attacker():
    global connects
    sel = selectors.DefaultSelector()
    def opn():
        global connects
        s = socket.socket()
        try:
            s.connect(addr)
            s.sendall(REQ)
        except OSError:
            s.close(); ends["connect-failed"] += 1; return
        s.setblocking(False)
        connects += 1
        sel.register(s, selectors.EVENT_READ, bytearray())
    for _ in range(n): opn()
    while time.time() < stop:
        for key, _ in sel.select(timeout=0.05):
            s, got = key.fileobj, key.data
            try:
                d = s.recv(4096)
            except ConnectionResetError:
                ends["reset"] += 1; sel.unregister(s); s.close(); opn(); continue
            except BlockingIOError:
                continue
            if d:
                got += d; continue
            if b" 503 " in got: ends["503"] += 1
            elif b" 200 " in got: ends["eof-idle"] += 1
            else: ends["eof-other"] += 1
            sel.unregister(s); s.close(); opn()
threading.Thread(target=attacker, daemon=True).start()
time.sleep(0.5)
got = collections.Counter(); lat = []
while time.time() < stop:
    t = time.time()
    try:
        c = socket.create_connection(addr, timeout=2); c.settimeout(2)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        r = b""
        while True:
            d = c.recv(4096)
            if not d: break
            r += d
        c.close()
        st = r.split(b" ")[1].decode() if r else "closed"
    except Exception as e:
        st = type(e).__name__
    got[st] += 1; lat.append(time.time() - t)
    time.sleep(0.1)
lat.sort()
print(f"conns={n} attacker_ends={dict(ends)} attacker_connects_per_s={connects/secs:.0f} probes={dict(got)} p50={lat[len(lat)//2]*1e3:.1f}ms p99={lat[len(lat)*99//100]*1e3:.1f}ms max={lat[-1]*1e3:.1f}ms")
