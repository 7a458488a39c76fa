# An independent RTT probe: one blocking socket, one message every 10 ms, 300 messages.
import socket, os, time, base64, struct, sys
port = int(sys.argv[1]); n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf: buf += s.recv(4096)
rtts = []
for i in range(n):
    p = os.urandom(32); m = os.urandom(4)
    fr = bytes([0x82, 0x80 | 32]) + m + bytes(b ^ m[j % 4] for j, b in enumerate(p))
    t = time.perf_counter(); s.sendall(fr)
    got = b""
    while len(got) < 34: got += s.recv(4096)
    rtts.append((time.perf_counter() - t) * 1e3)
    time.sleep(0.01)
rtts.sort()
print("probe rtt ms: p50 %.3f p90 %.3f p99 %.3f max %.3f" % (rtts[len(rtts)//2], rtts[int(len(rtts)*.9)], rtts[int(len(rtts)*.99)], rtts[-1]))
