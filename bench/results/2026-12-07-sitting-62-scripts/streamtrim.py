"""What the broker holds and spends per publish, before and after hf_publish trimmed the
stream to the node's window (--replay-bytes) as well as its count (--replay-messages).

Against a fresh redis-server on 127.0.0.1:6393 (no persistence). For each library (the
sixty-first sitting's, given as OLD_LUA, and this one, NEW_LUA) and each message size, one
topic gets N publishes in pipelined batches of 100, exactly as a node sends them (the
earlier library: 3 keys, MAXLEN 1024; this one: 5 keys, MAXLEN 1024, BYTES 1 MiB, the
defaults). Reported: the stream's entries and data bytes, the topic's keys' memory
(MEMORY USAGE), Redis' used_memory, and Redis' own microseconds per FCALL (INFO
commandstats, so the client's cost is not in it).

Usage: streamtrim.py OLD_LUA NEW_LUA [N]
"""
import socket, sys, time, subprocess

def resp(*args):
    out = b"*%d\r\n" % len(args)
    for x in args:
        x = x if isinstance(x, bytes) else str(x).encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out

class Rd:
    """A minimal RESP reader."""
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

PORT = 6393
old_lua, new_lua = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
N = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
srv = subprocess.Popen(["redis-server", "--port", str(PORT), "--save", "", "--appendonly", "no"],
                       stdout=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            r = socket.create_connection(("127.0.0.1", PORT)); break
        except OSError:
            time.sleep(0.05)
    rd = Rd(r)
    def call(*a):
        r.sendall(resp(*a)); return rd.val()
    def info(section, field):
        for l in call("INFO", section).decode().split("\r\n"):
            if l.startswith(field):
                return l
    print(f"redis-server {call('INFO', 'server').decode().split('redis_version:')[1].split()[0]}, "
          f"{N} publishes per row, pipelined 100 at a time")
    print(f"{'library':8} {'size':>7} {'entries':>8} {'data MiB':>9} {'keys MiB':>9} "
          f"{'used MiB':>9} {'us/FCALL':>9}")
    for name, lua in (("before", old_lua), ("after", new_lua)):
        for size in (100, 10_000, 100_000, 1_000_000):
            call("FLUSHALL")
            call("FUNCTION", "LOAD", "REPLACE", lua)
            call("CONFIG", "RESETSTAT")
            t = f"t{size}"
            keys = [f"hf:{{{t}}}:{k}" for k in ("s", "e", "m")]
            n = N if size <= 10_000 else N // 10 if size <= 100_000 else N // 100
            data = b"x" * size
            for i in range(0, n, 100):
                batch = b""
                for _ in range(min(100, n - i)):
                    if name == "before":
                        batch += resp("FCALL", "hf_publish", 3, *keys, "t", data, 1024, 86400)
                    else:
                        batch += resp("FCALL", "hf_publish", 5, *keys, f"hf:{{{t}}}:z",
                                      f"hf:{{{t}}}:b", "t", data, 1024, 86400, 1 << 20)
                r.sendall(batch)
                for _ in range(min(100, n - i)):
                    v = rd.val()
                    assert isinstance(v, list), v
            entries = call("XLEN", keys[0])
            got = call("XRANGE", keys[0], "-", "+")
            data_bytes = sum(len(e[1][3]) for e in got)
            mem = sum(call("MEMORY", "USAGE", k, "SAMPLES", "0") or 0
                      for k in keys[:2] + [f"hf:{{{t}}}:z", f"hf:{{{t}}}:b"])
            used = int(info("memory", "used_memory:").split(":")[1])
            us = info("commandstats", "cmdstat_fcall:").split("usec_per_call=")[1].split(",")[0]
            print(f"{name:8} {size:>7} {entries:>8} {data_bytes / 2**20:>9.2f} {mem / 2**20:>9.2f} "
                  f"{used / 2**20:>9.2f} {float(us):>9.2f}   ({n} publishes)")
finally:
    srv.terminate(); srv.wait()
