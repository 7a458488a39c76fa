// Real processes for the SDK's tests: holdfast (the release binary), redis-server, and a
// test proxy in front of holdfast that can strip Upgrade or buffer streaming responses —
// what corporate proxies do — and serves the browser test page on the same origin.
import { spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "..");
export const bin = process.env.HOLDFAST_BIN ?? path.resolve(root, "../../target/release/holdfast");

// Every process started here dies with the test process, whatever happens.
const children = new Set();
process.on("exit", () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {}
  }
});
function track(p) {
  children.add(p);
  p.on("exit", () => children.delete(p));
  return p;
}

function lines(stream, onLine) {
  let buf = "";
  stream.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/** Start `holdfast serve` with `args`; resolves with its addresses and a stop function. */
export function holdfast(args = [], { listen = "127.0.0.1:0" } = {}) {
  return new Promise((resolve, reject) => {
    const p = track(spawn(bin, ["serve", "--listen", listen, "--admin", "127.0.0.1:0", "--workers", "1", ...args], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, HOLDFAST_LOG: "warn" },
    }));
    const out = { addr: null, admin: null, proc: p };
    const t = setTimeout(() => reject(new Error("holdfast did not start")), 10000);
    p.on("exit", (code) => {
      out.exited = code;
      reject(new Error(`holdfast exited: ${code}`));
    });
    lines(p.stdout, (l) => {
      if (l.startsWith("admin listening on ")) out.admin = l.slice(19).trim();
      else if (l.startsWith("listening on ")) out.addr = l.slice(13).trim();
      if (out.addr && out.admin && !out.ready) {
        out.ready = true;
        clearTimeout(t);
        out.stop = () =>
          new Promise((r) => {
            if (p.exitCode !== null) return r();
            p.once("exit", () => r());
            p.kill("SIGKILL");
          });
        out.exit = () => new Promise((r) => (p.exitCode !== null ? r() : p.once("exit", () => r())));
        resolve(out);
      }
    });
  });
}

/** POST /publish on an admin address; the answer's JSON (throws on a refusal). */
export async function publish(admin, topic, body) {
  const r = await fetch(`http://${admin}/publish?topic=${topic}`, { method: "POST", body });
  if (r.status !== 200) throw new Error(`publish ${r.status}: ${await r.text()}`);
  return r.json();
}

export async function post(admin, pathAndQuery) {
  const r = await fetch(`http://${admin}${pathAndQuery}`, { method: "POST" });
  return r.status;
}

/** A redis-server on a free port, no persistence. */
export async function redis() {
  const port = await freePort();
  const p = track(
    spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    }),
  );
  for (let i = 0; i < 200; i++) {
    if (await canConnect(port)) return { url: `redis://127.0.0.1:${port}`, stop: () => p.kill("SIGKILL") };
    await sleep(25);
  }
  p.kill("SIGKILL");
  throw new Error("redis-server did not start");
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const c = connect(port, "127.0.0.1");
    c.on("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.on("error", () => resolve(false));
  });
}

/** Wait (bounded) until `f()` is true. */
export async function until(what, f, ms = 15000) {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json" };

/**
 * A proxy on a free port in front of `backends()` (a function returning host:port list,
 * tried in order until one accepts), in `mode`: "pass" (a plain TCP relay), "strip" (drops
 * Upgrade and Connection: upgrade, as proxies that cannot carry WebSockets do) or "buffer"
 * (strip, and hold every response until the backend closes it: streaming responses never
 * arrive). Paths under /test/ are served from the SDK's directory (the test page, dist/).
 */
export async function proxy(backends, mode = "pass") {
  const server = createServer((client) => {
    let head = Buffer.alloc(0);
    const onData = async (d) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      client.off("data", onData);
      client.pause();
      let text = head.subarray(0, end).toString("latin1");
      const rest = head.subarray(end + 4);
      const [method, target] = text.split(" ");
      if (method === "GET" && target.startsWith("/test/")) {
        const file = path.join(root, target.slice(6).split("?")[0]);
        try {
          const body = await readFile(file);
          const type = TYPES[path.extname(file)] ?? "application/octet-stream";
          client.write(`HTTP/1.1 200 OK\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
          client.end(body);
        } catch {
          client.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        return;
      }
      if (mode !== "pass") {
        text = text
          .split("\r\n")
          .filter((l) => !/^upgrade:/i.test(l) && !/^connection:/i.test(l))
          .join("\r\n");
      }
      if (mode === "buffer") {
        // It buffers each answer until its upstream connection ends, so (as RFC 9112 §9.3
        // asks of an intermediary that does not keep connections) it says so upstream:
        // otherwise a kept-alive answer would wait for the server's idle close.
        text += "\r\nConnection: close";
      }
      const upstream = await connectFirst(backends());
      if (!upstream) return client.destroy();
      upstream.write(text + "\r\n\r\n");
      if (rest.length) upstream.write(rest);
      client.resume();
      client.pipe(upstream);
      if (mode === "buffer") {
        const parts = [];
        upstream.on("data", (c) => parts.push(c));
        upstream.on("end", () => client.end(Buffer.concat(parts)));
      } else {
        upstream.pipe(client);
      }
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      client.on("close", () => upstream.destroy());
    };
    client.on("data", onData);
    client.on("error", () => {});
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => server.close() };
}

function connectFirst(list) {
  return new Promise((resolve) => {
    const next = (i) => {
      if (i >= list.length) return resolve(null);
      const [host, port] = list[i].split(":");
      const c = connect(Number(port), host);
      c.once("connect", () => resolve(c));
      c.once("error", () => next(i + 1));
    };
    next(0);
  });
}
