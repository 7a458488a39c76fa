/**
 * The Holdfast client: one API over a transport ladder — WebSocket, then server-sent
 * events, then HTTP long-poll — with per-topic positions (so every reconnect resumes where
 * it left off and a drain loses nothing), reconnects with exponential backoff and full
 * jitter (or the server's hint), no reconnect loop on authentication failures, and probes
 * back up the ladder while on a lower rung. No runtime dependencies: it runs in browsers
 * and in Node ≥ 20 (give `WebSocket` there: Node 20 has none built in).
 */
import { delay, hintFromReason, type BackoffOptions } from "./backoff.js";
import { Positions } from "./cursor.js";

export { cap, delay, hintFromReason, type BackoffOptions } from "./backoff.js";
export { Positions, parse as parseCursor, type Position } from "./cursor.js";

/** A rung of the ladder. */
export type Transport = "websocket" | "sse" | "longpoll";

/**
 * A binary delivery: `[topic length][topic][seq, u64 big-endian][data]` (a direct message
 * has no topic and seq 0). Null for a frame too short to be one (a frame from another
 * endpoint, or cut): it threw a RangeError out of the socket's handler.
 */
export function decodeBinary(b: Uint8Array): { topic: string; seq: number; data: Uint8Array } | null {
  const tlen = b[0];
  if (tlen === undefined || b.length < 9 + tlen) return null;
  const topic = new TextDecoder().decode(b.subarray(1, 1 + tlen));
  const seq = Number(new DataView(b.buffer, b.byteOffset + 1 + tlen, 8).getBigUint64(0));
  return { topic, seq, data: b.subarray(9 + tlen) };
}

/** The client's state. */
export type State = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface Options {
  /** The server: `http(s)://host:port` (WebSocket URLs are derived from it). */
  url: string;
  /** A token, or a function that returns a fresh one (called again after a 4401). */
  token?: string | (() => string | Promise<string>);
  /** The ladder, highest first (default: all three). */
  transports?: Transport[];
  /** Reconnect backoff (full jitter). */
  backoff?: BackoffOptions;
  /** Random numbers in [0, 1) (tests make the jitter deterministic). */
  random?: () => number;
  /** A rung that shows no sign of life within this is given up for the next, ms (3000). */
  openTimeoutMs?: number;
  /** While on a lower rung, try the top one again after this, ms (30 000; 0: never). */
  probeUpMs?: number;
  /** What the client says it is (`client=`, shown in presence). */
  client?: string;
  /** A WebSocket constructor (default: the global one). */
  WebSocket?: unknown;
  /** A fetch function (default: the global one). */
  fetch?: typeof fetch;
}

/** Who is on a presence topic. */
export interface Presence {
  topic: string;
  /** Connections subscribed, on every node. */
  connections: number;
  /** Distinct users among them. */
  users: number;
  /** The members (unless counting only). */
  members?: { node: string; conn: string; user?: string; client?: string; since: number }[];
}

/** A message of a topic. */
export interface Message {
  topic: string;
  seq: number;
  /** Text, or bytes for a binary publish. */
  data: string | Uint8Array;
  /** The rung it arrived on. */
  transport: Transport;
}

type Events = {
  message: Message;
  state: State;
  transport: Transport;
  gap: { topic: string; from: number; to: number };
  reset: { topic: string; epoch: string; seq: number };
  direct: { data: unknown };
  presence: unknown;
  error: Error;
};

type Handler<T> = (v: T) => void;

/** Why a rung ended. */
interface Ended {
  /** It never showed a sign of life (refused, timed out, buffered): try the next rung. */
  failedToOpen?: boolean;
  /** The server's reconnect hint, ms. */
  hintMs?: number;
  /** The token was refused or expired: refresh it (if possible) before reconnecting. */
  auth?: boolean;
  /** Do not reconnect (the user was disconnected, or the token cannot be refreshed). */
  fatal?: string;
}

/** A publish sent over the socket, waiting for its reply. */
interface Pending {
  topic: string;
  /** The control message's length in UTF-8 bytes. */
  bytes: number;
  resolve: (seq: number) => void;
  reject: (e: Error) => void;
}

