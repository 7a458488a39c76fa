//! A deterministic pair harness: one [`Session`], a scripted client peer and a fake clock,
//! with no sockets and no threads. Input can be cut at arbitrary points; sends complete at
//! once, or stall (a peer that stops reading) until released. Used by the session's unit
//! tests and the session fuzz target.

use std::sync::Arc;

use super::{Answer, Config, Ctx, Host, Session, Writer};
use crate::io::SendBuf;
use crate::metrics::{Limit, WorkerMetrics};
use crate::ws::assembler::{Assembler, Message};
use crate::ws::frame::{encode_close, encode_frame};
use crate::ws::handshake::{Limits, Rejection, Request};
use crate::ws::{CloseCode, Decoder, OpCode, Role};

/// A host that echoes every message, or refuses upgrades to one path; and serves the
/// plain kinds on three paths (see [`EchoHost::plain`]).
#[derive(Debug, Default)]
pub struct EchoHost {
    /// Paths of the upgrade requests seen.
    pub requests: Vec<String>,
    /// Refuse requests for this path with 403.
    pub refuse_path: Option<String>,
}

impl Host for EchoHost {
    fn on_request(&mut self, req: &Request<'_>, _ctx: &Ctx<'_>) -> Answer {
        self.requests.push(req.path.to_string());
        if self.refuse_path.as_deref() == Some(req.path) {
            return Answer::Refuse(Limit::BadRequest, Rejection::Forbidden, "no".into());
        }
        Answer::Accept
    }

    /// A long poll is answered at once with `[]`; an event stream gets one event.
    fn on_open(&mut self, w: &mut Writer, ctx: &Ctx<'_>) {
        if w.is_poll() {
            w.answer_poll(ctx, 200, b"[]", "");
        } else if w.is_stream() {
            w.write(ctx, |v| v.extend_from_slice(b"data: hello\n\n"));
        }
    }

    fn on_message(&mut self, w: &mut Writer, ctx: &Ctx<'_>, msg: Message<'_>) {
        match msg {
            Message::Text(t) => w.send_frame(ctx, OpCode::Text, t.as_bytes()),
            Message::Binary(b) => w.send_frame(ctx, OpCode::Binary, b),
            _ => {}
        }
    }

    fn gap_frame(&mut self, _topic: u64, _from: u64, _to: u64) -> Option<Arc<[u8]>> {
        None
    }

    /// `POST /call` (a call), `GET /poll` (a long poll), `GET /events` (an event stream),
    /// their preflights (`OPTIONS`), and 405 for another method on them.
    fn plain(&self, method: &str, path: &str) -> Option<super::Plain> {
        use super::Plain;
        let (kind, takes, allow) = match path {
            "/call" => (Plain::Call, "POST", "POST, OPTIONS"),
            "/poll" => (Plain::Poll, "GET", "GET, OPTIONS"),
            "/events" => (Plain::Stream, "GET", "GET, OPTIONS"),
            _ => return None,
        };
        Some(match method {
            m if m == takes => kind,
            "OPTIONS" => Plain::Preflight,
            _ => Plain::MethodNotAllowed(allow),
        })
    }

    /// A call's body comes back as its answer.
    fn on_call(&mut self, w: &mut Writer, ctx: &Ctx<'_>, body: &[u8]) {
        w.answer_poll(ctx, 200, body, "");
    }
}

/// What the client side has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The HTTP answer's status line and head.
    Http(u16, String),
    /// A whole text message.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A Ping.
    Ping(Vec<u8>),
    /// A Close with its code and reason.
    Close(Option<u16>, String),
}

/// A session and its scripted peer.
#[derive(Debug)]
pub struct Pair {
    /// The session under test.
    pub session: Session,
    /// Its host.
    pub host: EchoHost,
    /// Its limits.
    pub cfg: Config,
    /// Its counters.
    pub metrics: WorkerMetrics,
    /// What its close log line would say.
    pub trace: super::Trace,
    /// The fake clock, in ticks.
    pub now: u32,
    /// Every byte the server sent, in order.
    pub wire: Vec<u8>,
    /// The send in flight, when sends stall.
    pub inflight: Option<SendBuf>,
    /// Sends stall (the peer does not read) until released.
    pub stall: bool,
    /// The server sent its FIN.
    pub fin: bool,
    /// The server closed the socket.
    pub closed: bool,
    /// It closed it with a reset.
    pub reset: bool,
    /// Kept-alive answers sent (the session recycled after each).
    pub answers: usize,
    head_done: bool,
    client: Assembler,
    read: usize,
}

/// The limits the harness uses unless a test changes them (ticks of 100 ms).
pub fn test_config() -> Config {
    Config {
        limits: Limits::default(),
        max_message: 1 << 16,
        max_outbound: 1 << 16,
        handshake_ticks: 100,
        ping_ticks: 250,
        idle_ticks: 750,
        close_ticks: 50,
        max_pings: 16,
        stream_retry_ms: 1000,
        close_after_echo: true,
        keepalive_requests: 1000,
    }
}

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame.
pub fn client_frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(&mut v, fin, op, Some([1, 2, 3, 4]), payload);
    v
}

/// A masked client Close.
pub fn client_close(code: u16, reason: &str) -> Vec<u8> {
    let mut v = Vec::new();
    encode_close(&mut v, Some(CloseCode(code)), reason, Some([9, 8, 7, 6]));
    v
}

impl Pair {
    /// A fresh session accepted at tick 0, with `cfg`.
    pub fn new(cfg: Config) -> Self {
        Self {
            session: Session::new(0),
            host: EchoHost::default(),
            cfg,
            metrics: WorkerMetrics::default(),
            trace: super::Trace::default(),
            now: 0,
            wire: Vec::new(),
            inflight: None,
            stall: false,
            fin: false,
            closed: false,
            reset: false,
            answers: 0,
            head_done: false,
            client: Assembler::new(Decoder::new(Role::Client)),
            read: 0,
        }
    }

