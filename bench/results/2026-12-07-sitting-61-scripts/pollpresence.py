"""Presence events a long-polling client causes: a WebSocket watcher subscribed to
`presence:room` (--presence-events) counts join and leave events while one client long-polls
the same topic and the admin API publishes --rate messages a second to it for --secs.

Usage: pollpresence.py HOLDFAST_BIN [--rate N] [--secs S]
"""
import argparse, asyncio, http.client, json, signal, socket, subprocess, threading, time
import websockets

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("--rate", type=float, default=10)
ap.add_argument("--secs", type=float, default=5)
a = ap.parse_args()
srv = subprocess.Popen([a.bin, "serve", "--listen", "127.0.0.1:18501", "--admin", "127.0.0.1:19501",
                        "--presence-events"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for port in (18501, 19501):
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
    stop = threading.Event()
    polls = [0]

    def poller():
        c = http.client.HTTPConnection("127.0.0.1", 18501, timeout=30)
        cursor = ""
        while not stop.is_set():
            q = "/poll?topics=presence:room&client=poller" + (f"&cursor={cursor}" if cursor else "")
            c.request("GET", q, headers={"Host": "h"})
            r = c.getresponse()
            body = json.loads(r.read())
            cursor = body.get("cursor", cursor)
            polls[0] += 1

    def publisher():
        c = http.client.HTTPConnection("127.0.0.1", 19501)
        end = time.time() + a.secs
        while time.time() < end:
            c.request("POST", "/publish?topic=presence:room", body=b"m", headers={"Host": "localhost"})
            c.getresponse().read()
            time.sleep(1 / a.rate)

    async def watch():
        events = {"join": 0, "leave": 0}
        async with websockets.connect("ws://127.0.0.1:18501/ws?topics=presence:room&client=watcher") as ws:
            threading.Thread(target=poller, daemon=True).start()
            pub = threading.Thread(target=publisher)
            pub.start()
            end = time.time() + a.secs + 0.5
            while time.time() < end:
                try:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except asyncio.TimeoutError:
                    continue
                if m.get("type") == "presence":
                    events[m["event"]] += 1
            pub.join()
        stop.set()
        return events

    ev = asyncio.run(watch())
    print(f"{a.rate:g} messages/s for {a.secs:g} s; one long-poll client made {polls[0]} polls; "
          f"the watcher got {ev['join']} join and {ev['leave']} leave events")
finally:
    srv.send_signal(signal.SIGKILL)
    srv.wait()
