import socket, sys, time
H=("127.0.0.1",18080)
def ask(req, timeout=3, read_all=False):
    s=socket.create_connection(H, timeout=timeout)
    s.sendall(req)
    out=b""
    t=time.time()
    try:
        while time.time()-t<timeout:
            d=s.recv(65536)
            if not d: break
            out+=d
            if not read_all and b"\r\n\r\n" in out:
                head,_,body=out.partition(b"\r\n\r\n")
                cl=[l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body)>=int(cl[0].split(b":")[1]): break
                if not cl and b"event-stream" in head and len(body)>0: break
    except socket.timeout:
        out+=b" <timeout>"
    except ConnectionResetError:
        out+=b" <reset>"
    s.close()
    return out
def get(path, extra=b""):
    return ask(b"GET "+path+b" HTTP/1.1\r\nHost: h\r\n"+extra+b"\r\n")
cases = {
 "cursor u64max": get(b"/poll?topics=a&cursor=a:18446744073709551615@1"),
 "cursor overflow": get(b"/poll?topics=a&cursor=a:99999999999999999999999@1"),
 "cursor neg": get(b"/poll?topics=a&cursor=a:-1@1"),
 "cursor noepoch": get(b"/poll?topics=a&cursor=a:5"),
 "cursor epoch huge": get(b"/poll?topics=a&cursor=a:5@99999999999999999999999999"),
 "cursor other topic": get(b"/poll?topics=a&cursor=b:5@1"),
 "cursor dup": get(b"/poll?topics=a&cursor=a:5@1,a:6@1,a:7@2"),
 "cursor 10k entries": get(b"/poll?topics=a&cursor="+b",".join(b"t%d:1@1"%i for i in range(2000))),
 "topics many": get(b"/poll?topics="+b",".join(b"t%d"%i for i in range(2000))),
 "topics empty": get(b"/poll?topics="),
 "topics commas": get(b"/poll?topics=,,,,"),
 "topic pct bad utf8": get(b"/poll?topics=%ff%fe"),
 "topic pct trunc": get(b"/poll?topics=a%2"),
 "topic long": get(b"/poll?topics="+b"x"*5000),
 "sse lei garbage": get(b"/sse?topics=a", b"Last-Event-ID: \xff\xfe:::@@@\r\n"),
 "sse lei u64": get(b"/sse?topics=a", b"Last-Event-ID: a:18446744073709551615@18446744073709551615\r\n"),
 "sse resume+lei": get(b"/sse?topics=a&resume=a:1@1", b"Last-Event-ID: b:1@1\r\n"),
 "query dup topics": get(b"/poll?topics=a&topics=b"),
 "query no value": get(b"/poll?topics"),
 "client huge": get(b"/poll?topics=a&client="+b"c"*3000),
 "publish 2 CL": ask(b"POST /publish?topic=a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
 "publish CL+TE": ask(b"POST /publish?topic=a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx"),
 "publish CL plus": ask(b"POST /publish?topic=a HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx"),
 "obs-fold": ask(b"GET /poll?topics=a HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
 "lf only": ask(b"GET /poll?topics=a HTTP/1.1\nHost: h\n\n"),
 "http/2 preface": ask(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
 "absolute uri": get(b"http://evil/poll?topics=a"),
 "no host": ask(b"GET /poll?topics=a HTTP/1.1\r\n\r\n"),
 "two hosts": ask(b"GET /poll?topics=a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
 "nul in path": get(b"/poll?topics=a\x00b"),
 "space in header name": ask(b"GET /poll?topics=a HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n"),
 "method lower": ask(b"get /poll?topics=a HTTP/1.1\r\nHost: h\r\n\r\n"),
 "version 1.2": ask(b"GET /poll?topics=a HTTP/1.2\r\nHost: h\r\n\r\n"),
 "version 9": ask(b"GET /poll?topics=a HTTP/9.9\r\nHost: h\r\n\r\n"),
 "ws bad key": get(b"/ws?topics=a", b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"),
 "ws v8": get(b"/ws?topics=a", b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
 "presence no topic": get(b"/presence"),
 "presence u": get(b"/presence?topic=%00"),
 "options star": ask(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
}
for k,v in cases.items():
    first=v.split(b"\r\n")[0][:60]
    body=v.partition(b"\r\n\r\n")[2][:120]
    print(f"{k:22s} {first!r:60s} {body!r}")
