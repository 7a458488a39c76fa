//! The sans-IO WebSocket server session, one per connection: bytes in → decisions, events
//! for the service and bytes out; no sockets and no clocks (time comes in as a tick count).
//!
//! It holds the per-connection protocol decisions: the opening handshake (answered or
//! refused), frames and control frames, the closing handshake, lingering after our last
//! bytes, the outbound queue's bound and the slow-consumer close, heartbeats, idle and
//! close deadlines. What a connection is *for* (echo, pub/sub) is decided by a [`Host`]:
//! the services layer.
//!
//! # Using it (the order to call in)
//! - Inputs, `handle_*`: [`Session::handle_input`] (bytes received),
//!   [`Session::handle_end`] (the peer closed or the socket failed),
//!   [`Session::handle_sent`] (a send completed), [`Session::handle_timeout`] (a deadline
//!   of this session may have passed; call when told by [`Session::deadline`] and on the
//!   heartbeat sweep).
//! - Commands: [`Writer::send_frame`], [`Writer::push_shared`], [`Session::close`],
//!   [`Session::abort`].
//! - Outputs, `poll_*`, after every input or command: [`Session::poll_transmit`] (bytes to
//!   send, when no send is in flight), [`Session::poll_shutdown`] (send our FIN: the final
//!   bytes are out), [`Session::is_done`] (close the socket).
//!
//! **Architecture Invariant:** this module imports no io_uring, socket, clock or thread
//! type; [`SendBuf`] is a plain owned buffer. The pair harness in `tests.rs` drives it with
//! a scripted peer and a fake clock.

mod handover;
mod outbound;
pub mod pair;
mod services;
pub mod sse;
#[cfg(test)]
mod tests;
mod trace;

use std::sync::Arc;

pub use outbound::{Chunk, Dropped, Outbound, GATHER_BYTES};
pub use services::Services;
pub use trace::{End, Trace};

use crate::io::SendBuf;
use crate::metrics::{self, Limit, Side, WorkerMetrics};
use crate::ws::assembler::{self, Flow, HoldsPartial, Message, Partial};
use crate::ws::frame::{encode_close, encode_frame};
use crate::ws::handshake::{self, HeadScanner, Limits, Rejection, Request};
use crate::ws::{CloseCode, Decoder, OpCode, Role};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// A WebSocket.
    Open,
    /// A final answer (HTTP error, a Close after a protocol error, the echo of the peer's
    /// Close) is queued: linger once it is sent.
    Finishing,
    /// We sent a Close and wait for the peer's.
    AwaitingClose,
    /// The echo of the peer's Close is queued: once it is sent both Closes are exchanged,
    /// and the connection closes without lingering (RFC 6455 §5.5.1: the endpoint then
    /// MUST close the TCP connection; the peer sends nothing after its Close, so no unread
    /// input can turn the close into a reset). Saves a shutdown — which the kernel runs on
    /// an io-wq thread — and a round trip per client-initiated close.
    EchoingClose,
    /// Our last bytes are sent and our FIN is out; incoming bytes are dropped until the
    /// peer closes or the close deadline passes. Closing with unread input would make the
    /// kernel send a reset, which can destroy our final answer before the peer reads it.
    Lingering,
    /// The answer to a plain request (a long poll, a call) is queued and the connection
    /// stays open after it (HTTP/1.1 keep-alive): once it is sent, [`Phase::Answered`].
    Replying,
    /// A kept-alive answer is sent: the owner releases what the request held in the
    /// services and calls [`Session::recycle`] (or closes the connection), before any more
    /// input is handed in.
    Answered,
    /// Over: the socket is to be closed.
    Done,
}

/// The session's timing and size limits, in ticks and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Handshake limits.
    pub limits: Limits,
    /// Largest message.
    pub max_message: u32,
    /// Outbound queue cap.
    pub max_outbound: usize,
    /// Ticks from accept to a complete handshake.
    pub handshake_ticks: u32,
    /// Ticks of silence before a heartbeat ping.
    pub ping_ticks: u32,
    /// Ticks of silence before an idle close.
    pub idle_ticks: u32,
    /// Ticks a close may take (the peer's Close, our final bytes, the linger).
    pub close_ticks: u32,
    /// Pings from the peer answered per heartbeat interval; one more closes it (1008).
    pub max_pings: u16,
    /// The reconnect hint (`retry:`) an event stream starts with, milliseconds.
    pub stream_retry_ms: u32,
    /// Close as soon as the echo of the peer's Close is sent ([`Phase::EchoingClose`]);
    /// otherwise shut down the write side and linger as after any final answer. Off with
    /// TLS, whose close_notify goes out with the shutdown.
    pub close_after_echo: bool,
    /// Plain requests (long polls, calls) answered on one connection before it closes
    /// (HTTP/1.1 keep-alive); 1 closes after every answer. Between requests the
    /// connection waits for the next one as for a first request (`handshake_ticks`).
    pub keepalive_requests: u16,
}

/// What a [`Host`] answers to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Upgrade (then [`Host::on_open`] runs).
    Accept,
    /// Upgrade selecting this subprotocol (one the client offered).
    AcceptProtocol(&'static str),
    /// Refuse with this status and body, counted under this limit.
    Refuse(Limit, Rejection, String),
}

/// What a plain HTTP request (not an upgrade) is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain {
    /// An event stream: the head now, events as they come.
    Stream,
    /// A long poll: one answer, when the service gives it.
    Poll,
    /// A call (publish, presence): the body is received whole, then
    /// [`Host::on_call`] answers it, now or later.
    Call,
    /// A browser's CORS preflight for one of these: answered by the session.
    Preflight,
    /// A path served here, but not with this method (405, with the methods it takes).
    MethodNotAllowed(&'static str),
}

