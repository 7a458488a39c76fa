"""Hold an admin listener with connections that send nothing, and probe /healthz.

usage: hold.py PORT CONNS SECONDS MODE
  MODE=patient:   open CONNS silent connections and reopen them every 9 s (inside a 10 s
                  request deadline)
  MODE=churn:     the same, and reopen one the server closes at once
Prints probe answers by status, and the attacker's connects per second.
"""
import selectors, socket, sys, time, collections, threading
port, n, secs, mode = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
addr = ("127.0.0.1", port)
stop = time.time() + secs
connects = 0
def attacker():
    global connects
    sel = selectors.DefaultSelector()
    def opn():
        global connects
        s = socket.socket(); s.setblocking(True)
        try:
            s.connect(addr)
        except OSError:
            s.close(); return
        s.setblocking(False)
        connects += 1
        sel.register(s, selectors.EVENT_READ, time.time())
    for _ in range(n): opn()
    while time.time() < stop:
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                d = s.recv(4096)
            except OSError:
                d = b""
            if not d:
                sel.unregister(s); s.close()
                if mode == "churn": opn()
        now = time.time()
        for key in list(sel.get_map().values()):
            if now - key.data > 9:
                sel.unregister(key.fileobj); key.fileobj.close(); opn()
threading.Thread(target=attacker, daemon=True).start()
time.sleep(0.5)
got = collections.Counter(); lat = []
while time.time() < stop:
    t = time.time()
    try:
        c = socket.create_connection(addr, timeout=2)
        c.settimeout(2)
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
print(f"mode={mode} conns={n} probes={sum(got.values())} answers={dict(got)} "
      f"p50={lat[len(lat)//2]*1e3:.1f}ms max={lat[-1]*1e3:.1f}ms attacker_connects_per_s={connects/secs:.0f}")
