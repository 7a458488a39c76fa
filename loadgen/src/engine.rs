//! One engine: a thread with one io_uring ring whose registered file table holds its sockets
//! as direct descriptors, so a process is not bounded by `ulimit -n` (each table is capped by
//! the RLIMIT_NOFILE soft limit; the tool runs as many engines as the target needs).
//!
//! A connection is opened by one linked chain into a slot the engine picks:
//! `SOCKET(slot) → SETSOCKOPT(IP_BIND_ADDRESS_NO_PORT) → BIND(source:0) → CONNECT(target)`,
//! the first three with CQE_SKIP_SUCCESS, so a chain posts exactly one completion: the
//! connect's, or the first failure's (which suppresses the rest). Then the shared upgrade
//! request is sent, a multishot receive reads the 101 and then frames, pings are answered.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use holdfast::reactor::bufring::BufRing;
use holdfast::reactor::listener::sockaddr;
use holdfast::ws::frame::{encode_close, encode_frame};
use holdfast::ws::{CloseCode, Decoder, Event, OpCode, Role};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use crate::stats::{Failure, Stats};
use crate::target::Target;

const OP_CHAIN: u64 = 1;
const OP_SEND: u64 = 2;
const OP_RECV: u64 = 3;
const OP_CLOSE: u64 = 4;
const OP_IGNORE: u64 = 5;
const OP_SEND_STATIC: u64 = 6;

fn token(op: u64, idx: usize, generation: u32) -> u64 {
    (op << 56) | (u64::from(generation & 0xFF_FFFF) << 32) | idx as u64
}

fn untoken(v: u64) -> (u64, usize, u32) {
    (
        v >> 56,
        (v & 0xFFFF_FFFF) as usize,
        ((v >> 32) & 0xFF_FFFF) as u32,
    )
}

/// The masking key of every client frame. RFC 6455 asks for unpredictable keys to protect
/// intermediaries from cache poisoning by hostile scripts; a load generator's frames carry
/// no attacker-chosen bytes, and a fixed key lets pongs and closes share static frames.
const MASK: [u8; 4] = [0x4c, 0x6f, 0x61, 0x64];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshaking,
    Open,
    Closing,
    Closed,
}

#[derive(Debug)]
struct Conn {
    slot: u32,
    generation: u32,
    phase: Phase,
    started: Instant,
    decoder: Decoder,
    head: Vec<u8>,
    pending: Vec<u8>,
    out: Vec<u8>,
    queued: Vec<u8>,
    send_inflight: bool,
    /// The slot's close completed (the slot is back on the free list).
    closed: bool,
}

/// What one engine does.
#[derive(Debug)]
pub struct EngineSpec {
    /// Engine number.
    pub id: usize,
    /// Where to connect.
    pub target: Arc<Target>,
    /// Source addresses this engine binds to, in turn.
    pub sources: Vec<IpAddr>,
    /// Connections this engine opens.
    pub quota: usize,
    /// Connections per second this engine opens.
    pub rate: f64,
    /// Handshakes in flight at most.
    pub concurrency: usize,
    /// File-table slots (≤ RLIMIT_NOFILE soft limit).
    pub table: u32,
    /// Shared counters.
    pub stats: Arc<Stats>,
    /// Set by the main thread: close everything and finish.
    pub stop: Arc<AtomicBool>,
    /// Connect + upgrade deadline.
    pub handshake_timeout: Duration,
    /// How long a clean close may take before the socket is dropped.
    pub close_timeout: Duration,
    /// CPU to pin to.
    pub cpu: Option<usize>,
}

struct Engine {
    ring: IoUring,
    conns: Slab<Conn>,
    free: Vec<u32>,
    generation: u32,
    spec: EngineSpec,
    /// Target and source socket addresses; boxed so SQEs may point into them.
    dst: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    srcs: Box<[(libc::sockaddr_storage, libc::socklen_t)]>,
    next_src: usize,
    opened: usize,
    in_flight: usize,
    deadlines: VecDeque<(usize, u32, Instant)>,
    closing_since: Option<Instant>,
    hist: Histogram<u64>,
}

static ONE: libc::c_int = 1;