/// The service side of a session: decides what a request gets and what messages do.
pub trait Host {
    /// A complete, valid upgrade request.
    fn on_request(&mut self, req: &Request<'_>, ctx: &Ctx<'_>) -> Answer;
    /// The 101 is queued: queue what the service sends first (replays, say).
    fn on_open(&mut self, w: &mut Writer, ctx: &Ctx<'_>);
    /// A whole text or binary message from the peer.
    fn on_message(&mut self, w: &mut Writer, ctx: &Ctx<'_>, msg: Message<'_>);
    /// Encode the gap frame for `topic` (None: the connection left it; skip the gap).
    fn gap_frame(&mut self, topic: u64, from: u64, to: u64) -> Option<Arc<[u8]>>;
    /// What a plain request (`method` on `path`) is served as, if the path serves one.
    fn plain(&self, _method: &str, _path: &str) -> Option<Plain> {
        None
    }
    /// An accepted call's body: answer it with [`Writer::answer_poll`], now or later (it
    /// stays open, holding nothing but its entry, until answered).
    fn on_call(&mut self, _w: &mut Writer, _ctx: &Ctx<'_>, _body: &[u8]) {}
}

/// What every call gets: limits, counters, the time.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Limits and timings.
    pub cfg: &'a Config,
    /// The worker's counters.
    pub metrics: &'a WorkerMetrics,
    /// The current tick.
    pub now: u32,
    /// Where a traced connection's tallies and end go (None: not traced).
    pub trace: Option<&'a Trace>,
}

impl Ctx<'_> {
    /// A text or binary message arrived.
    fn message_in(&self) {
        self.metrics.messages_in.inc();
        if let Some(t) = self.trace {
            Trace::add(&t.messages_in, 1);
        }
    }

    /// A text or binary message was queued to the connection.
    pub fn message_out(&self) {
        self.messages_out(1);
    }

    /// `n` text or binary messages were queued to the connection.
    pub fn messages_out(&self, n: u64) {
        self.metrics.messages_out.add(n);
        if let Some(t) = self.trace {
            Trace::add(&t.messages_out, n);
        }
    }

    /// A Close with `code` was sent first by `side`.
    fn closed(&self, side: Side, code: u16, reason: &str) {
        self.metrics.close(side, code);
        if let Some(t) = self.trace {
            t.end(|| End::Close {
                side,
                code,
                reason: reason.to_owned(),
            });
        }
    }

    /// The upgrade was refused with `status` (by `limit`, when a limit did).
    fn refused(&self, limit: Option<Limit>, status: u16, reason: &str) {
        if let Some(l) = limit {
            self.metrics.reject(l);
        }
        if let Some(t) = self.trace {
            t.end(|| End::Refused {
                status,
                limit,
                reason: reason.to_owned(),
            });
        }
    }

    /// It ends without a Close frame.
    pub fn aborted(&self, side: Side, reason: &'static str) {
        if let Some(t) = self.trace {
            t.end(|| End::Abort { side, reason });
        }
    }
}

/// Split input held on the heap while needed: a request head in pieces, or frames.
#[derive(Debug, Default)]
struct Held {
    partial: Partial,
    scanner: HeadScanner,
    /// A request body being received: where the head ends in `partial.pending`, and where
    /// the body will (0: no body awaited).
    head_end: usize,
    body_end: usize,
}

impl HoldsPartial for Held {
    fn partial(&mut self) -> &mut Partial {
        &mut self.partial
    }
}

/// Flag: counted in the worker's WebSocket gauge (set on upgrade).
const COUNTED: u8 = 1 << 0;
/// An event stream (server-sent events), not a WebSocket: output is events, input is
/// ignored, heartbeats are comments, a close is a last event and the end of the stream.
const STREAM: u8 = 1 << 1;
/// A long poll: nothing is sent until the service answers it once
/// ([`Writer::answer_poll`]); then the connection closes.
const POLL: u8 = 1 << 2;
/// A heartbeat ping is due (sent from a static frame when nothing else is queued).
const PING_DUE: u8 = 1 << 3;
/// Our final bytes are out: the owner should shut down the write side.
const SHUT_DUE: u8 = 1 << 4;
/// A close deadline was set (the owner should schedule a timeout).
const DEADLINE_NEW: u8 = 1 << 5;
/// Done, and the peer did not cooperate: reset the connection (drop what is unsent)
/// rather than leave an orphaned socket sending to a peer that does not read.
const RESET: u8 = 1 << 6;
/// A call on the plain-HTTP API (with [`POLL`]: one answer, then the connection closes
/// or waits for the next request).
const CALL: u8 = 1 << 7;

/// In `Writer::pings` while a plain request is served: its answer leaves the connection
/// open for the next request (HTTP/1.1 keep-alive). The other bits count the requests
/// answered on the connection before this one.
const KEEP: u16 = 1 << 15;

/// The output side of a session: what a [`Host`] may touch while the input side decodes.
#[derive(Debug)]
pub struct Writer {
    out: Option<Box<Outbound>>,
    /// Tick of accept (handshake), of the last input (open), or of entering a closing phase.
    since: u32,
    phase: Phase,
    flags: u8,
    /// A WebSocket: pings from the peer since the heartbeat sweep last visited. Plain HTTP
    /// (the handshake phase, a poll, a call, which read no frames): the requests answered
    /// on this connection so far, and [`KEEP`]. In what would otherwise be padding.
    pings: u16,
}

/// A server-side WebSocket session (40 bytes while idle).
#[derive(Debug)]
pub struct Session {
    decoder: Decoder,
    held: Option<Box<Held>>,
    w: Writer,
}

