import asyncio, json, sys, websockets
URL="ws://127.0.0.1:18080/ws"
cases = [
 ("empty text", ""),
 ("whitespace", "   "),
 ("null", "null"),
 ("array", "[]"),
 ("deep array", "["*5000+"]"*5000),
 ("deep object", '{"a":'*3000+'1'+'}'*3000),
 ("bom", '\ufeff{"op":"subscribe","topics":["a"]}'),
 ("trailing garbage", '{"op":"subscribe","topics":["a"]} x'),
 ("two objects", '{"op":"subscribe","topics":["a"]}{"op":"subscribe","topics":["b"]}'),
 ("dup op keys", '{"op":"subscribe","op":"unsubscribe","topics":["a"]}'),
 ("topics string", '{"op":"subscribe","topics":"a"}'),
 ("topics nested", '{"op":"subscribe","topics":[["a"]]}'),
 ("topics number", '{"op":"subscribe","topics":[1]}'),
 ("topic nul esc", '{"op":"subscribe","topics":["a\\u0000b"]}'),
 ("topic lone surrogate", '{"op":"subscribe","topics":["\\ud800"]}'),
 ("topic unicode", '{"op":"subscribe","topics":["\u00e9"]}'),
 ("topic empty", '{"op":"subscribe","topics":[""]}'),
 ("topics empty list", '{"op":"subscribe","topics":[]}'),
 ("topics dup 100", json.dumps({"op":"subscribe","topics":["d"]*100})),
 ("topics 65", json.dumps({"op":"subscribe","topics":["t%d"%i for i in range(65)]})),
 ("resume seq neg", '{"op":"subscribe","topics":["r1"],"resume":{"r1":-1}}'),
 ("resume seq float", '{"op":"subscribe","topics":["r2"],"resume":{"r2":1.5}}'),
 ("resume seq 1e308", '{"op":"subscribe","topics":["r3"],"resume":{"r3":1e308}}'),
 ("resume seq u64max", '{"op":"subscribe","topics":["r4"],"resume":{"r4":18446744073709551615}}'),
 ("resume seq u64max+1", '{"op":"subscribe","topics":["r5"],"resume":{"r5":18446744073709551616}}'),
 ("resume epoch bad", '{"op":"subscribe","topics":["r6"],"resume":{"r6":{"seq":1,"epoch":"zz"}}}'),
 ("resume epoch long", '{"op":"subscribe","topics":["r7"],"resume":{"r7":{"seq":1,"epoch":"'+"f"*3000+'"}}}'),
 ("resume other topic", '{"op":"subscribe","topics":["r8"],"resume":{"zz":1}}'),
 ("resume not obj", '{"op":"subscribe","topics":["r9"],"resume":[1]}'),
 ("resume 100 entries", json.dumps({"op":"subscribe","topics":["ra"],"resume":{"x%d"%i:1 for i in range(100)}})),
 ("unknown op", '{"op":"hack"}'),
 ("op number", '{"op":1}'),
 ("no op", '{"topics":["a"]}'),
 ("unknown field", '{"op":"subscribe","topics":["u"],"evil":1}'),
 ("publish data obj", '{"op":"publish","topic":"p","data":{"x":1}}'),
 ("publish data num", '{"op":"publish","topic":"p","data":1}'),
 ("publish data null", '{"op":"publish","topic":"p","data":null}'),
 ("publish no data", '{"op":"publish","topic":"p"}'),
 ("publish topic bad", '{"op":"publish","topic":"a b","data":"x"}'),
 ("publish topics list", '{"op":"publish","topic":["p"],"data":"x"}'),
 ("publish ctl chars", '{"op":"publish","topic":"p","data":"\\u0000\\u001f\\ud83d\\ude00"}'),
 ("publish lone surrogate data", '{"op":"publish","topic":"p","data":"\\udc00"}'),
 ("refresh no auth", '{"op":"refresh","token":"x"}'),
 ("unsubscribe not held", '{"op":"unsubscribe","topics":["never"]}'),
 ("too large", '{"op":"subscribe","topics":["'+"a"*5000+'"]}'),
 ("big number", '{"op":"subscribe","topics":["a"],"resume":{"a":' + "9"*3000 + '}}'),
]
async def main():
    async with websockets.connect("ws://127.0.0.1:18080/ws?topics=healthy", max_size=None) as watch:
        await watch.recv()
        async with websockets.connect(URL, max_size=None) as ws:
            for name, msg in cases:
                try:
                    await ws.send(msg)
                    replies=[]
                    try:
                        while True:
                            r = await asyncio.wait_for(ws.recv(), 0.3)
                            replies.append(r if isinstance(r,str) else repr(r))
                            if len(replies)>=3: break
                    except asyncio.TimeoutError:
                        pass
                    shown = [x[:160] for x in replies]
                    print(f"{name:28} -> {len(replies)} {shown}")
                except websockets.ConnectionClosed as e:
                    print(f"{name:28} -> CLOSED {e.rcvd}")
                    ws = await websockets.connect(URL, max_size=None)
        # healthy still gets messages?
        import urllib.request
        req=urllib.request.Request("http://127.0.0.1:19090/publish?topic=healthy", data=b"ok", method="POST")
        print("publish:", urllib.request.urlopen(req).read())
        print("healthy got:", await asyncio.wait_for(watch.recv(), 2))
asyncio.run(main())
