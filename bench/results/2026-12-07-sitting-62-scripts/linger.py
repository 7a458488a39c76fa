"""How long a killed holdfast's port stays taken after the process has exited (io_uring
releases a ring's sockets in a kernel worker after the process is gone): start a server,
open N upgraded WebSocket connections, SIGKILL it, wait for the exit, then try to bind the
port (SO_REUSEADDR, as the taken-port check does) every millisecond.

Usage: linger.py [N] [TRIALS]
"""
import sys
import socket, subprocess, time, os, signal, re
bin="/work/main/target/release/holdfast"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1
for trial in range(int(sys.argv[2]) if len(sys.argv) > 2 else 5):
    p = subprocess.Popen([bin,"serve","--listen","127.0.0.1:0","--admin","127.0.0.1:0","--workers","1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr=None
    while addr is None:
        l=p.stdout.readline()
        m=re.match(r"listening on (\S+)", l)
        if m: addr=m.group(1)
    host,port=addr.rsplit(":",1); port=int(port)
    conns=[]
    for i in range(N):
        c=socket.create_connection((host,port))
        c.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        conns.append(c)
    for c in conns: c.recv(1000)
    p.send_signal(signal.SIGKILL); p.wait()
    t=time.time(); n=0
    while True:
        s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host,port)); s.close(); break
        except OSError as e:
            n+=1; s.close(); time.sleep(0.001)
    print(f"{N} connections, trial {trial}: port free {1000*(time.time()-t):.1f} ms after exit ({n} refusals)")
    for c in conns: c.close()
