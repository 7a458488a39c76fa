// The SDK in Node against a real holdfast, one rung at a time: every message once, in
// order, with the same API on WebSocket, server-sent events and long-poll; a refused
// token stops the client instead of looping.
import test from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Client } from "../dist/index.js";
import { holdfast, publish, until } from "./harness.mjs";

const HMAC = new URL("../../../tests/fixtures/keys/hmac.secret", import.meta.url).pathname;

for (const transport of ["websocket", "sse", "longpoll"]) {
  test(`${transport}: messages arrive once, in order, text and binary`, async () => {
    const srv = await holdfast(["--poll-hold", "2", "--client-publish"]);
    try {
      const c = new Client({ url: `http://${srv.addr}`, transports: [transport], WebSocket });
      const got = [];
      c.on("message", (m) => got.push(m));
      c.subscribe("news");
      await c.connect();
      assert.equal(c.transport, transport);
      // The subscription is live once the server answered it (a poll is live from the start).
      await until("subscribed", async () => transport === "longpoll" || c.positionsOf().news !== undefined);
      for (let i = 1; i <= 20; i++) await publish(srv.admin, "news", `m${i}`);
      await fetch(`http://${srv.admin}/publish?topic=news`, {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream" },
        body: new Uint8Array([0, 1, 255]),
      });
      await until("21 messages", () => got.length >= 21);
      assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 21 }, (_, i) => i + 1));
      assert.equal(got[0].data, "m1");
      assert.deepEqual([...got[20].data], [0, 1, 255]);
      assert.ok(got.every((m) => m.transport === transport));
      if (transport === "websocket") {
        assert.equal(await c.publish("news", "from the client"), 22);
      } else {
        await assert.rejects(c.publish("news", "x"), /websocket/);
      }
      c.close();
    } finally {
      await srv.stop();
    }
  });
}

test("a refused token ends the client: no reconnect loop", async () => {
  const srv = await holdfast(["--auth-hmac-secret-file", HMAC]);
  try {
    for (const transports of [["websocket", "sse", "longpoll"], ["sse"], ["longpoll"]]) {
      const c = new Client({ url: `http://${srv.addr}`, token: "not-a-token", transports, WebSocket, openTimeoutMs: 1000 });
      c.subscribe("t");
      const errors = [];
      c.on("error", (e) => errors.push(e.message));
      await assert.rejects(c.connect(), /token/);
      assert.equal(c.state, "closed", `${transports}`);
      assert.ok(errors.some((e) => /token/.test(e)), `${errors}`);
    }
  } finally {
    await srv.stop();
  }
});