    /// Feed the peer's `bytes` to the session, cut into pieces of the given sizes (cycled;
    /// empty: whole), then drive the outputs.
    pub fn send(&mut self, bytes: &[u8], cuts: &[usize]) {
        let mut rest = bytes;
        let mut i = 0;
        while !rest.is_empty() && !self.closed {
            let n = cuts
                .get(i % cuts.len().max(1))
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            i += 1;
            let (now, later) = rest.split_at(n);
            rest = later;
            let mut piece = now.to_vec();
            let ctx = Ctx {
                cfg: &self.cfg,
                metrics: &self.metrics,
                now: self.now,
                trace: Some(&self.trace),
            };
            self.session.handle_input(&mut piece, &ctx, &mut self.host);
            self.drive();
        }
    }

    /// The peer closed its side (EOF) or reset.
    pub fn end(&mut self) {
        let ctx = Ctx {
            cfg: &self.cfg,
            metrics: &self.metrics,
            now: self.now,
            trace: Some(&self.trace),
        };
        self.session.handle_end(&ctx);
        self.drive();
    }

    /// Let `ticks` ticks pass, one at a time, checking the session's deadlines each tick
    /// (as the worker's FIFOs and sweep do).
    pub fn advance(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.now += 1;
            let ctx = Ctx {
                cfg: &self.cfg,
                metrics: &self.metrics,
                now: self.now,
                trace: Some(&self.trace),
            };
            self.session.handle_timeout(&ctx, self.inflight.is_some());
            self.drive();
        }
    }

    /// The server starts a close (a drain, say) with `code`, waiting for the peer's Close.
    pub fn server_close(&mut self, code: u16, reason: &str) {
        let ctx = Ctx {
            cfg: &self.cfg,
            metrics: &self.metrics,
            now: self.now,
            trace: Some(&self.trace),
        };
        self.session.close(CloseCode(code), reason, true, &ctx);
        self.drive();
    }

    /// The worker sheds this session under the memory budget.
    pub fn shed(&mut self) -> Option<crate::budget::Shed> {
        let ctx = Ctx {
            cfg: &self.cfg,
            metrics: &self.metrics,
            now: self.now,
            trace: Some(&self.trace),
        };
        let why = self.session.shed(&ctx);
        self.drive();
        why
    }

    /// The stalled send completes (the peer read it).
    pub fn release(&mut self) {
        if let Some(buf) = self.inflight.take() {
            self.complete(buf);
        }
        self.drive();
    }

    fn complete(&mut self, buf: SendBuf) {
        self.wire.extend_from_slice(buf.bytes());
        let n = buf.bytes().len() as i32;
        let ctx = Ctx {
            cfg: &self.cfg,
            metrics: &self.metrics,
            now: self.now,
            trace: Some(&self.trace),
        };
        self.session.handle_sent(n, buf, &ctx);
    }

    /// Carry the session's outputs out, as the worker's `drive` does.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            if self.closed {
                return;
            }
            if self.session.is_done() {
                self.closed = true;
                self.reset = self.session.wants_reset();
                return;
            }
            if self.session.phase() == super::Phase::Answered {
                // A kept-alive answer is out: ready for the next request, as the worker does.
                let ctx = Ctx {
                    cfg: &self.cfg,
                    metrics: &self.metrics,
                    now: self.now,
                    trace: Some(&self.trace),
                };
                self.session.recycle(&ctx);
                self.answers += 1;
            }
            if self.session.poll_shutdown() {
                self.fin = true;
            }
            if self.inflight.is_some() {
                return;
            }
            let ctx = Ctx {
                cfg: &self.cfg,
                metrics: &self.metrics,
                now: self.now,
                trace: Some(&self.trace),
            };
            let Some(buf) = self.session.poll_transmit(&ctx, &mut self.host) else {
                return;
            };
            if self.stall {
                self.inflight = Some(buf);
                return;
            }
            self.complete(buf);
        }
        panic!("the session kept producing output");
    }

    /// Everything the client has received since the last call, decoded.
    pub fn received(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        let mut new = &self.wire[self.read..];
        if !self.head_done {
            let Some(end) = new.windows(4).position(|w| w == b"\r\n\r\n") else {
                return out;
            };
            let head = String::from_utf8_lossy(&new[..end + 4]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.push(Seen::Http(status, head));
            self.head_done = true;
            self.read += end + 4;
            new = &new[end + 4..];
            if status != 101 {
                self.read = usize::MAX; // a refusal's body follows, then nothing
                return out;
            }
        }
        if self.read == usize::MAX {
            return out;
        }
        let n = new.len();
        let r = self.client.feed(new, u32::MAX, |m| {
            out.push(match m {
                Message::Text(t) => Seen::Text(t.into()),
                Message::Binary(b) => Seen::Binary(b.into()),
                Message::Ping(p) => Seen::Ping(p.into()),
                Message::Pong(_) => return,
                Message::Close(c, r, _) => Seen::Close(c.map(|c| c.0), r.into()),
            })
        });
        assert!(r.is_ok(), "the server sent an invalid frame: {r:?}");
        self.read += n;
        out
    }

    /// Open: send the upgrade (cut as given) and check the 101.
    pub fn open(&mut self, cuts: &[usize]) {
        self.send(&upgrade_request("/echo"), cuts);
        match self.received().first() {
            Some(Seen::Http(101, _)) => {}
            other => panic!("expected 101, got {other:?}"),
        }
    }
}
