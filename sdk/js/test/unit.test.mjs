// The arithmetic the reconnect and resume logic rests on: backoff caps, full jitter,
// server hints, cursors and positions.
import test from "node:test";
import assert from "node:assert/strict";
import { cap, decodeBinary, delay, hintFromReason, Positions, parseCursor } from "../dist/index.js";

test("the cap doubles from the base up to the maximum", () => {
  const o = { baseMs: 100, maxMs: 5000 };
  assert.deepEqual([0, 1, 2, 3, 5, 6, 50, 5000].map((n) => cap(n, o)), [100, 200, 400, 800, 3200, 5000, 5000, 5000]);
  assert.equal(cap(-3, o), 100);
  assert.equal(cap(0), 250);
  assert.equal(cap(100), 30000);
});

test("full jitter spreads delays uniformly over [0, cap)", () => {
  const o = { baseMs: 1000, maxMs: 1000 };
  assert.equal(delay(0, o, () => 0), 0);
  assert.equal(delay(0, o, () => 0.5), 500);
  assert.equal(delay(0, o, () => 0.999999), 999);
  assert.ok(delay(0, o, () => 1) < 1000, "a random() of 1 stays below the cap");
  // 10,000 clients cut at once: their delays fill the window evenly (no bucket of ten
  // holds more than 13% or less than 7% of them), where plain exponential backoff would
  // bring them all back at the same instant.
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const buckets = new Array(10).fill(0);
  for (let i = 0; i < 10000; i++) buckets[Math.floor(delay(3, { baseMs: 125, maxMs: 1000 }, rnd) / 100)]++;
  for (const b of buckets) assert.ok(b > 700 && b < 1300, `${buckets}`);
});

test("a drain's close reason carries the reconnect hint", () => {
  assert.equal(hintFromReason('{"reason":"draining","reconnect_after_ms":1234}'), 1234);
  assert.equal(hintFromReason("going away"), undefined);
  assert.equal(hintFromReason('{"reconnect_after_ms":-1}'), undefined);
  assert.equal(hintFromReason(""), undefined);
});

test("cursors parse, and bad entries are skipped", () => {
  assert.deepEqual(parseCursor("a:4@e1,b:0,c:x@e,:3,d"), [
    ["a", { seq: 4, epoch: "e1" }],
    ["b", { seq: 0 }],
  ]);
  assert.deepEqual(parseCursor("chat:room:7@ff"), [["chat:room", { seq: 7, epoch: "ff" }]]);
});

test("positions drop duplicates, move on gaps, reset on another epoch", () => {
  const p = new Positions();
  assert.equal(p.onSubscribed("t", 10, "e1"), false);
  assert.equal(p.onMessage("t", 11), "deliver");
  assert.equal(p.onMessage("t", 11), "duplicate");
  assert.equal(p.onMessage("t", 9), "duplicate");
  p.onGap("t", 15);
  assert.equal(p.onMessage("t", 15), "duplicate");
  assert.equal(p.onMessage("t", 16), "deliver");
  assert.equal(p.cursor(["t", "none"]), "t:16@e1");
  // Resumed and recovered: keep the position (the replay follows).
  assert.equal(p.onSubscribed("t", 20, "e1", true), false);
  assert.equal(p.get("t").seq, 16);
  // Not recovered in another epoch: reset to the server's newest number.
  assert.equal(p.onSubscribed("t", 3, "e2", false), true);
  assert.deepEqual(p.get("t"), { seq: 3, epoch: "e2" });
  // A cursor from the server moves a topic forward, never back.
  p.adopt("t:2@e2,u:5@e9");
  assert.deepEqual(p.get("t"), { seq: 3, epoch: "e2" });
  assert.deepEqual(p.get("u"), { seq: 5, epoch: "e9" });
  p.onReset("u", "e10", 0);
  assert.equal(p.onMessage("u", 1), "deliver");
});

test("binary deliveries decode, and frames too short to be one are refused, not thrown", () => {
  const frame = new Uint8Array([2, 0x68, 0x69, 0, 0, 0, 0, 0, 0, 1, 2, 7, 8]);
  const m = decodeBinary(frame);
  assert.deepEqual([m.topic, m.seq, [...m.data]], ["hi", 258, [7, 8]]);
  // A view into a larger buffer (as a WebSocket's ArrayBuffer may be) reads its own bytes.
  const inner = new Uint8Array([9, 9, ...frame]).subarray(2);
  assert.equal(decodeBinary(inner).seq, 258);
  const direct = decodeBinary(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 42]));
  assert.deepEqual([direct.topic, direct.seq, [...direct.data]], ["", 0, [42]]);
  for (const short of [[], [0], [5, 1, 2, 3], [2, 0x68, 0x69, 0, 0, 0, 0, 0, 0, 1]]) {
    assert.equal(decodeBinary(new Uint8Array(short)), null, `${short}`);
  }
});
