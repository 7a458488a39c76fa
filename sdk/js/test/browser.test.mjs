// The SDK in headless Chromium (Debian's chromium, driven by puppeteer-core) against real
// holdfast nodes on a real Redis backplane, through a test proxy: messages arrive in order
// across a drain and a server restart, with nothing lost or repeated — over WebSocket; over
// server-sent events when the proxy strips Upgrade; over long-poll when it also buffers
// streaming responses. And clients drained at once come back spread over the drain window.
import test from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import puppeteer from "puppeteer-core";
import { holdfast, post, proxy, publish, redis, sleep, until } from "./harness.mjs";

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);

async function browser() {
  return puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

/** Publish `from..=to` to whichever node's admin answers (a publisher that retries). */
async function publishRange(admins, topic, from, to) {
  for (let i = from; i <= to; i++) {
    for (let tries = 0; ; tries++) {
      try {
        const r = await publish(admins()[tries % admins().length], topic, `m${i}`);
        assert.equal(r.seq, i, "the fleet numbers every message once");
        break;
      } catch (e) {
        if (tries > 200) throw e;
        await sleep(25);
      }
    }
  }
}

/** How many connections of `label` (the metric's transport) a node holds open. */
async function openOn(admin, label) {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const m = text.match(new RegExp(`^holdfast_open_connections\\{transport="${label}"\\} (\\d+)$`, "m"));
  return m ? Number(m[1]) : 0;
}

// A poll is held longer than any step between the last message and a drain (a restart
// included): a hold that ran out just before the drain would send the next poll through the
// proxy to the other node without a reconnect, and the drain would move nothing.
const NODE_ARGS = ["--drain-window", "1", "--drain-grace", "1", "--poll-hold", "25", "--client-publish"];

for (const [mode, expected, label] of [
  ["pass", "websocket", "websocket"],
  ["strip", "sse", "sse"],
  ["buffer", "longpoll", "poll"],
]) {
  test(`through a ${mode} proxy the SDK uses ${expected}, and a drain and a restart lose nothing`, { timeout: 120000 }, async () => {
    const r = await redis();
    const nodes = {};
    nodes.a = await holdfast(["--backplane", r.url, "--node-id", "A", ...NODE_ARGS]);
    nodes.b = await holdfast(["--backplane", r.url, "--node-id", "B", ...NODE_ARGS]);
    const addrs = () => [nodes.a, nodes.b].filter((n) => n && n.exited === undefined).map((n) => n.addr);
    const admins = () => [nodes.a, nodes.b].filter((n) => n && n.exited === undefined).map((n) => n.admin);
    const px = await proxy(() => [nodes.a.addr, nodes.b.addr], mode);
    const b = await browser();
    // Every client is on `node` (for long-poll: its poll is held there, not between polls,
    // when a poll on its way could reach the other node without a reconnect).
    const allOn = (node) => until(`3 ${label} clients on a node`, async () => (await openOn(node.admin, label)) === 3);
    try {
      const page = await b.newPage();
      await page.goto(`${px.url}/test/test/page.html`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate((t) => window.start(3, t, { openTimeoutMs: 1500 }), "live");
      await page.waitForFunction((t) => window.results.every((r) => r.client.state === "open" && r.client.transport === t), { timeout: 20000 }, expected);
      // Subscriptions are answered before publishing starts (a poll is live at once).
      await sleep(300);
      await publishRange(admins, "live", 1, 30);
      await page.waitForFunction(() => window.results.every((r) => r.seqs.length >= 30), { timeout: 20000 });
      // Drain A: its clients reconnect through the proxy to B and resume.
      await allOn(nodes.a);
      assert.equal(await post(nodes.a.admin, "/drain"), 202);
      await nodes.a.exit();
      nodes.a.exited = 0;
      await publishRange(admins, "live", 31, 60);
      await page.waitForFunction(() => window.results.every((r) => r.seqs.length >= 60), { timeout: 30000 });
      // Restart A (a new process on the same port), then drain B: clients move back to A.
      await allOn(nodes.b);
      nodes.a = await holdfast(["--backplane", r.url, "--node-id", "A2", ...NODE_ARGS], { listen: nodes.a.addr });
      assert.equal(await post(nodes.b.admin, "/drain"), 202);
      await nodes.b.exit();
      nodes.b.exited = 0;
      await publishRange(admins, "live", 61, 90);
      await page.waitForFunction(() => window.results.every((r) => r.seqs.length >= 90), { timeout: 30000 });
      // The page publishes on its rung (text over the socket on WebSocket, else POST
      // /publish through the same proxy; bytes always by POST), numbered by the fleet.
      const own = await page.evaluate(async () => {
        const c = window.results[0].client;
        return [await c.publish("live", "from the page"), await c.publish("live", new Uint8Array([1, 2]))];
      });
      assert.deepEqual(own, [91, 92]);
      await page
        .waitForFunction(() => window.results.every((r) => r.seqs.length >= 92), { timeout: 30000 })
        .catch(async (e) => {
          const s = await page.evaluate(() => window.summary());
          throw new Error(`${e.message}: ${JSON.stringify(s.map((c) => [c.seqs.slice(-4), c.transport, c.errors]))}`);
        });
      const s = await page.evaluate(() => window.summary());
      for (const c of s) {
        assert.deepEqual(c.seqs, Array.from({ length: 92 }, (_, i) => i + 1), "every message once, in order");
        assert.deepEqual(c.transports, [expected]);
        assert.equal(c.resets + c.gaps, 0, JSON.stringify(c));
        assert.ok(c.reopened.length >= 2, "it reconnected after each drain");
      }
    } finally {
      await b.close();
      px.close();
      await Promise.all([nodes.a?.stop(), nodes.b?.stop()]);
      r.stop();
    }
  });
}

test("a page on another origin streams, publishes and asks presence (CORS)", { timeout: 60000 }, async () => {
  const srv = await holdfast(["--client-publish"]);
  const px = await proxy(() => [srv.addr], "pass");
  const b = await browser();
  try {
    const page = await b.newPage();
    // The page's origin is the proxy; the SDK talks to the node's own port: another origin.
    await page.goto(`${px.url}/test/test/page.html`);
    await page.waitForFunction(() => window.ready === true);
    const out = await page.evaluate(async (url) => {
      const { Client } = await import("/test/dist/index.js");
      const c = new Client({ url, transports: ["sse"], probeUpMs: 0, client: "page" });
      const got = [];
      c.on("message", (m) => got.push(m));
      c.subscribe("presence:x");
      await c.connect();
      while (c.positionsOf()["presence:x"] === undefined) await new Promise((r) => setTimeout(r, 20));
      const seqs = [await c.publish("presence:x", "text"), await c.publish("presence:x", new Uint8Array([9]))];
      const who = await c.presence("presence:x");
      let refused = null;
      await c.presence("not-presence").catch((e) => (refused = e.status));
      // A request with a non-simple header: the browser preflights it, and the server allows it.
      const r = await fetch(`${url}/publish?topic=presence:x`, {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream" },
        body: new Uint8Array([1, 2, 3]),
      });
      const third = (await r.json()).seq;
      while (got.length < 3) await new Promise((r) => setTimeout(r, 20));
      c.close();
      return { seqs, third, who, refused, data: got.map((m) => (typeof m.data === "string" ? m.data : [...m.data])) };
    }, `http://${srv.addr}`);
    assert.deepEqual(out.seqs, [1, 2]);
    assert.equal(out.third, 3);
    assert.equal(out.who.connections, 1);
    assert.equal(out.who.members[0].client, "page");
    assert.equal(out.refused, 404, "a refusal is readable across origins");
    assert.deepEqual(out.data, ["text", [9], [1, 2, 3]]);
  } finally {
    await b.close();
    px.close();
    await srv.stop();
  }
});

test("clients drained at once come back spread over the drain window", { timeout: 120000 }, async () => {
  const r = await redis();
  const window = 3;
  const a = await holdfast(["--backplane", r.url, "--drain-window", String(window), "--drain-grace", "1"]);
  const bNode = await holdfast(["--backplane", r.url]);
  const px = await proxy(() => [a.addr, bNode.addr], "pass");
  const b = await browser();
  try {
    const page = await b.newPage();
    await page.goto(`${px.url}/test/test/page.html`);
    await page.waitForFunction(() => window.ready === true);
    const n = 40;
    // One page holding 40 clients (a browser opens WebSockets to one host one at a time,
    // RFC 6455 §4.1): a long open timeout keeps them all on the WebSocket rung.
    await page.evaluate((n) => window.start(n, "spread", { openTimeoutMs: 20000 }), n);
    await page.waitForFunction((n) => window.results.length === n && window.results.every((r) => r.client.state === "open"), { timeout: 30000 }, n);
    const t0 = Date.now();
    assert.equal(await post(a.admin, "/drain"), 202);
    await page.waitForFunction((n) => window.results.every((r) => r.reopened.length >= 1), { timeout: 30000 }, n);
    const s = await page.evaluate(() => window.summary());
    const back = s.map((c) => c.reopened[0] - t0).sort((x, y) => x - y);
    const spread = back[back.length - 1] - back[0];
    // The server spreads its 1012s over the window and gives each a hint uniform over the
    // window; the SDK waits the hint: reconnects land over about twice the window.
    const buckets = new Array(2 * window).fill(0);
    for (const t of back) buckets[Math.min(2 * window - 1, Math.floor(t / 1000))]++;
    console.log(`# drain spread: ${n} clients back between ${Math.round(back[0])} and ${Math.round(back[back.length - 1])} ms after the drain (window ${window} s); per second: ${buckets.join(", ")}; median ${Math.round(back[n >> 1])} ms`);
    // Spread, not a burst: at least the window between first and last, and no second
    // holding more than 45% of the clients.
    assert.ok(spread >= window * 1000, `spread ${spread} ms`);
    assert.ok(Math.max(...buckets) <= n * 0.45, `${buckets}`);
  } finally {
    await b.close();
    px.close();
    await Promise.all([a.stop(), bNode.stop()]);
    r.stop();
  }
});
