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
      // Publishing works on every rung (over the socket, or POST /publish), text and bytes,
      // and the publisher receives its own messages like anyone else.
      assert.equal(await c.publish("news", "from the client"), 22);
      assert.equal(await c.publish("news", new Uint8Array([7, 8])), 23);
      await until("23 messages", () => got.length >= 23);
      assert.equal(got[21].data, "from the client");
      assert.deepEqual([...got[22].data], [7, 8]);
      // Refusals reject with the server's reason (an invalid topic).
      await assert.rejects(c.publish("bad topic", "x"), /topic_bad_character/);
      c.close();
    } finally {
      await srv.stop();
    }
  });
}

test("each reply answers its own request: a refused subscribe or an oversized publish rejects only itself", async () => {
  const srv = await holdfast(["--client-publish", "--max-control-message", "256", "--max-topic-len", "16"]);
  const c = new Client({ url: `http://${srv.addr}`, transports: ["websocket"], WebSocket });
  try {
    const errors = [];
    c.on("error", (e) => errors.push(e.message));
    await c.connect();
    // Sent back to back: the subscribe's refusal and the big publish's (refused unread, so
    // without an id) arrive while later publishes still wait for theirs.
    const first = c.publish("news", "small");
    c.subscribe("a.very.long.topic.name");
    const big = c.publish("news", "x".repeat(300));
    const last = c.publish("news", "also small");
    assert.equal(await first, 1);
    await assert.rejects(big, /control_message_too_large \(max 256 bytes\)/);
    assert.equal(await last, 2);
    await until("the subscribe's refusal", () => errors.length > 0);
    assert.match(errors[0], /^a\.very\.long\.topic\.name: topic_too_long \(max 16 bytes\)/);
    assert.equal(errors.length, 1, `${errors}`);
  } finally {
    c.close();
    await srv.stop();
  }
});

test("a topic the server refused is dropped, so the next connection is not refused whole", async () => {
  const args = ["--max-topic-len", "16"];
  let srv = await holdfast(args);
  const addr = srv.addr;
  const c = new Client({ url: `http://${addr}`, transports: ["websocket"], WebSocket });
  try {
    assert.throws(() => c.subscribe("bad topic"), TypeError, "not a name: refused at once");
    const errors = [];
    const got = [];
    c.on("error", (e) => errors.push(e.message));
    c.on("message", (m) => got.push(m.data));
    c.subscribe("news");
    await c.connect();
    c.subscribe("a.very.long.topic.name");
    await until("the refusal", () => errors.length > 0);
    assert.match(errors[0], /topic_too_long/);
    // The server goes and another takes its address: the client reconnects with its topics
    // in the request. Kept, the refused one made that request a 400, for ever.
    await srv.stop();
    srv = await holdfast(args, { listen: addr });
    await until("reconnected", async () => {
      await publish(srv.admin, "news", "after");
      await new Promise((r) => setTimeout(r, 100));
      return got.includes("after");
    });
    assert.equal(c.state, "open");
  } finally {
    c.close();
    await srv.stop();
  }
});

test("presence and publish grants over the HTTP API, with a token refreshed once", async () => {
  const { createHmac } = await import("node:crypto");
  const { readFileSync } = await import("node:fs");
  const secret = readFileSync(HMAC, "utf8").trim();
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const jwt = (sub, exp) => {
    const h = b64({ alg: "HS256", typ: "JWT" });
    const p = b64({ sub, exp, aud: "holdfast", channels: { subscribe: ["presence:*", "chat.*"], publish: ["chat.*"] } });
    return `${h}.${p}.${createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url")}`;
  };
  const srv = await holdfast(["--auth-hmac-secret-file", HMAC, "--client-publish"]);
  try {
    let minted = 0;
    // The first token has expired: the first call is refused, the callback mints a fresh one.
    const token = () => jwt("ann", minted++ === 0 ? 1 : Math.floor(Date.now() / 1000) + 600);
    const c = new Client({ url: `http://${srv.addr}`, token, transports: ["sse"], client: "sdk-test" });
    const a = new Client({ url: `http://${srv.addr}`, token: jwt("bob", Math.floor(Date.now() / 1000) + 600), transports: ["longpoll"] });
    assert.equal(await c.publish("chat.x", "hi"), 1, "an expired token is refreshed once");
    assert.ok(minted >= 2);
    c.subscribe("presence:lobby");
    await c.connect();
    await until("ann is present", async () => (await a.presence("presence:lobby")).connections === 1);
    const p = await a.presence("presence:lobby");
    assert.equal(p.members[0].user, "ann");
    assert.equal(p.members[0].client, "sdk-test");
    assert.equal(((await a.presence("presence:lobby", { members: false })).members ?? []).length, 0);
    await assert.rejects(a.publish("news.x", "no grant"), (e) => e.status === 403);
    await assert.rejects(a.presence("chat.x"), (e) => e.status === 404);
    c.close();
  } finally {
    await srv.stop();
  }
});

test("a refused token ends the client: no reconnect loop", async () => {
  const srv = await holdfast(["--auth-hmac-secret-file", HMAC]);
  try {
    for (const transports of [["websocket", "sse", "longpoll"], ["websocket"], ["sse"], ["longpoll"]]) {
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
