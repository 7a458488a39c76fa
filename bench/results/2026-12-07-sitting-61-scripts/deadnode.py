"""A node that died holding N members of one presence topic (their expiry passed), beside 30
live ones: each hf_presence call timed, against a redis-server on 127.0.0.1:6392 with the
holdfast library loaded (redis-cli -p 6392 -x FUNCTION LOAD REPLACE < holdfast.lua).

Usage: deadnode.py N
"""
import socket, time, json, sys
def resp(*args):
    out = b"*%d\r\n" % len(args)
    for x in args:
        x = x if isinstance(x, bytes) else str(x).encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out
class Rd:
    """A minimal RESP reader (enough for hf_presence's reply)."""
    def __init__(s, sock): s.s, s.b = sock, b""
    def line(s):
        while b"\r\n" not in s.b: s.b += s.s.recv(1 << 20)
        l, s.b = s.b.split(b"\r\n", 1); return l
    def val(s):
        l = s.line(); t, rest = l[:1], l[1:]
        if t in (b"+", b"-"): return rest.decode()
        if t == b":": return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0: return None
            while len(s.b) < n + 2: s.b += s.s.recv(1 << 20)
            v, s.b = s.b[:n], s.b[n + 2:]; return v
        if t == b"*": return [s.val() for _ in range(int(rest))]
r = socket.create_connection(("127.0.0.1", 6392)); rd = Rd(r)
T = "presence:dead"
keys = [f"hf:{{{T}}}:p", f"hf:{{{T}}}:x", f"hf:{{{T}}}:u"]
N = int(sys.argv[1])
exp = int(time.time() * 1000) + 1500
batch = b""; sent = 0
for i in range(N):
    info = json.dumps({"node": "z", "conn": f"{i:x}", "client": None, "since": 1})
    batch += resp("FCALL", "hf_join", 3, *keys, f"z/{i:x}", f"u{i % 1000}", info, exp); sent += 1
    if i % 5000 == 4999: r.sendall(batch); batch = b""
for i in range(30):
    info = json.dumps({"node": "live", "conn": f"{i:x}", "client": None, "since": 1})
    batch += resp("FCALL", "hf_join", 3, *keys, f"live/{i:x}", f"L{i}", info, exp + 3600000); sent += 1
r.sendall(batch)
for _ in range(sent): rd.val()
time.sleep(2)
print(f"{N} members of a node that died (expired), 30 live")
for q in range(4):
    t = time.time()
    r.sendall(resp("FCALL", "hf_presence", 3, *keys, int(time.time() * 1000), "1", "1000"))
    v = rd.val()
    dt = time.time() - t
    names = v[2][0::2]
    print(f"query {q}: {dt*1000:.1f} ms; connections {v[0]}, users {v[1]}, listed {len(names)} "
          f"(live {sum(1 for n in names if n.startswith(b'live/'))})")