/// Run an engine to completion; returns its connect+upgrade latency histogram (µs).
pub fn run(spec: EngineSpec) -> Result<Histogram<u64>, String> {
    if let Some(cpu) = spec.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    // Engines yield to the reporting thread: with ~100 busy engines on two cores its progress
    // line (and the hard timeout it enforces) starved in the 2M run. On Linux the nice value
    // of PRIO_PROCESS/0 is the calling thread's own.
    // SAFETY: setpriority takes no pointers; failure (e.g. no permission) only leaves the
    // priority as it was.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) };
    let ring = holdfast::reactor::setup(1024, 16384)
        .map_err(|e| holdfast::reactor::explain_setup_error(&e))?
        .ring;
    ring.submitter()
        .register_files_sparse(spec.table)
        .map_err(|e| format!("cannot register {} file slots: {e}", spec.table))?;
    let mut bufs = BufRing::new(&ring, 512, 2048, 0).map_err(|e| format!("buffer ring: {e}"))?;
    let dst = Box::new(sockaddr(spec.target.addr));
    let srcs: Box<[_]> = spec
        .sources
        .iter()
        .map(|ip| sockaddr(SocketAddr::new(*ip, 0)))
        .collect();
    let mut e = Engine {
        ring,
        conns: Slab::with_capacity(spec.quota.min(1 << 16)),
        free: (0..spec.table).rev().collect(),
        generation: 0,
        dst,
        srcs,
        next_src: spec.id,
        opened: 0,
        in_flight: 0,
        deadlines: VecDeque::new(),
        closing_since: None,
        hist: Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?,
        spec,
    };
    let start = Instant::now();
    let mut tokens = 0.0f64;
    let mut last = start;
    let mut cqes = Vec::with_capacity(16384);
    loop {
        let now = Instant::now();
        if e.closing_since.is_none() {
            tokens =
                (tokens + e.spec.rate * (now - last).as_secs_f64()).min(e.spec.rate * 0.05 + 1.0);
            last = now;
            while tokens >= 1.0
                && e.opened < e.spec.quota
                && e.in_flight < e.spec.concurrency
                && !e.free.is_empty()
            {
                tokens -= 1.0;
                e.start_connect();
            }
        }
        e.expire(now);
        if e.spec.stop.load(Ordering::Relaxed) && e.closing_since.is_none() {
            e.close_all(now);
        }
        if let Some(since) = e.closing_since {
            if e.conns.is_empty() {
                break;
            }
            if now - since > e.spec.close_timeout {
                e.abort_all();
                if now - since > e.spec.close_timeout * 2 {
                    break; // the kernel finishes the closes; nothing is waiting on them
                }
            }
        }
        // 5 ms ticks pace the ramp; once it is done, wake only for completions (or to
        // notice the stop flag).
        let wait = if e.opened < e.spec.quota {
            5_000_000
        } else {
            50_000_000
        };
        let ts = types::Timespec::new().nsec(wait);
        let args = types::SubmitArgs::new().timespec(&ts);
        match e.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(err) => return Err(format!("io_uring_enter: {err}")),
        }
        cqes.clear();
        cqes.extend(e.ring.completion());
        for c in &cqes {
            e.complete(&mut bufs, c);
        }
    }
    let hist = e.hist.clone();
    drop(e);
    drop(bufs);
    Ok(hist)
}

