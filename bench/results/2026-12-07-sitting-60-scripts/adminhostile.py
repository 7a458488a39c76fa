"""Hostile requests to the admin listener: each case on its own connection, then the same
request pipelined behind it where the framing matters (what a proxy in front would read
one way and the admin parser another). Prints the status line and the first body line of
every answer on the connection, so two answers where one was sent show a smuggled request.

usage: python3 adminhostile.py PORT            (the admin listener on 127.0.0.1:PORT)
"""
import socket, sys, time

H = ("127.0.0.1", int(sys.argv[1]))


def ask(req, timeout=2.0):
    s = socket.create_connection(H, timeout=timeout)
    s.sendall(req)
    out = b""
    t = time.time()
    try:
        while time.time() - t < timeout:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        out += b" <open>"
    except ConnectionResetError:
        out += b" <reset>"
    s.close()
    return out


def answers(raw):
    """Each response's status line and first body line."""
    out = []
    rest = raw
    while rest.startswith(b"HTTP/1."):
        head, _, body = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        cl = [l for l in lines if l.lower().startswith(b"content-length:")]
        n = int(cl[0].split(b":")[1]) if cl else len(body)
        first = body[:n].split(b"\n")[0][:70]
        out.append(lines[0].decode() + " | " + first.decode(errors="replace"))
        rest = body[n:]
    if rest:
        out.append("then: " + repr(rest[:60]))
    return out


P = b"POST /publish?topic=adm HTTP/1.1\r\n"
G = b"GET /healthz HTTP/1.1\r\n"
NEXT = b"GET /topics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
cases = {
    "baseline publish": P + b"Host: localhost\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    "CL twice, differing": P + b"Host: localhost\r\nContent-Length: 1\r\nContent-Length: 5\r\n\r\nxGET /",
    "CL twice, same": P + b"Host: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    "CL with sign": P + b"Host: localhost\r\nContent-Length: +1\r\nConnection: close\r\n\r\nx",
    "CL list": P + b"Host: localhost\r\nContent-Length: 1, 1\r\nConnection: close\r\n\r\nx",
    "space before colon (CL ignored, body read as next request)": P + b"Host: localhost\r\nContent-Length : 45\r\n\r\n" + NEXT[:45],
    "space before colon, pipelined": P + b"Host: localhost\r\nContent-Length : 63\r\n\r\n" + NEXT,
    "TE chunked": P + b"Host: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    "two Hosts, evil first": G.replace(b"healthz", b"topics") + b"Host: evil.example\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "two Hosts, local first": G.replace(b"healthz", b"topics") + b"Host: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    "no Host, HTTP/1.1": b"GET /topics HTTP/1.1\r\nConnection: close\r\n\r\n",
    "no Host, HTTP/1.0 (HAProxy's default check)": b"GET /healthz HTTP/1.0\r\n\r\n",
    "two Origins": G.replace(b"healthz", b"topics") + b"Host: localhost\r\nOrigin: http://a\r\nOrigin: http://b\r\nConnection: close\r\n\r\n",
    "ctl char in value": G + b"Host: localhost\r\nX-A: a\x01b\r\nConnection: close\r\n\r\n",
    "NUL in target": b"GET /healthz\x00x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "request line, 4 parts": b"GET /healthz HTTP/1.1 extra\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "method with bad chars": b"G(T /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "HTTP/1.2": b"GET /healthz HTTP/1.2\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "obs-fold": G + b"Host: localhost\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n",
    "LF-only lines": b"GET /healthz HTTP/1.1\nHost: localhost\nConnection: close\n\n",
    "GET with a body": G + b"Host: localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    "HEAD /healthz": b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "DELETE /drain": b"DELETE /drain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "absolute target": b"GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "65 headers": G + b"Host: localhost\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(64)) + b"Connection: close\r\n\r\n",
    "non-UTF-8 header": G + b"Host: localhost\r\nX-A: \xff\xfe\r\nConnection: close\r\n\r\n",
    "bearer lower-case (no token configured)": G.replace(b"healthz", b"topics") + b"Host: localhost\r\nAuthorization: bearer x\r\nConnection: close\r\n\r\n",
}
for name, req in cases.items():
    got = answers(ask(req))
    print(f"{name}:")
    for a in got or ["(nothing)"]:
        print(f"    {a}")