const _: () = assert!(std::mem::size_of::<Session>() <= 40);

/// A server Ping with no payload: FIN + opcode 0x9, unmasked, length 0.
static PING: [u8; 2] = [0x89, 0x00];

impl Writer {
    /// The session's phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn enter(&mut self, phase: Phase, now: u32) {
        self.phase = phase;
        self.since = now;
        if matches!(
            phase,
            Phase::Handshake
                | Phase::Finishing
                | Phase::EchoingClose
                | Phase::AwaitingClose
                | Phase::Lingering
                | Phase::Replying
        ) {
            self.flags |= DEADLINE_NEW;
        }
    }

    /// Bytes queued (the send in flight included).
    pub fn queued(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.queued())
    }

    /// The output queue, created on demand.
    pub fn outbound(&mut self) -> &mut Outbound {
        self.out.get_or_insert_with(Outbound::boxed)
    }

    /// Append owned bytes; a queue past the cap closes the connection as a slow consumer.
    pub fn write(&mut self, ctx: &Ctx<'_>, write: impl FnOnce(&mut Vec<u8>)) {
        let out = self.outbound();
        let added = out.write_owned(write);
        let over = out.queued() > ctx.cfg.max_outbound;
        ctx.metrics.bytes_out.add(added as u64);
        if over && self.phase == Phase::Open {
            self.close_slow(ctx);
        }
    }

    /// Whether this is an event stream (server-sent events) rather than a WebSocket.
    pub fn is_stream(&self) -> bool {
        self.flags & STREAM != 0
    }

    /// What the connection is: `websocket`, `sse` (an event stream) or `poll`.
    pub fn transport(&self) -> &'static str {
        if self.flags & STREAM != 0 {
            "sse"
        } else if self.flags & CALL != 0 {
            "http"
        } else if self.flags & POLL != 0 {
            "poll"
        } else {
            "websocket"
        }
    }

    /// Whether this is a long poll still waiting for its answer.
    pub fn is_poll(&self) -> bool {
        self.flags & POLL != 0 && self.phase == Phase::Open
    }

    /// Answer a long poll or a call (once): `status` with a JSON `body`; then the connection
    /// waits for its next request (keep-alive) or closes.
    pub fn answer_poll(&mut self, ctx: &Ctx<'_>, status: u16, body: &[u8], extra: &str) {
        if !self.is_poll() {
            return;
        }
        let keep = self.pings & KEEP != 0;
        self.enter(
            if keep {
                Phase::Replying
            } else {
                Phase::Finishing
            },
            ctx.now,
        );
        let connection = if keep { "keep-alive" } else { "close" };
        self.write(ctx, |v| {
            let reason = handshake::reason_phrase(status);
            v.extend_from_slice(
                format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                     Cache-Control: no-store\r\nContent-Length: {}\r\nConnection: {connection}\r\n\
                     Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: Retry-After\r\n{extra}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            v.extend_from_slice(body);
        });
    }

    /// Whether the connection may stay open after its answer to plain request `req`
    /// (`extra`: bytes followed it). HTTP/1.1 persists unless the client says `close`
    /// (HTTP/1.0 closes: what a proxy forwarding 1.0 expects), nothing followed the request
    /// (no pipelining: one request at a time), and the connection has answered fewer than
    /// the allowance.
    fn may_keep(&self, req: &Request<'_>, extra: bool, ctx: &Ctx<'_>) -> bool {
        let served = self.pings & !KEEP;
        !extra
            && !req.http10
            && served.saturating_add(1) < ctx.cfg.keepalive_requests
            && !req
                .header_values("connection")
                .flat_map(handshake::tokens)
                .any(|t| t.eq_ignore_ascii_case("close"))
    }

    /// The answer to the plain request being served closes the connection (a drain, a
    /// hand-over: the client's next request should find the server that stays).
    pub fn close_after_answer(&mut self) {
        if self.flags & POLL != 0 {
            self.pings &= !KEEP;
        }
    }

    /// Queue a frame (counted as a message when it is data). On an event stream a text
    /// payload is one event; control frames have no meaning there and are not sent. A long
    /// poll sends nothing this way (its service answers it whole).
    pub fn send_frame(&mut self, ctx: &Ctx<'_>, op: OpCode, payload: &[u8]) {
        if self.flags & POLL != 0 {
            return;
        }
        if op == OpCode::Text || op == OpCode::Binary {
            ctx.message_out();
        }
        if self.is_stream() {
            if op == OpCode::Text {
                self.write(ctx, |v| sse::write_event(v, None, None, payload));
            }
            return;
        }
        self.write(ctx, |v| encode_frame(v, true, op, None, payload));
    }

    /// Queue a shared published frame (the caller applied the slow-consumer policy).
    pub fn push_shared(&mut self, frame: Arc<[u8]>, topic: u64, seq: u64) {
        self.outbound().push_shared(frame, topic, seq);
    }

    /// Slow consumer: drop what it has not been sent yet, tell it why (1008), and go.
    pub fn close_slow(&mut self, ctx: &Ctx<'_>) {
        let stream = self.is_stream();
        let out = self.outbound();
        out.clear_queue();
        let added = out.write_owned(|v| {
            let code = CloseCode::POLICY_VIOLATION;
            if stream {
                sse::write_close(v, code.0, "slow consumer", None);
            } else {
                encode_close(v, Some(code), "slow consumer", None);
            }
        });
        ctx.metrics.bytes_out.add(added as u64);
        self.enter(Phase::Finishing, ctx.now);
        ctx.metrics.slow_consumers.inc();
        ctx.closed(Side::Server, CloseCode::POLICY_VIOLATION.0, "slow consumer");
    }

    /// Refuse the upgrade: the HTTP answer, then linger and go.
    fn refuse(&mut self, ctx: &Ctx<'_>, write: impl FnOnce(&mut Vec<u8>)) {
        self.enter(Phase::Finishing, ctx.now);
        self.write(ctx, write);
    }
}