impl Engine {
    fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: SQEs reference the boxed socket addresses (`dst`, `srcs`, alive for the
            // engine's life, which outlasts the ring: the ring is dropped first), the static
            // ONE, the target's request bytes (an Arc held by `spec`), or a connection's `out`
            // buffer, which is not touched while `send_inflight` is set and whose connection
            // is not removed until that send completes.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            if self.ring.submit().is_err() {
                return;
            }
        }
    }

    fn start_connect(&mut self) {
        let Some(slot) = self.free.pop() else { return };
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let idx = self.conns.insert(Conn {
            slot,
            generation,
            phase: Phase::Connecting,
            started: Instant::now(),
            decoder: Decoder::new(Role::Client),
            head: Vec::new(),
            pending: Vec::new(),
            out: Vec::new(),
            queued: Vec::new(),
            send_inflight: false,
            closed: false,
        });
        self.opened += 1;
        self.in_flight += 1;
        self.deadlines.push_back((
            idx,
            generation,
            Instant::now() + self.spec.handshake_timeout,
        ));
        let tok = token(OP_CHAIN, idx, generation);
        let (src, src_len) = {
            let s = &self.srcs[self.next_src % self.srcs.len()];
            (&s.0 as *const libc::sockaddr_storage, s.1)
        };
        self.next_src = self.next_src.wrapping_add(1);
        let domain = if self.spec.target.addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let Ok(dest) = types::DestinationSlot::try_from_slot_target(slot) else {
            return;
        };
        let chain = squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS;
        let socket = opcode::Socket::new(domain, libc::SOCK_STREAM, 0)
            .file_index(Some(dest))
            .build()
            .flags(chain)
            .user_data(tok);
        let nop = opcode::SetSockOpt::new(
            types::Fixed(slot),
            libc::IPPROTO_IP as u32,
            libc::IP_BIND_ADDRESS_NO_PORT as u32,
            (&ONE as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
        .build()
        .flags(chain)
        .user_data(tok);
        let bind = opcode::Bind::new(types::Fixed(slot), src.cast(), src_len)
            .build()
            .flags(chain)
            .user_data(tok);
        let connect = opcode::Connect::new(
            types::Fixed(slot),
            (&self.dst.0 as *const libc::sockaddr_storage).cast(),
            self.dst.1,
        )
        .build()
        .user_data(tok);
        for sqe in [socket, nop, bind, connect] {
            self.push(sqe);
        }
    }

    fn fail(&mut self, idx: usize, why: Failure) {
        let c = &mut self.conns[idx];
        if matches!(c.phase, Phase::Connecting | Phase::Handshaking) {
            self.in_flight -= 1;
            self.spec.stats.fail(why);
        }
        self.finish(idx);
    }

    /// Drop the connection: shutdown (ends the armed receive), then close the slot.
    fn finish(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.phase == Phase::Closed {
            return;
        }
        if c.phase == Phase::Open || c.phase == Phase::Closing {
            self.spec.stats.open.fetch_sub(1, Ordering::Relaxed);
        }
        c.phase = Phase::Closed;
        let (slot, generation) = (c.slot, c.generation);
        let shut = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
            .build()
            .user_data(token(OP_IGNORE, idx, generation));
        let close = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(token(OP_CLOSE, idx, generation));
        self.push(shut);
        self.push(close);
    }

    fn send(&mut self, idx: usize, bytes: &[u8]) {
        let c = &mut self.conns[idx];
        c.queued.extend_from_slice(bytes);
        self.flush(idx);
    }

    fn flush(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.send_inflight || c.queued.is_empty() || c.phase == Phase::Closed {
            return;
        }
        std::mem::swap(&mut c.out, &mut c.queued);
        c.queued.clear();
        c.send_inflight = true;
        let sqe = opcode::Send::new(types::Fixed(c.slot), c.out.as_ptr(), c.out.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(OP_SEND, idx, c.generation));
        self.push(sqe);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(idx, generation, at)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let pending = self.conns.get(idx).is_some_and(|c| {
                c.generation == generation
                    && matches!(c.phase, Phase::Connecting | Phase::Handshaking)
            });
            if pending {
                self.fail(idx, Failure::Timeout);
            }
        }
    }

    fn close_all(&mut self, now: Instant) {
        self.closing_since = Some(now);
        let mut frame = Vec::new();
        encode_close(&mut frame, Some(CloseCode::NORMAL), "", Some(MASK));
        let idxs: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for idx in idxs {
            match self.conns[idx].phase {
                Phase::Open => {
                    self.conns[idx].phase = Phase::Closing;
                    let _ = self.conns[idx].decoder.close_state_mut().on_send();
                    self.send(idx, &frame);
                }
                Phase::Connecting | Phase::Handshaking => self.fail(idx, Failure::Aborted),
                Phase::Closing | Phase::Closed => {}
            }
        }
    }

    fn abort_all(&mut self) {
        let idxs: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for idx in idxs {
            self.finish(idx);
        }
    }

    fn complete(&mut self, bufs: &mut BufRing, cqe: &cqueue::Entry) {
        let (op, idx, generation) = untoken(cqe.user_data());
        let res = cqe.result();
        let flags = cqe.flags();
        let live = self
            .conns
            .get(idx)
            .is_some_and(|c| c.generation & 0xFF_FFFF == generation);
        if !live {
            if let Some(bid) = cqueue::buffer_select(flags) {
                bufs.recycle(bid);
            }
            return;
        }
        match op {
            OP_CHAIN => self.on_connected(idx, res),
            OP_SEND => {
                let c = &mut self.conns[idx];
                c.send_inflight = false;
                if c.phase == Phase::Closed {
                    self.maybe_remove(idx);
                } else if res < 0 {
                    self.spec.stats.close_reason("send_error");
                    self.finish(idx);
                } else if (res as usize) < c.out.len() {
                    // Short send: put the rest in front of what is queued.
                    let rest = c.out.split_off(res as usize);
                    let mut q = rest;
                    q.extend_from_slice(&c.queued);
                    c.queued = q;
                    self.flush(idx);
                } else {
                    self.flush(idx);
                }
            }
            OP_RECV => self.on_recv(bufs, idx, res, flags),
            OP_SEND_STATIC => {
                let c = &mut self.conns[idx];
                c.send_inflight = false;
                if c.phase == Phase::Closed {
                    return self.maybe_remove(idx);
                }
                match res {
                    6 => self.flush(idx),
                    r if r < 0 => self.finish(idx),
                    r => {
                        // A short send of the 6-byte pong: queue the rest in front.
                        let pong = [0x8Au8, 0x80, MASK[0], MASK[1], MASK[2], MASK[3]];
                        let mut q = pong[r as usize..].to_vec();
                        q.extend_from_slice(&c.queued);
                        c.queued = q;
                        self.flush(idx);
                    }
                }
            }
            OP_CLOSE => {
                self.free.push(self.conns[idx].slot);
                self.conns[idx].closed = true;
                self.maybe_remove(idx);
            }
            _ => {}
        }
    }

    /// The close completion freed the slot; the entry goes once no send holds its `out`.
    /// (A receive still armed on the old socket completes later with a stale generation and
    /// only has its buffer recycled.)
    fn maybe_remove(&mut self, idx: usize) {
        let c = &self.conns[idx];
        if c.closed && !c.send_inflight {
            self.conns.remove(idx);
        }
    }

    fn on_connected(&mut self, idx: usize, res: i32) {
        if res < 0 {
            let why = match -res {
                libc::ECONNREFUSED => Failure::Refused,
                libc::ETIMEDOUT => Failure::Timeout,
                libc::ECONNRESET => Failure::Reset,
                libc::EADDRNOTAVAIL | libc::EADDRINUSE => Failure::Ports,
                libc::ECANCELED => Failure::Aborted,
                _ => Failure::Other,
            };
            return self.fail(idx, why);
        }
        let c = &mut self.conns[idx];
        c.phase = Phase::Handshaking;
        let (slot, generation) = (c.slot, c.generation);
        let req = &self.spec.target.request;
        let send = opcode::Send::new(types::Fixed(slot), req.as_ptr(), req.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(OP_IGNORE, idx, generation));
        let recv = opcode::RecvMulti::new(types::Fixed(slot), 0)
            .build()
            .user_data(token(OP_RECV, idx, generation));
        self.push(send);
        self.push(recv);
    }

    fn on_recv(&mut self, bufs: &mut BufRing, idx: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if res <= 0 {
            if res == -libc::ENOBUFS {
                self.rearm(idx);
                return;
            }
            match self.conns[idx].phase {
                Phase::Handshaking => self.fail(idx, Failure::Reset),
                Phase::Open => {
                    self.spec
                        .stats
                        .close_reason(if res == 0 { "eof" } else { "reset" });
                    self.finish(idx);
                }
                Phase::Closing => self.finish(idx),
                _ => self.maybe_remove(idx),
            }
            return;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return;
        };
        let data = bufs.slice_mut(bid, res as usize);
        self.on_bytes(idx, data);
        bufs.recycle(bid);
        if !more
            && self
                .conns
                .get(idx)
                .is_some_and(|c| c.phase != Phase::Closed)
        {
            self.rearm(idx);
        }
    }

    fn rearm(&mut self, idx: usize) {
        let c = &self.conns[idx];
        let sqe = opcode::RecvMulti::new(types::Fixed(c.slot), 0)
            .build()
            .user_data(token(OP_RECV, idx, c.generation));
        self.push(sqe);
    }

    fn on_bytes(&mut self, idx: usize, data: &mut [u8]) {
        if self.conns[idx].phase == Phase::Handshaking {
            let c = &mut self.conns[idx];
            c.head.extend_from_slice(data);
            let Some(end) = c.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.head.len() > 8192 {
                    self.fail(idx, Failure::Protocol);
                }
                return;
            };
            let head = std::mem::take(&mut c.head);
            let text = String::from_utf8_lossy(&head[..end]);
            let status: u16 = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if status != 101 {
                self.spec.stats.http_status(status);
                return self.fail(idx, Failure::Http);
            }
            let accept = std::str::from_utf8(&self.spec.target.accept).unwrap_or("");
            let ok = text.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == accept
                })
            });
            if !ok {
                return self.fail(idx, Failure::Protocol);
            }
            let micros = c.started.elapsed().as_micros().max(1) as u64;
            let _ = self.hist.record(micros);
            c.phase = Phase::Open;
            self.in_flight -= 1;
            self.spec.stats.established.fetch_add(1, Ordering::Relaxed);
            self.spec.stats.open.fetch_add(1, Ordering::Relaxed);
            let mut rest = head[end + 4..].to_vec();
            if !rest.is_empty() {
                self.frames(idx, &mut rest);
            }
            return;
        }
        if self.conns[idx].pending.is_empty() {
            // The common case: decode in place in the provided buffer, no copy.
            self.frames(idx, data);
        } else {
            let mut buf = std::mem::take(&mut self.conns[idx].pending);
            buf.extend_from_slice(data);
            self.frames(idx, &mut buf);
        }
    }

    fn frames(&mut self, idx: usize, buf: &mut [u8]) {
        let mut pos = 0;
        let mut done = false;
        loop {
            let base = pos;
            let step = match self.conns[idx].decoder.decode(&mut buf[base..], u32::MAX) {
                Ok(s) => s,
                Err(_) => {
                    self.spec.stats.close_reason("protocol_error");
                    done = true;
                    break;
                }
            };
            pos += step.consumed;
            match step.event {
                None => break,
                Some(Event::Ping(r)) => {
                    self.spec.stats.pings.fetch_add(1, Ordering::Relaxed);
                    if r.is_empty() {
                        self.pong_empty(idx);
                    } else {
                        let mut f = Vec::new();
                        encode_frame(
                            &mut f,
                            true,
                            OpCode::Pong,
                            Some(MASK),
                            &buf[base + r.start..base + r.end],
                        );
                        self.send(idx, &f);
                    }
                }
                Some(Event::Data { last: true, .. }) => {
                    self.spec.stats.messages.fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::Close { code, reply, .. }) => {
                    self.spec.stats.close_code(code.map_or(1005, |c| c.0));
                    if let Some(echo) = reply {
                        let mut f = Vec::new();
                        encode_close(&mut f, echo, "", Some(MASK));
                        self.send(idx, &f);
                    }
                    done = true;
                    break;
                }
                Some(_) => {}
            }
        }
        if done {
            // Our reply (if any) is queued ahead of the shutdown.
            self.finish(idx);
        } else if pos < buf.len() {
            // A split header or control frame: keep it for the next read.
            self.conns[idx].pending = buf[pos..].to_vec();
        }
    }

    /// Answer an empty Ping (every server heartbeat) from a static frame when nothing else
    /// is queued: no allocation per heartbeat.
    fn pong_empty(&mut self, idx: usize) {
        static PONG: [u8; 6] = [0x8A, 0x80, MASK[0], MASK[1], MASK[2], MASK[3]];
        let c = &mut self.conns[idx];
        if c.send_inflight || !c.queued.is_empty() {
            c.queued.extend_from_slice(&PONG);
            return self.flush(idx);
        }
        c.send_inflight = true;
        let sqe = opcode::Send::new(types::Fixed(c.slot), PONG.as_ptr(), PONG.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(OP_SEND_STATIC, idx, c.generation));
        self.push(sqe);
    }
}