interface Rung {
  close(): void;
  /** Send a control message (JSON text). */
  send?(text: string): boolean;
  subscribe?(topics: string[]): void;
}

interface Sink {
  opened(): void;
  frame(v: any): void;
  binary(bytes: Uint8Array): void;
  cursor(c: string): void;
  ended(e: Ended): void;
}

/** Base64 to bytes (atob in browsers and Node ≥ 16). */
function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class Client {
  /** The current rung, when open. */
  transport: Transport | null = null;
  /** The client's state. */
  state: State = "idle";
  private readonly o: Required<Pick<Options, "url" | "openTimeoutMs" | "probeUpMs">> & Options;
  private readonly ladder: Transport[];
  private readonly positions = new Positions();
  private readonly topics = new Set<string>();
  private readonly handlers = new Map<keyof Events, Set<Handler<any>>>();
  private rung: Rung | null = null;
  private probe: Rung | null = null;
  private level = 0;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private probeTimer: ReturnType<typeof setTimeout> | null = null;
  private token: string | undefined;
  /**
   * Publishes over the socket waiting for their reply, by the `id` they were sent with (in
   * the order sent). Every reply to a message carries its id, so a publish the broker
   * answers late is not confused with a later refusal.
   */
  private readonly publishes = new Map<number, Pending>();
  /** Subscribes sent over the socket and not yet answered: their topics, by `id`. */
  private readonly subscribing = new Map<number, string[]>();
  /** The `id` of the next control message. */
  private nextId = 1;
  /** Whether this connection's server has named a message in a reply (`id`). */
  private idsEchoed = false;
  /** Reconnect delays used so far (for tests and diagnostics). */
  readonly delays: number[] = [];

  constructor(options: Options) {
    this.o = { openTimeoutMs: 3000, probeUpMs: 30_000, ...options };
    this.ladder = options.transports ?? ["websocket", "sse", "longpoll"];
    if (this.ladder.length === 0) throw new Error("no transports");
    if (typeof options.token === "string") this.token = options.token;
  }

  /** Listen to an event; returns a function that stops listening. */
  on<K extends keyof Events>(event: K, fn: Handler<Events[K]>): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  private emit<K extends keyof Events>(event: K, v: Events[K]): void {
    for (const fn of this.handlers.get(event) ?? []) {
      try {
        fn(v);
      } catch (e) {
        if (event !== "error") this.emit("error", e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  private setState(s: State): void {
    if (this.state !== s) {
      this.state = s;
      this.emit("state", s);
    }
  }

  /** The position of every topic: what a reconnect resumes from. */
  positionsOf(): Record<string, { seq: number; epoch?: string }> {
    return Object.fromEntries(this.positions.entries());
  }

  /** Connect (resolves when a rung is open, or rejects on a fatal refusal). */
  connect(): Promise<void> {
    if (this.state === "closed") throw new Error("closed");
    if (this.state === "idle") {
      this.setState("connecting");
      void this.start(0);
    }
    return new Promise((resolve, reject) => {
      if (this.state === "open") return resolve();
      let why: Error | undefined;
      const offErr = this.on("error", (e) => (why = e));
      const offState = this.on("state", (s) => {
        if (s === "open" || s === "closed") {
          offState();
          offErr();
          if (s === "open") resolve();
          else reject(why ?? new Error("closed"));
        }
      });
    });
  }

  /**
   * Subscribe to `topic` (resuming from its position if it has one). A name that is no
   * topic name (empty, or a character outside `A-Z a-z 0-9 . _ - : /`) throws. A topic the
   * server refuses for good (no grant, too long) is an `error` event, and is dropped: kept,
   * it would be in every reconnect's request, which the server refuses whole.
   */
  subscribe(topic: string): void {
    if (!TOPIC_NAME.test(topic)) throw new TypeError(`not a topic name: ${JSON.stringify(topic)}`);
    if (this.topics.has(topic)) return;
    this.topics.add(topic);
    if (!this.rung) return;
    if (this.rung.subscribe) {
      this.rung.subscribe([topic]);
    } else {
      this.restart(); // SSE and long-poll take their topics from the request
    }
  }

  /** Stop receiving `topic` (its position is forgotten). */
  unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return;
    this.positions.delete(topic);
    if (this.rung?.send) this.rung.send(JSON.stringify({ op: "unsubscribe", topics: [topic], id: this.nextId++ }));
    else if (this.rung) this.restart();
  }

  /**
   * Publish to `topic` (the server must run with `--client-publish`, and the token must
   * grant publishing there); resolves with the message's number. Text goes over the
   * WebSocket when that is the rung; bytes, and everything on the lower rungs, go by
   * `POST /publish` on the same port — the same number, the same grants.
   */
  publish(topic: string, data: string | Uint8Array): Promise<number> {
    if (typeof data === "string" && this.transport === "websocket" && this.rung?.send) {
      return new Promise((resolve, reject) => {
        const id = this.nextId++;
        const text = JSON.stringify({ op: "publish", topic, data, id });
        this.publishes.set(id, { topic, bytes: utf8Length(text), resolve, reject });
        this.rung!.send!(text);
      });
    }
    const binary = typeof data !== "string";
    return this.call("POST", "/publish", { topic, ...(binary ? { binary: "1" } : {}) }, data).then(
      (v) => v.seq as number,
    );
  }

  /**
   * Who is on a presence topic, across the fleet: `{topic, connections, users, members}`
   * (`members: false` counts only). Needs a token that may subscribe to the topic.
   */
  presence(topic: string, options: { members?: boolean } = {}): Promise<Presence> {
    const q: Record<string, string> = { topic };
    if (options.members === false) q.members = "0";
    return this.call("GET", "/presence", q) as Promise<Presence>;
  }

  /**
   * A call on the server's HTTP API (same port, same token). A refused token is refreshed
   * once (when it can be); other refusals reject with the server's reason and status.
   */
  private async call(
    method: "GET" | "POST",
    path: string,
    query: Record<string, string>,
    body?: string | Uint8Array,
  ): Promise<any> {
    const f = this.fetcher();
    for (let attempt = 0; ; attempt++) {
      const token = await this.currentToken(attempt > 0);
      // No custom headers: a simple request, so a browser sends no preflight.
      const r = await f(this.apiUrl(path, query, token), { method, body: body as BodyInit | undefined });
      const text = await r.text();
      let v: any;
      try {
        v = JSON.parse(text);
      } catch {
        v = { reason: text.trim() };
      }
      if (r.status === 401 && attempt === 0 && typeof this.o.token === "function") continue;
      if (r.ok) return v;
      const e = new Error(v.reason ?? `HTTP ${r.status}`) as Error & { status?: number };
      e.status = r.status;
      throw e;
    }
  }

  /** The URL of a call on the HTTP API: `path?query&token=`. */
  private apiUrl(path: string, query: Record<string, string>, token: string | undefined): string {
    const u = new URL(path, this.o.url);
    for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
    if (token) u.searchParams.set("token", token);
    return u.toString().replace(/%3A/g, ":");
  }

  /** Close for good. */
  close(): void {
    this.setState("closed");
    this.clearTimers();
    this.rung?.close();
    this.probe?.close();
    this.rung = this.probe = null;
    this.transport = null;
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.timer = this.probeTimer = null;
  }

  /** Reconnect now on the current rung (the topic list changed). */
  private restart(): void {
    const old = this.rung;
    this.rung = null;
    old?.close();
    void this.start(this.level);
  }

  private async currentToken(refresh: boolean): Promise<string | undefined> {
    const t = this.o.token;
    if (typeof t === "function" && (refresh || this.token === undefined)) {
      this.token = await t();
    }
    return this.token;
  }

  /** Open rung `level` (walking down the ladder while rungs fail to open). */
  private async start(level: number, refreshToken = false): Promise<void> {
    if (this.state === "closed") return;
    let token: string | undefined;
    try {
      token = await this.currentToken(refreshToken);
    } catch (e) {
      return this.fatal(`the token callback failed: ${e}`);
    }
    const name = this.ladder[level];
    let opened = false;
    let settled = false;
    const sink: Sink = {
      opened: () => {
        if (opened || settled) return;
        opened = true;
        this.level = level;
        this.attempt = 0;
        this.transport = name;
        this.emit("transport", name);
        this.setState("open");
        this.scheduleProbe();
      },
      frame: (v) => this.onFrame(v, name),
      binary: (b) => this.onBinary(b, name),
      cursor: (c) => this.positions.adopt(c),
      ended: (e) => {
        if (settled) return;
        settled = true;
        if (this.rung === rung) this.rung = null;
        if (this.state === "closed") return;
        if (e.fatal) return this.fatal(e.fatal);
        if (!opened && e.failedToOpen && level + 1 < this.ladder.length && !e.auth) {
          return void this.start(level + 1); // fall to the next rung at once
        }
        this.transport = null;
        this.failPublishes("the connection closed");
        this.setState("reconnecting");
        const auth = !!e.auth;
        if (auth && typeof this.o.token !== "function") {
          return this.fatal("the token was refused and cannot be refreshed");
        }
        const wait = e.hintMs ?? (auth && this.attempt === 0 ? 0 : delay(this.attempt, this.o.backoff, this.o.random));
        this.attempt++;
        this.delays.push(wait);
        // Back up the ladder: the rung that worked last, or the top after a failure.
        const next = opened ? this.level : 0;
        this.timer = setTimeout(() => void this.start(next, auth), wait);
      },
    };
    const rung = this.open(name, sink, token);
    this.rung = rung;
  }

  private fatal(why: string): void {
    this.emit("error", new Error(why));
    this.close();
  }

  private failPublishes(why: string): void {
    for (const p of this.publishes.values()) p.reject(new Error(why));
    this.publishes.clear();
    this.subscribing.clear(); // the next connection asks for every topic again
    this.idsEchoed = false; // the next connection may reach another server
  }

  /**
   * A reply to one of the subscribes sent over the socket: true when it was a refusal, now
   * handled. A refusal that will pass (`rate_limited`, the server full or busy) sends the
   * subscribe again a second later; any other drops its topics (one named by the refusal,
   * or every topic of the message) and is an `error` event.
   */
  private answered(v: any): boolean {
    const topics = typeof v.id === "number" ? this.subscribing.get(v.id) : undefined;
    if (!topics) return false;
    if (v.type === "subscribed") {
      const i = topics.indexOf(v.topic);
      if (i >= 0) topics.splice(i, 1);
      if (topics.length === 0) this.subscribing.delete(v.id);
      return false;
    }
    let refused: string[];
    if (v.topic) {
      refused = [v.topic];
      const i = topics.indexOf(v.topic);
      if (i >= 0) topics.splice(i, 1);
    } else {
      refused = topics.splice(0);
    }
    if (topics.length === 0) this.subscribing.delete(v.id);
    const reason: string = v.reason ?? "server error";
    if (/^(rate_limited|server_topic_limit|overloaded|handing_over|backplane_unavailable)\b/.test(reason)) {
      const rung = this.rung;
      setTimeout(() => {
        const again = refused.filter((t) => this.topics.has(t));
        if (this.rung === rung && rung?.subscribe && again.length) rung.subscribe(again);
      }, 1000);
      return true;
    }
    for (const t of refused) {
      this.topics.delete(t);
      this.positions.delete(t);
    }
    this.emit("error", new Error(`${refused.join(",")}: ${reason}`));
    return true;
  }

  /**
   * The publish a reply without an `id` answers. The server names the message in every
   * reply it can; one it could not read as a message (`control_message_too_large`, which
   * it refuses unread) is the oldest publish longer than the limit it states. A server
   * from before ids answered in order per topic, and refused the oldest.
   */
  private unnamed(v: any): number | undefined {
    const entries = [...this.publishes.entries()];
    if (v.type === "published") return entries.find(([, p]) => p.topic === v.topic)?.[0];
    const max = /^control_message_too_large \(max (\d+) bytes\)/.exec(v.reason ?? "");
    if (max) return entries.find(([, p]) => p.bytes > Number(max[1]))?.[0];
    return this.idsEchoed ? undefined : entries[0]?.[0];
  }

  /** While on a lower rung, try the top one now and then; switch when it opens. */
  private scheduleProbe(): void {
    if (this.probeTimer) clearTimeout(this.probeTimer);
    if (this.level === 0 || this.o.probeUpMs <= 0) return;
    this.probeTimer = setTimeout(async () => {
      if (this.state !== "open" || this.level === 0) return;
      const token = await this.currentToken(false).catch(() => undefined);
      const top = this.ladder[0];
      let up: Rung | null = null;
      const sink: Sink = {
        opened: () => {
          // The top rung works: it takes over (duplicates during the overlap are dropped
          // by sequence number).
          const old = this.rung;
          this.rung = up;
          this.probe = null;
          this.level = 0;
          this.transport = top;
          this.emit("transport", top);
          old?.close();
        },
        frame: (v) => this.onFrame(v, top),
        binary: (b) => this.onBinary(b, top),
        cursor: (c) => this.positions.adopt(c),
        ended: (e) => {
          if (this.rung === up) {
            // It took over and then ended: reconnect as for any rung.
            this.rung = null;
            this.transport = null;
            this.setState("reconnecting");
            const wait = e.hintMs ?? delay(this.attempt++, this.o.backoff, this.o.random);
            this.delays.push(wait);
            this.timer = setTimeout(() => void this.start(0), wait);
          } else {
            this.probe = null;
            this.scheduleProbe();
          }
        },
      };
      up = this.open(top, sink, token);
      this.probe = up;
    }, this.o.probeUpMs);
  }

  private base(path: string, token: string | undefined, extra: Record<string, string>): string {
    const u = new URL(path, this.o.url);
    const topics = [...this.topics];
    if (topics.length) u.searchParams.set("topics", topics.join(","));
    for (const [k, v] of Object.entries(extra)) if (v) u.searchParams.set(k, v);
    if (token) u.searchParams.set("token", token);
    if (this.o.client) u.searchParams.set("client", this.o.client);
    // Commas, colons and @ are the cursor's own syntax: keep them readable.
    return u.toString().replace(/%2C/g, ",").replace(/%3A/g, ":").replace(/%40/g, "@");
  }

  private open(name: Transport, sink: Sink, token: string | undefined): Rung {
    const cursor = this.positions.cursor(this.topics);
    switch (name) {
      case "websocket":
        return this.openWebSocket(sink, token, cursor);
      case "sse":
        return this.openStream(sink, token, cursor);
      case "longpoll":
        return this.openPoll(sink, token);
    }
  }

  /** Whether the server refuses `token` (401 on a cheap API call; false if unsure). */
  private async tokenRefused(token: string): Promise<boolean> {
    try {
      const query = { topic: "holdfast-token-probe", members: "0" };
      const r = await this.fetcher()(this.apiUrl("/presence", query, token), { method: "GET" });
      await r.text().catch(() => "");
      return r.status === 401;
    } catch {
      return false;
    }
  }

  private openWebSocket(sink: Sink, token: string | undefined, cursor: string): Rung {
    const WS = (this.o.WebSocket ?? (globalThis as any).WebSocket) as any;
    if (!WS) {
      queueMicrotask(() => sink.ended({ failedToOpen: true }));
      return { close() {} };
    }
    const url = this.base("/ws", token, { resume: cursor }).replace(/^http/, "ws");
    let ws: any;
    try {
      ws = new WS(url);
    } catch {
      queueMicrotask(() => sink.ended({ failedToOpen: true }));
      return { close() {} };
    }
    ws.binaryType = "arraybuffer";
    let open = false;
    const timeout = setTimeout(() => {
      if (!open) {
        try {
          ws.close();
        } catch {}
        sink.ended({ failedToOpen: true });
      }
    }, this.o.openTimeoutMs);
    ws.onopen = () => {
      open = true;
      clearTimeout(timeout);
      sink.opened();
    };
    ws.onmessage = (ev: any) => {
      if (typeof ev.data === "string") {
        try {
          sink.frame(JSON.parse(ev.data));
        } catch {}
      } else {
        sink.binary(new Uint8Array(ev.data));
      }
    };
    ws.onclose = (ev: any) => {
      clearTimeout(timeout);
      const code: number = ev.code;
      if (!open) {
        // A browser does not say why a handshake failed: a refused token looks like any
        // other failure. Ask the HTTP API once (a 401 there is the token's fault), so a
        // WebSocket-only client does not retry a refused token forever.
        if (!token) return sink.ended({ failedToOpen: true });
        return void this.tokenRefused(token).then((auth) =>
          sink.ended(auth ? { auth: true } : { failedToOpen: true }),
        );
      }
      if (code === 4403) return sink.ended({ fatal: "disconnected by the operator (4403)" });
      if (code === 4401) return sink.ended({ auth: true });
      sink.ended({ hintMs: code === 1012 ? hintFromReason(ev.reason) : undefined });
    };
    ws.onerror = () => {};
    const send = (text: string) => {
      if (ws.readyState !== 1) return false;
      ws.send(text);
      return true;
    };
    return {
      close: () => {
        ws.onclose = null;
        clearTimeout(timeout);
        try {
          ws.close(1000);
        } catch {}
      },
      send,
      subscribe: (topics) => {
        const resume: Record<string, unknown> = {};
        for (const t of topics) {
          const p = this.positions.get(t);
          if (p) resume[t] = p.epoch ? { seq: p.seq, epoch: p.epoch } : p.seq;
        }
        const id = this.nextId++;
        this.subscribing.set(id, [...topics]);
        send(JSON.stringify({ op: "subscribe", topics, resume, id }));
      },
    };
  }

  private fetcher(): typeof fetch {
    const f = this.o.fetch ?? (globalThis as any).fetch;
    if (!f) throw new Error("no fetch");
    return f.bind(globalThis);
  }

  /** Server-sent events over fetch (so the client keeps its own reconnect and resume). */
  private openStream(sink: Sink, token: string | undefined, cursor: string): Rung {
    const ctl = new AbortController();
    let alive = false;
    let done = false;
    const end = (e: Ended) => {
      if (done) return;
      done = true;
      clearTimeout(timeout);
      ctl.abort();
      sink.ended(e);
    };
    // A buffering proxy holds the stream: no sign of life within the bound → next rung.
    const timeout = setTimeout(() => {
      if (!alive) end({ failedToOpen: true });
    }, this.o.openTimeoutMs);
    const url = this.base("/sse", token, { resume: cursor });
    (async () => {
      let res: Response;
      try {
        res = await this.fetcher()(url, {
          signal: ctl.signal,
          headers: { Accept: "text/event-stream" },
          cache: "no-store",
        });
      } catch {
        return end({ failedToOpen: !alive });
      }
      if (res.status === 401) return end({ auth: true, failedToOpen: false });
      if (res.status === 403) return end({ fatal: `refused: ${await res.text().catch(() => "403")}` });
      if (!res.ok || !res.body) return end({ failedToOpen: true });
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      let ev = { id: "", event: "", data: [] as string[], retry: undefined as number | undefined };
      let hint: number | undefined;
      const dispatch = () => {
        if (!alive) {
          alive = true;
          clearTimeout(timeout);
          sink.opened();
        }
        if (ev.retry !== undefined) hint = ev.retry;
        if (ev.data.length) {
          let v: any;
          try {
            v = JSON.parse(ev.data.join("\n"));
          } catch {
            v = null;
          }
          if (ev.event === "close") {
            const h = hintFromReason(v?.reason) ?? hint;
            if (v?.code === 4403) return end({ fatal: "disconnected by the operator (4403)" });
            if (v?.code === 4401) return end({ auth: true });
            return end({ hintMs: v?.code === 1012 ? h : undefined });
          }
          if (v) sink.frame(v);
          if (ev.id) sink.cursor(ev.id);
        }
        ev = { id: "", event: "", data: [], retry: undefined };
      };
      try {
        for (;;) {
          const { value, done: eof } = await reader.read();
          if (eof) break;
          buf += dec.decode(value, { stream: true });
          let nl: number;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl).replace(/\r$/, "");
            buf = buf.slice(nl + 1);
            if (line === "") {
              dispatch();
              if (done) return;
              continue;
            }
            if (line.startsWith(":")) {
              // A heartbeat: a sign of life.
              if (!alive) {
                alive = true;
                clearTimeout(timeout);
                sink.opened();
              }
              continue;
            }
            const c = line.indexOf(":");
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
            if (field === "data") ev.data.push(val);
            else if (field === "id") ev.id = val;
            else if (field === "event") ev.event = val;
            else if (field === "retry" && /^\d+$/.test(val)) ev.retry = Number(val);
          }
        }
      } catch {
        // Aborted or cut.
      }
      end({ failedToOpen: !alive });
    })();
    return { close: () => end({}) };
  }

  /** Long-poll: one request after another, each from the cursor the last answer gave. */
  private openPoll(sink: Sink, token: string | undefined): Rung {
    const ctl = new AbortController();
    let stopped = false;
    let alive = false;
    const stop = (e: Ended) => {
      if (stopped) return;
      stopped = true;
      ctl.abort();
      sink.ended(e);
    };
    (async () => {
      while (!stopped) {
        const cursor = this.positions.cursor(this.topics);
        const url = this.base("/poll", token, { cursor });
        let res: Response;
        try {
          res = await this.fetcher()(url, { signal: ctl.signal, cache: "no-store" });
        } catch {
          return stop({ failedToOpen: !alive });
        }
        if (res.status === 401) return stop({ auth: true });
        if (res.status === 403) return stop({ fatal: `refused: ${await res.text().catch(() => "403")}` });
        if (res.status === 503) {
          const after = Number(res.headers.get("retry-after") ?? "1");
          return stop({ hintMs: Math.max(0, after) * 1000 * (this.o.random ?? Math.random)() });
        }
        if (!res.ok) return stop({ failedToOpen: !alive });
        let body: any;
        try {
          body = await res.json();
        } catch {
          return stop({ failedToOpen: !alive });
        }
        if (!alive) {
          alive = true;
          sink.opened();
        }
        for (const m of body.messages ?? []) {
          if (stopped) return;
          sink.frame(m);
        }
        if (typeof body.cursor === "string" && body.cursor) sink.cursor(body.cursor);
      }
    })();
    return { close: () => stop({}) };
  }

  private onBinary(b: Uint8Array, transport: Transport): void {
    const m = decodeBinary(b);
    if (!m) return this.emit("error", new Error(`a binary frame of ${b.length} bytes that is not a delivery`));
    const { topic, seq, data } = m;
    if (topic === "" && seq === 0) return this.emit("direct", { data });
    if (this.positions.onMessage(topic, seq) === "deliver") {
      this.emit("message", { topic, seq, data, transport });
    }
  }

  private onFrame(v: any, transport: Transport): void {
    if (v?.id !== undefined) this.idsEchoed = true;
    switch (v?.type) {
      case "message": {
        if (!this.topics.has(v.topic)) return;
        if (this.positions.onMessage(v.topic, v.seq) !== "deliver") return;
        const data = typeof v.data_base64 === "string" ? fromBase64(v.data_base64) : v.data;
        this.emit("message", { topic: v.topic, seq: v.seq, data, transport });
        return;
      }
      case "subscribed":
        this.answered(v);
        if (this.positions.onSubscribed(v.topic, v.seq, v.epoch, v.recovered)) {
          this.emit("reset", { topic: v.topic, epoch: v.epoch, seq: v.seq });
        }
        return;
      case "gap":
        this.positions.onGap(v.topic, v.to);
        this.emit("gap", { topic: v.topic, from: v.from, to: v.to });
        return;
      case "reset":
        this.positions.onReset(v.topic, v.epoch, v.seq);
        this.emit("reset", { topic: v.topic, epoch: v.epoch, seq: v.seq });
        return;
      case "direct":
        this.emit("direct", { data: v.data });
        return;
      case "presence":
        this.emit("presence", v);
        return;
      case "published":
      case "error": {
        if (v.type === "error" && this.answered(v)) return;
        const id = typeof v.id === "number" ? v.id : this.unnamed(v);
        const p = id === undefined ? undefined : this.publishes.get(id);
        if (p) {
          this.publishes.delete(id!);
          if (v.type === "published") p.resolve(v.seq);
          else p.reject(new Error(v.reason));
        } else if (v.type === "error") {
          // A refused subscribe (its topic named) or unsubscribe, or a message the
          // server could not read.
          this.emit("error", new Error(v.topic ? `${v.topic}: ${v.reason}` : (v.reason ?? "server error")));
        }
        return;
      }
    }
  }
}

/** The length of `s` in UTF-8 bytes. */
function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** What a topic name may hold (its length is the server's to bound: `--max-topic-len`). */
const TOPIC_NAME = /^[A-Za-z0-9._:/-]+$/;
