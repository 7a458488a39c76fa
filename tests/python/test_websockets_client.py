"""End-to-end tests with Python's `websockets`, a second independent client library.

Run by `.ci/test` after the release build; HOLDFAST_BIN points at the server binary.
"""
import asyncio
import os
import subprocess

import pytest
import websockets

BIN = os.environ.get("HOLDFAST_BIN", "target/release/holdfast")


class Server:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "HOLDFAST_LOG": "warn"},
        )
        self.addr = self.admin = None
        for _ in range(10):  # two lines expected; bounded
            line = self.proc.stdout.readline().strip()
            if line.startswith("admin listening on "):
                self.admin = line.rsplit(" ", 1)[1]
            elif line.startswith("listening on "):
                self.addr = line.rsplit(" ", 1)[1]
            if self.addr and self.admin:
                break
        assert self.addr, "server did not start"

    def url(self, path="/echo"):
        return f"ws://{self.addr}{path}"

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_echo_text_binary_and_fragments(server):
    async def go():
        async with websockets.connect(server.url()) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            await ws.send(["frag", "mented"])  # a fragmented message
            assert await ws.recv() == "fragmented"
            big = os.urandom(1 << 19)
            await ws.send(big)
            assert await ws.recv() == big
            pong = await ws.ping(b"x")
            await pong

    run(go())


def test_client_close_code_is_echoed(server):
    async def go():
        ws = await websockets.connect(server.url())
        await ws.close(code=4321, reason="bye")
        assert ws.close_code == 4321  # the code the server echoed

    run(go())


def test_oversize_message_gets_1009():
    s = Server("--max-message", "4096")
    try:

        async def go():
            async with websockets.connect(s.url(), max_size=None) as ws:
                await ws.send("a" * 5000)
                with pytest.raises(websockets.ConnectionClosed) as e:
                    await ws.recv()
                assert e.value.rcvd.code == 1009

        run(go())
    finally:
        s.stop()


def test_unknown_path_is_refused_with_404(server):
    async def go():
        with pytest.raises(websockets.InvalidStatus) as e:
            await websockets.connect(server.url("/nope"))
        assert e.value.response.status_code == 404

    run(go())


TLS = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tls")


def test_wss_with_openssl_over_tls12_and_tls13():
    """Python's ssl module (OpenSSL): a third TLS stack against the server's rustls
    handshake and its own record layer."""
    import ssl

    s = Server("--tls-cert", os.path.join(TLS, "server.pem"),
               "--tls-key", os.path.join(TLS, "server.key"))
    try:
        port = s.addr.rsplit(":", 1)[1]
        url = f"wss://localhost:{port}/echo"

        async def go():
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                ctx = ssl.create_default_context(cafile=os.path.join(TLS, "ca.pem"))
                ctx.minimum_version = ctx.maximum_version = version
                for _ in range(2):
                    async with websockets.connect(url, ssl=ctx, max_size=None) as ws:
                        big = "x" * 100_000  # several records each way
                        await ws.send(big)
                        assert await ws.recv() == big
                        await ws.send(b"\x00\x01")
                        assert await ws.recv() == b"\x00\x01"
                        tls = ws.transport.get_extra_info("ssl_object")
                        assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                                 ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
                        assert tls.selected_alpn_protocol() in (None, "http/1.1")

        run(go())
    finally:
        s.stop()
