import socket, os, struct, time, base64, json, urllib.request, threading, sys
H=("127.0.0.1",18080)
def up(path="/ws"):
    s=socket.create_connection(H)
    key=base64.b64encode(os.urandom(16))
    s.sendall(b"GET "+path.encode()+b" HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+key+b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf=b""
    while b"\r\n\r\n" not in buf: buf+=s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    return s, buf.split(b"\r\n\r\n",1)[1]
def frame(op, payload=b"", fin=True):
    b0=(0x80 if fin else 0)|op
    n=len(payload)
    mask=b"\x01\x02\x03\x04"
    if n<126: hdr=bytes([b0,0x80|n])
    elif n<65536: hdr=bytes([b0,0x80|126])+struct.pack(">H",n)
    else: hdr=bytes([b0,0x80|127])+struct.pack(">Q",n)
    return hdr+mask+bytes(c^mask[i%4] for i,c in enumerate(payload))
def rss():
    pid=int(open("/tmp/h59/srv.pid").read())
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return l.split()[1]+" kB"
def metric(name):
    t=urllib.request.urlopen("http://127.0.0.1:19090/metrics").read().decode()
    return [l for l in t.splitlines() if l.startswith(name)]
case=sys.argv[1]
watch,_=up("/ws?topics=healthy")
watch.settimeout(2)
print("rss before", rss())
t0=time.time()
if case=="fragflood":
    s,_=up("/echo")
    s.sendall(frame(1,b"a",fin=False))
    chunk=frame(0,b"",fin=False)*10000
    sent=0
    try:
        while time.time()-t0<10:
            s.sendall(chunk); sent+=10000
    except Exception as e: print("ended", e)
    print("continuation frames sent", sent)
elif case=="pingflood":
    s,_=up("/echo")
    s.settimeout(0.001)
    chunk=frame(9,b"x"*125)*1000
    sent=0
    try:
        while time.time()-t0<10:
            s.sendall(chunk); sent+=1000
    except Exception as e: print("ended after", sent, repr(e))
    print("pings sent", sent)
elif case=="fragmany":
    # 1000 connections each holding an open fragmented message of 512 KiB
    conns=[]
    for i in range(1000):
        s,_=up("/echo"); s.sendall(frame(2,b"z"*(512*1024),fin=False)); conns.append(s)
    print("held 1000 partial messages")
print("rss after", rss())
urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:19090/publish?topic=healthy", data=b"ok", method="POST")).read()
d=watch.recv(4096); print("healthy got", d[-40:])
for m in ["holdfast_closes_total","holdfast_memory_budget","holdfast_shed","holdfast_rejected_total"]:
    for l in metric(m): 
        if not l.endswith(" 0"): print(" ", l)