impl Session {
    /// A session for a connection accepted at tick `now`.
    pub const fn new(now: u32) -> Self {
        Self {
            decoder: Decoder::new(Role::Server),
            held: None,
            w: Writer {
                out: None,
                since: now,
                phase: Phase::Handshake,
                flags: 0,
                pings: 0,
            },
        }
    }

    // ------------------------------------------------------------------ getters

    /// Its phase.
    pub fn phase(&self) -> Phase {
        self.w.phase
    }

    /// What the connection is: `websocket`, `sse` or `poll`.
    pub fn transport(&self) -> &'static str {
        self.w.transport()
    }

    /// Whether it is an event stream (its messages go as event JSON, not frames).
    pub fn is_stream(&self) -> bool {
        self.w.is_stream()
    }

    /// Whether its sends may be spaced (`--fanout-send-interval`): an open WebSocket or
    /// event stream. A long poll's or a call's answer goes at once.
    pub fn sends_spaced(&self) -> bool {
        self.w.phase == Phase::Open && self.w.flags & (POLL | CALL) == 0
    }

    /// Whether the socket should be closed now.
    pub fn is_done(&self) -> bool {
        self.w.phase == Phase::Done
    }

    /// Whether the socket should be reset rather than closed (a close deadline passed).
    pub fn wants_reset(&self) -> bool {
        self.w.flags & RESET != 0
    }

    /// Whether input is still read (to decode it, or to drop it while closing). Not once the
    /// peer's Close is read and its echo queued: the peer sends nothing after its Close
    /// (RFC 6455 §5.5.1), and the connection closes when the echo is sent, so nothing is
    /// armed to read then (a single-shot poll that announced the Close is not armed again,
    /// and the close has no poll to remove: `io::ReadMode::arming`).
    pub fn wants_input(&self) -> bool {
        !matches!(self.w.phase, Phase::Done | Phase::EchoingClose)
    }

    /// Whether it was counted as a WebSocket.
    pub fn counted(&self) -> bool {
        self.w.flags & COUNTED != 0
    }

    /// Refuse the connection at once, before it sends a request (a limit decided at
    /// accept): the answer goes out, then the session lingers and goes.
    pub fn refuse_now(&mut self, answer: Answer, ctx: &Ctx<'_>) {
        if let Answer::Refuse(limit, rejection, body) = answer {
            ctx.refused(Some(limit), rejection.status(), &body);
            self.w
                .refuse(ctx, |v| handshake::write_rejection(v, rejection, &body));
        }
    }

    /// Bytes queued for sending (the send in flight included).
    pub fn queued(&self) -> usize {
        self.w.queued()
    }

    /// Heap bytes held beyond the session itself.
    pub fn heap_bytes(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, |h| h.partial.heap_bytes() + std::mem::size_of::<Held>())
            + self.w.out.as_ref().map_or(0, |o| o.heap_bytes())
    }

    /// What it holds under the memory budget: (partial input, output queue — the bytes not
    /// yet sent and the queue's slots). Both are O(1) to read.
    pub fn held(&self) -> (usize, usize) {
        let partial = self.held.as_ref().map_or(0, |h| h.partial.heap_bytes());
        (partial, self.w.out.as_ref().map_or(0, |o| o.budget_bytes()))
    }

    /// Shed it under the memory budget: drop its partial input and its unsent queue and
    /// close it — 1009 when the partial message was the larger holding, 1013 (try again
    /// later) when the queue was. Returns which, or None if it is not open.
    pub fn shed(&mut self, ctx: &Ctx<'_>) -> Option<crate::budget::Shed> {
        if self.w.phase == Phase::Handshake && self.held.is_some() {
            // A request head or body still arriving: dropped, answered 503.
            self.held = None;
            ctx.metrics.memory_sheds.inc();
            let body = "server memory budget: try again later";
            ctx.refused(None, 503, body);
            let r = Rejection::Unavailable { retry_after: 1 };
            self.w
                .refuse(ctx, |v| handshake::write_rejection(v, r, body));
            return Some(crate::budget::Shed::Partial);
        }
        if self.w.phase != Phase::Open {
            return None;
        }
        let (partial, queued) = self.held();
        self.held = None;
        if let Some(out) = self.w.out.as_mut() {
            out.clear_queue();
        }
        let (why, code, reason) = if partial > queued {
            (
                crate::budget::Shed::Partial,
                CloseCode::MESSAGE_TOO_BIG,
                "server memory budget: message dropped",
            )
        } else {
            (
                crate::budget::Shed::Outbound,
                CloseCode::TRY_AGAIN_LATER,
                "server memory budget: try again later",
            )
        };
        ctx.metrics.memory_sheds.inc();
        self.close(code, reason, false, ctx);
        Some(why)
    }

    /// The output side, for deliveries from outside an input call.
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.w
    }

    /// The tick at which [`Session::handle_timeout`] has something to do, if the session
    /// has a deadline of its own (handshake, close); heartbeats are the sweep's business.
    pub fn deadline(&self, cfg: &Config) -> Option<u32> {
        match self.w.phase {
            Phase::Handshake => Some(self.w.since.wrapping_add(cfg.handshake_ticks)),
            Phase::Finishing
            | Phase::EchoingClose
            | Phase::AwaitingClose
            | Phase::Lingering
            | Phase::Replying => Some(self.w.since.wrapping_add(cfg.close_ticks)),
            Phase::Open | Phase::Answered | Phase::Done => None,
        }
    }

    /// Whether a new deadline was set since the last call (the owner schedules it).
    pub fn take_new_deadline(&mut self) -> bool {
        let due = self.w.flags & DEADLINE_NEW != 0;
        self.w.flags &= !DEADLINE_NEW;
        due
    }

    // ------------------------------------------------------------------ inputs

    /// Bytes received (unmasked in place).
    pub fn handle_input(&mut self, data: &mut [u8], ctx: &Ctx<'_>, host: &mut impl Host) {
        match self.w.phase {
            Phase::Handshake => self.handshake_input(data, ctx, host),
            // An event stream's client has nothing to say after its request: what it sends
            // is dropped (it cannot make the server hold anything). A poll's or a call's
            // client that speaks before its answer is pipelining (or worse): its bytes are
            // dropped and the answer closes the connection, so no request goes unanswered
            // on a connection that stays open.
            Phase::Open | Phase::AwaitingClose if self.w.flags & (STREAM | POLL) != 0 => {
                self.w.close_after_answer();
            }
            Phase::Replying => self.w.phase = Phase::Finishing,
            Phase::Open | Phase::AwaitingClose => {
                if self.w.phase == Phase::Open {
                    self.w.since = ctx.now;
                }
                self.frame_input(data, ctx, host);
            }
            // The answer is decided: what arrives now is dropped.
            Phase::Finishing
            | Phase::EchoingClose
            | Phase::Lingering
            | Phase::Answered
            | Phase::Done => {}
        }
    }

    fn handshake_input(&mut self, data: &mut [u8], ctx: &Ctx<'_>, host: &mut impl Host) {
        let limits = ctx.cfg.limits;
        // A request body being received: take what completes it. What follows in the same
        // read goes along as the rest (it is not served: the answer closes the connection).
        if let Some(h) = self.held.as_mut().filter(|h| h.body_end > 0) {
            let room = h.body_end - h.partial.pending.len();
            h.partial
                .pending
                .extend_from_slice(&data[..room.min(data.len())]);
            if h.partial.pending.len() == h.body_end {
                if let Some(h) = self.held.take() {
                    let mut owned = h.partial.pending;
                    owned.extend_from_slice(&data[room..]);
                    let (head, rest) = owned.split_at_mut(h.head_end);
                    self.respond(head, rest, ctx, host);
                }
            }
            return;
        }
        let scanned = match self.held.as_mut() {
            // The common case: the whole request in one read, parsed in place.
            None => {
                let mut scanner = HeadScanner::new();
                match scanner.scan(data, &limits) {
                    Ok(Some(n)) => {
                        let (head, rest) = data.split_at_mut(n);
                        return self.respond(head, rest, ctx, host);
                    }
                    Ok(None) => {
                        let mut h = Box::<Held>::default();
                        h.partial.pending.extend_from_slice(data);
                        h.scanner = scanner;
                        self.held = Some(h);
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            Some(h) => {
                h.partial.pending.extend_from_slice(data);
                let pending = &h.partial.pending;
                h.scanner.scan(pending, &limits)
            }
        };
        match scanned {
            Ok(Some(n)) => {
                let mut owned = self
                    .held
                    .take()
                    .map(|h| h.partial.pending)
                    .unwrap_or_default();
                let (head, rest) = owned.split_at_mut(n);
                self.respond(head, rest, ctx, host);
            }
            Ok(None) => {}
            Err(e) => self.fail_handshake(e, ctx),
        }
    }

    fn fail_handshake(&mut self, e: crate::ws::Error, ctx: &Ctx<'_>) {
        metrics::handshake_failure(ctx.metrics, e);
        ctx.refused(None, e.http_status().unwrap_or(400), e.reason());
        self.held = None;
        self.w.refuse(ctx, |v| handshake::write_error(v, e));
    }

    /// A whole request head, and what followed it in the same reads (`rest`: frames sent
    /// before the 101, or a request's body).
    fn respond(&mut self, head: &[u8], rest: &mut [u8], ctx: &Ctx<'_>, host: &mut impl Host) {
        let req = match handshake::parse_request(head) {
            Ok(r) => r,
            Err(
                e @ (crate::ws::Error::MissingUpgradeWebsocket
                | crate::ws::Error::MissingConnectionUpgrade
                | crate::ws::Error::MethodNotGet
                | crate::ws::Error::UnsupportedHttpVersion),
            ) => {
                // Not an upgrade: plain HTTP (1.1, or 1.0 as a proxy may forward it), where
                // the path serves it (an event stream, a long poll, a call); anything else
                // keeps the upgrade's error.
                return match handshake::parse_plain(head) {
                    Ok(r) => match host.plain(r.method, r.path) {
                        Some(kind) => self.respond_plain(head, &r, kind, rest, ctx, host),
                        None => self.fail_handshake(e, ctx),
                    },
                    Err(e) => self.fail_handshake(e, ctx),
                };
            }
            Err(e) => return self.fail_handshake(e, ctx),
        };
        self.held = None;
        match host.on_request(&req, ctx) {
            Answer::Refuse(limit, rejection, body) => {
                ctx.refused(Some(limit), rejection.status(), &body);
                self.w
                    .refuse(ctx, |v| handshake::write_rejection(v, rejection, &body));
            }
            answer @ (Answer::Accept | Answer::AcceptProtocol(_)) => {
                let protocol = match answer {
                    Answer::AcceptProtocol(p) => Some(p),
                    _ => None,
                };
                let accept = req.accept_key();
                self.w.enter(Phase::Open, ctx.now);
                self.w.flags = (self.w.flags & !(STREAM | POLL | CALL)) | COUNTED;
                self.w.pings = 0; // what a kept-alive connection counted is over
                ctx.metrics.upgrades.inc();
                ctx.metrics.transport_open("websocket", true);
                self.w
                    .write(ctx, |v| handshake::write_accept(v, &accept, protocol));
                host.on_open(&mut self.w, ctx);
                if !rest.is_empty() && self.w.phase == Phase::Open {
                    self.frame_input(rest, ctx, host);
                }
            }
        }
    }

    /// A plain request on a path that serves one: the service decides, as for an upgrade.
    /// An accepted stream gets the event-stream head and is open from then on; an accepted
    /// poll is open with nothing sent until it is answered; a call is answered once its body
    /// is in (now, or when its service has the answer); a preflight is answered here.
    #[allow(clippy::too_many_arguments)]
    fn respond_plain(
        &mut self,
        head: &[u8],
        req: &Request<'_>,
        kind: Plain,
        rest: &[u8],
        ctx: &Ctx<'_>,
        host: &mut impl Host,
    ) {
        // What the session answers itself, and the flags of what the service serves.
        let flags = match kind {
            Plain::Stream => STREAM,
            Plain::Poll => POLL,
            Plain::Call => POLL | CALL,
            Plain::Preflight => {
                self.held = None;
                ctx.metrics.preflights.inc();
                // The browser sends the request it asked about next: on this connection,
                // under the same keep-alive rules as an answered poll or call (named
                // `http` in the close log meanwhile, as a call is).
                if !self.w.may_keep(req, !rest.is_empty(), ctx) {
                    return self.w.refuse(ctx, |v| handshake::write_preflight(v, false));
                }
                self.w.flags = (self.w.flags & !(STREAM | POLL | CALL | COUNTED)) | CALL;
                self.w.pings |= KEEP;
                self.w.enter(Phase::Replying, ctx.now);
                return self.w.write(ctx, |v| handshake::write_preflight(v, true));
            }
            Plain::MethodNotAllowed(allow) => {
                self.held = None;
                let e = crate::ws::Error::MethodNotGet;
                metrics::handshake_failure(ctx.metrics, e);
                ctx.refused(None, 405, e.reason());
                return self
                    .w
                    .refuse(ctx, |v| handshake::write_method_not_allowed(v, allow));
            }
        };
        if req.body_len > ctx.cfg.max_message as usize {
            self.held = None;
            let body = format!(
                "body_too_large: at most {} bytes (--max-message)",
                ctx.cfg.max_message
            );
            ctx.refused(Some(Limit::BadRequest), 413, &body);
            return self.w.refuse(ctx, |v| {
                handshake::write_rejection(v, Rejection::PayloadTooLarge, &body)
            });
        }
        if flags & CALL != 0 && req.body_len > rest.len() {
            // The body is still coming: hold what is in (bounded by --max-message and
            // the handshake timeout) and answer when the rest arrives.
            let mut h = Box::<Held>::default();
            h.head_end = head.len();
            h.body_end = head.len() + req.body_len;
            // Grown as bytes arrive, never reserved from the announced length: a head that
            // promises a body and sends nothing must not cost that much.
            h.partial.pending.clear();
            h.partial.pending.extend_from_slice(head);
            h.partial.pending.extend_from_slice(rest);
            self.held = Some(h);
            return;
        }
        self.held = None;
        match host.on_request(req, ctx) {
            Answer::Refuse(limit, rejection, body) => {
                ctx.refused(Some(limit), rejection.status(), &body);
                self.w
                    .refuse(ctx, |v| handshake::write_rejection(v, rejection, &body));
            }
            Answer::Accept | Answer::AcceptProtocol(_) => {
                self.w.enter(Phase::Open, ctx.now);
                self.w.flags = (self.w.flags & !(STREAM | POLL | CALL)) | COUNTED | flags;
                let served = self.w.pings & !KEEP;
                let extra = if flags & CALL != 0 {
                    rest.len() > req.body_len
                } else {
                    !rest.is_empty()
                };
                let keep = flags & POLL != 0 && self.w.may_keep(req, extra, ctx);
                self.w.pings = if keep { served | KEEP } else { served };
                ctx.metrics.transport_open(self.w.transport(), true);
                if flags & CALL != 0 {
                    ctx.metrics.calls.inc();
                    let body = &rest[..req.body_len.min(rest.len())];
                    host.on_call(&mut self.w, ctx, body);
                } else if flags & POLL != 0 {
                    ctx.metrics.polls_opened.inc();
                    host.on_open(&mut self.w, ctx);
                } else {
                    ctx.metrics.streams_opened.inc();
                    let retry = ctx.cfg.stream_retry_ms;
                    self.w.write(ctx, |v| sse::write_head(v, retry));
                    host.on_open(&mut self.w, ctx);
                }
            }
        }
    }

    fn frame_input(&mut self, data: &mut [u8], ctx: &Ctx<'_>, host: &mut impl Host) {
        let w = &mut self.w;
        let mut flood = false;
        let result = assembler::feed_in_place(
            &mut self.decoder,
            &mut self.held,
            data,
            ctx.cfg.max_message,
            |m| {
                let awaiting = w.phase == Phase::AwaitingClose;
                match m {
                    Message::Text(_) | Message::Binary(_) => {
                        let len = match m {
                            Message::Text(t) => t.len(),
                            Message::Binary(b) => b.len(),
                            _ => 0,
                        };
                        ctx.metrics.bytes_in.add(len as u64);
                        ctx.message_in();
                        if !awaiting {
                            host.on_message(w, ctx, m);
                        }
                    }
                    Message::Ping(p) => {
                        w.pings = w.pings.saturating_add(1);
                        if w.pings > ctx.cfg.max_pings {
                            // Each ping costs a pong: past the allowance it is a flood.
                            flood = true;
                            return Flow::Stop;
                        }
                        if !awaiting {
                            w.send_frame(ctx, OpCode::Pong, p);
                        }
                    }
                    Message::Pong(_) => {}
                    Message::Close(code, reason, reply) => {
                        match reply {
                            Some(echo) => {
                                ctx.closed(Side::Client, code.map_or(1005, |c| c.0), reason);
                                let next = if ctx.cfg.close_after_echo {
                                    Phase::EchoingClose
                                } else {
                                    Phase::Finishing
                                };
                                w.enter(next, ctx.now);
                                w.write(ctx, |v| encode_close(v, echo, "", None));
                            }
                            // Our Close was answered: the closing handshake is complete.
                            None => w.phase = Phase::Done,
                        }
                        return Flow::Stop;
                    }
                }
                if matches!(w.phase, Phase::Open | Phase::AwaitingClose) {
                    Flow::Continue
                } else {
                    Flow::Stop
                }
            },
        );
        if let Err(e) = result {
            metrics::protocol_error(ctx.metrics, e);
            let code = e.close_code().unwrap_or(CloseCode::PROTOCOL_ERROR);
            self.close(code, e.reason(), false, ctx);
        } else if flood {
            ctx.metrics.ping_floods.inc();
            let reason = format!(
                "ping flood (max {} per heartbeat interval)",
                ctx.cfg.max_pings
            );
            self.close(CloseCode::POLICY_VIOLATION, &reason, false, ctx);
        }
        if !matches!(self.w.phase, Phase::Open | Phase::AwaitingClose) {
            self.held = None;
        }
    }

    /// Input is over: the peer closed its side (EOF) or the socket failed.
    pub fn handle_end(&mut self, ctx: &Ctx<'_>) {
        if self.between_requests() {
            // A kept-alive connection's client closed it while idle: its normal end.
            ctx.metrics.keepalive_ends.inc();
            ctx.closed(
                Side::Client,
                1000,
                "the client closed its idle kept-alive connection",
            );
            return self.abort();
        }
        if matches!(
            self.w.phase,
            Phase::Handshake
                | Phase::Open
                | Phase::Finishing
                | Phase::EchoingClose
                | Phase::Replying
        ) {
            ctx.metrics.aborted.inc();
        }
        if self.w.flags & (STREAM | POLL) != 0 && self.w.phase == Phase::Open {
            // The normal end of an event stream (or a poll given up): its client went away.
            ctx.closed(Side::Client, 1000, "the client ended the stream");
            return self.abort();
        }
        let why = if self.w.phase == Phase::Handshake {
            "the peer left during the handshake"
        } else {
            "the peer left without a Close (1006)"
        };
        ctx.aborted(Side::Client, why);
        self.abort();
    }

    /// A send completed with `res` (bytes, or a negative errno) and gave `buf` back.
    pub fn handle_sent(&mut self, res: i32, buf: SendBuf, ctx: &Ctx<'_>) {
        if res < 0 {
            if self.w.phase != Phase::Done {
                ctx.metrics.aborted.inc();
            }
            ctx.aborted(
                Side::Client,
                "a send failed (the peer reset the connection)",
            );
            self.w.out = None;
            return self.abort();
        }
        if let Some(out) = self.w.out.as_mut() {
            out.on_sent(buf);
            if out.is_empty() {
                if let Some(out) = self.w.out.take() {
                    Outbound::recycle(out);
                }
            }
        }
        if self.w.out.is_some() {
            return;
        }
        match self.w.phase {
            // Both Closes are exchanged: close now.
            Phase::EchoingClose => {
                self.held = None;
                self.w.phase = Phase::Done;
            }
            // Everything is sent: FIN, then drop input until the peer closes.
            Phase::Finishing => {
                self.held = None;
                self.w.enter(Phase::Lingering, ctx.now);
                self.w.flags |= SHUT_DUE;
            }
            // A kept-alive answer is out: the owner recycles the connection.
            Phase::Replying => {
                self.held = None;
                self.w.phase = Phase::Answered;
            }
            _ => {}
        }
    }

    /// A deadline may have passed (the handshake's, a close's), or the heartbeat sweep
    /// visits: time out, close an idle connection, or make a ping due.
    pub fn handle_timeout(&mut self, ctx: &Ctx<'_>, sending: bool) {
        let cfg = ctx.cfg;
        let elapsed = ctx.now.wrapping_sub(self.w.since);
        if self.w.phase == Phase::Open && self.w.flags & (STREAM | POLL) == 0 {
            // An open session's only timeout is the sweep, once per interval: the ping
            // allowance starts again.
            self.w.pings = 0;
        }
        match self.w.phase {
            Phase::Handshake if elapsed >= cfg.handshake_ticks && self.between_requests() => {
                // Kept alive and not asked again in time: closed quietly (our FIN; it sent
                // nothing we did not read).
                self.end_idle(ctx, "kept-alive connection idle");
            }
            Phase::Handshake if elapsed >= cfg.handshake_ticks => {
                ctx.metrics.handshake_timeouts.inc();
                ctx.metrics.aborted.inc();
                ctx.aborted(Side::Server, "handshake timeout");
                self.held = None;
                self.abort();
            }
            // An event stream's client never speaks: heartbeats only, no idle close (a dead
            // client is found by the sends failing).
            Phase::Open if elapsed >= cfg.idle_ticks && self.w.flags & (STREAM | POLL) == 0 => {
                ctx.metrics.idle_timeouts.inc();
                self.close(CloseCode::GOING_AWAY, "idle timeout", false, ctx);
            }
            Phase::Open
                if elapsed + 1 >= cfg.ping_ticks
                    && self.w.out.is_none()
                    && !sending
                    && self.w.flags & POLL == 0 =>
            {
                self.w.flags |= PING_DUE;
            }
            Phase::Finishing
            | Phase::EchoingClose
            | Phase::AwaitingClose
            | Phase::Lingering
            | Phase::Replying
                if elapsed >= cfg.close_ticks =>
            {
                // The peer did not finish the close in time (it may not read at all: a slow
                // consumer's 1008 stuck behind a full send buffer): reset.
                self.reset();
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------ commands

    /// Start a server-initiated close: `wait` for the peer's Close (a clean close) or go
    /// once ours is sent (failing the connection). Ignored once a Close was sent.
    pub fn close(&mut self, code: CloseCode, reason: &str, wait: bool, ctx: &Ctx<'_>) {
        if !self.decoder.close_state_mut().on_send() {
            return;
        }
        ctx.closed(Side::Server, code.0, reason);
        // A drain's reason carries its reconnect hint; streams and polls pass it on.
        let hint = || {
            serde_json::from_str::<serde_json::Value>(reason)
                .ok()
                .and_then(|v| v["reconnect_after_ms"].as_u64())
        };
        if self.w.flags & POLL != 0 {
            if !self.w.is_poll() || self.w.flags & CALL != 0 {
                // Answered already: it closes after its answer. A call is not cut short
                // (a publish may be numbered already): its answer comes, or its deadline.
                return;
            }
            // A poll not answered yet: 503 with the reconnect hint as Retry-After, and the
            // connection closes after it.
            self.w.close_after_answer();
            let hint = hint();
            let body = serde_json::json!({"code": code.0, "reason": reason}).to_string();
            let extra = hint.map_or(String::new(), |ms| {
                format!("Retry-After: {}\r\n", ms.div_ceil(1000).max(1))
            });
            return self.w.answer_poll(ctx, 503, body.as_bytes(), &extra);
        }
        if self.w.is_stream() {
            // No close handshake: the last event (with the reconnect hint of a drain), then
            // the end of the stream.
            let hint = hint();
            self.w.enter(Phase::Finishing, ctx.now);
            self.w
                .write(ctx, |v| sse::write_close(v, code.0, reason, hint));
            return;
        }
        let phase = if wait {
            Phase::AwaitingClose
        } else {
            Phase::Finishing
        };
        self.w.enter(phase, ctx.now);
        self.w
            .write(ctx, |v| encode_close(v, Some(code), reason, None));
    }

    /// A kept-alive answer is sent ([`Phase::Answered`]) and the owner released what the
    /// request held: wait for the next request on the same connection, as for a first one
    /// (the handshake deadline is the idle limit).
    pub fn recycle(&mut self, ctx: &Ctx<'_>) {
        if self.w.phase != Phase::Answered {
            return;
        }
        let served = ((self.w.pings & !KEEP) + 1).min(!KEEP);
        self.decoder = Decoder::new(Role::Server);
        self.held = None;
        self.w.out = None;
        // What it served stays readable (the close log names it) until the next request.
        self.w.flags &= STREAM | POLL | CALL;
        self.w.pings = served;
        self.w.enter(Phase::Handshake, ctx.now);
        ctx.metrics.keepalive_reuses.inc();
    }

    /// Close a kept-alive connection between requests (idle too long, or the server is
    /// draining or handing over): no answer is owed, so no bytes, just the end (1001 in
    /// the close log and counters, as a WebSocket's idle close).
    pub fn end_idle(&mut self, ctx: &Ctx<'_>, reason: &str) {
        ctx.metrics.keepalive_ends.inc();
        ctx.closed(Side::Server, CloseCode::GOING_AWAY.0, reason);
        self.abort();
    }

    /// Whether it is a kept-alive connection waiting for its next request, with none of
    /// it read yet (closing it now loses nothing).
    pub fn between_requests(&self) -> bool {
        self.w.phase == Phase::Handshake && self.w.pings & !KEEP > 0 && self.held.is_none()
    }

    /// End it now with a reset: what is unsent is dropped with the socket.
    pub fn reset(&mut self) {
        self.w.flags |= RESET;
        self.abort();
    }

    /// End it now: the socket is to be closed, whatever is queued.
    pub fn abort(&mut self) {
        self.w.phase = Phase::Done;
        self.w.flags &= !(PING_DUE | SHUT_DUE);
    }

    // ------------------------------------------------------------------ outputs

    /// The next bytes to send (call when no send is in flight).
    pub fn poll_transmit(&mut self, ctx: &Ctx<'_>, host: &mut impl Host) -> Option<SendBuf> {
        if self.w.phase == Phase::Done {
            return None;
        }
        if let Some(out) = self.w.out.as_mut() {
            let buf = out.next_send(|topic, from, to| {
                let f = host.gap_frame(topic, from, to)?;
                ctx.metrics.bytes_out.add(f.len() as u64);
                Some(f)
            });
            if buf.is_some() {
                return buf;
            }
            if out.is_empty() {
                self.w.out = None;
            }
        }
        if self.w.flags & PING_DUE != 0 {
            self.w.flags &= !PING_DUE;
            if self.w.phase == Phase::Open && self.w.out.is_none() {
                ctx.metrics.pings_sent.inc();
                let beat: &'static [u8] = if self.w.is_stream() {
                    &sse::HEARTBEAT
                } else {
                    &PING
                };
                ctx.metrics.bytes_out.add(beat.len() as u64);
                return Some(SendBuf::Static(beat));
            }
        }
        None
    }

    /// Whether our FIN is due now (the final bytes are out; keep reading until EOF).
    pub fn poll_shutdown(&mut self) -> bool {
        let due = self.w.flags & SHUT_DUE != 0;
        self.w.flags &= !SHUT_DUE;
        due
    }
}
