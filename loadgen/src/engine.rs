//! Engines: one io_uring ring each, whose registered file table holds its sockets as direct
//! descriptors, so a process is not bounded by `ulimit -n` (each table is capped by the
//! RLIMIT_NOFILE soft limit; the tool runs as many engines as the target needs). One thread
//! drives several engines: each ring signals its own eventfd and the thread waits on all of
//! them with one `ppoll`, so 2M connections need ~100 rings but only one thread per core.
//!
//! A connection is opened by one linked chain into a slot the engine picks:
//! `SOCKET(slot) → SETSOCKOPT(IP_BIND_ADDRESS_NO_PORT) → BIND(source:0) → CONNECT(target)`.
//! Every step posts a completion (the first three are only looked at when they fail). The
//! steps once carried CQE_SKIP_SUCCESS, and a burst of reconnects then took 2.5 s to get
//! through: on a DEFER_TASKRUN ring each `io_uring_enter` runs at most 20 deferred task-work
//! items when nothing is waited for, a link's next step is such an item, and a step that
//! posts no completion gives the loop no reason to enter again. Then the shared upgrade
//! request is sent, a multishot receive reads the 101 and then frames, pings are answered.
//!
//! Modes: `Hold` only answers pings; `Echo` sends B-byte binary messages stamped with their
//! intended send time (closed loop: the next after each reply; open loop: on a schedule, so
//! latency includes the time a message waited — no coordinated omission); `Storm` re-opens
//! every connection lost after the ramp with exponential backoff and (by default) full jitter.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use holdfast::reactor::bufring::BufRing;
use holdfast::reactor::listener::sockaddr;
use holdfast::ws::frame::{encode_close, encode_frame};
use holdfast::ws::{CloseCode, DataKind, Decoder, Event, OpCode, Role};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use crate::fanout::Parsed;
use crate::stats::{Failure, Stats, CUT, MEASURE, STEADY};
use crate::target::Target;

const OP_CHAIN: u64 = 1;
const OP_SEND: u64 = 2;
const OP_RECV: u64 = 3;
const OP_CLOSE: u64 = 4;
const OP_IGNORE: u64 = 5;
const OP_SEND_STATIC: u64 = 6;
const OP_SHUTDOWN: u64 = 7;
const OP_STEP: u64 = 8;
const OP_POLL: u64 = 9;
const OP_RECV_ONE: u64 = 10;
const OP_POLL_REMOVE: u64 = 11;

/// Bytes per provided buffer (a receive that fills one may have left more behind).
const BUF_SIZE: u32 = 2048;

/// How connections read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// A multishot poll per connection, and a single-shot receive into a provided buffer
    /// when it fires (the server's default): an idle connection costs only the poll's
    /// request, 608 B less kernel memory than an armed multishot receive.
    Poll,
    /// A multishot receive into provided buffers per connection: one completion per read,
    /// but its async state (kmalloc-512 + kmalloc-96) stays allocated while it waits.
    Recv,
}

/// Unsent bytes a connection may hold. An echo send beyond it is skipped and counted; a
/// control frame beyond it (a server that pings but never reads) ends the connection.
const MAX_QUEUED: usize = 1 << 20;

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

/// What connections do once open.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Answer pings; nothing else.
    Hold,
    /// Send messages and time their echoes.
    Echo {
        /// Payload bytes per message (≥ 8: the first 8 carry the send stamp).
        size: usize,
        /// Open loop: messages per second this engine sends, spread over its connections.
        /// `None`: closed loop (each connection sends its next message when the echo of the
        /// last arrives).
        rate: Option<f64>,
    },
    /// Re-open lost connections with backoff.
    Storm(Backoff),
    /// Subscribers: check every delivery's sequence number (losses, duplicates, order,
    /// gaps) and record publish → delivery latency from the stamp in its payload. Target
    /// `t` subscribes to topic `t / per_topic` (targets are listed topic by topic).
    Fanout {
        /// Targets per topic (the URLs given).
        per_topic: usize,
        /// The newest number published per topic (written by the publisher), for the
        /// messages never received by the end.
        last: Arc<[AtomicU64]>,
    },
}

/// Reconnect policy: delay for attempt k is `min(cap, base · 2^k)`, drawn uniformly from
/// `[0, that)` with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay ceiling.
    pub base: Duration,
    /// Largest delay ceiling.
    pub cap: Duration,
    /// Attempts per lost connection before giving up.
    pub max_attempts: u32,
    /// Full jitter (false: every client waits exactly the ceiling — the thundering herd).
    pub jitter: bool,
    /// Use the server's `reconnect_after_ms` hint (holdfast's drain close reason) as the
    /// first delay when present.
    pub honor_hint: bool,
}

impl Backoff {
    /// The delay before attempt `attempt` (0 = the first reconnect), given a random value.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        if !self.jitter {
            return ceiling;
        }
        let nanos = ceiling.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random % nanos)
    }
}

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
    /// Index into the target list.
    target: u16,
    /// Storm: which reconnect attempt this is (0 for the first), if it is one.
    attempt: Option<u16>,
    /// The server's reconnect hint from its Close reason, ms (0: none).
    hint_ms: u32,
    /// When the connect started: µs since the run's epoch, wrapping (a handshake is far
    /// shorter than the 71 minutes a u32 of µs spans).
    started_us: u32,
    decoder: Decoder,
    pending: Vec<u8>,
    out: Vec<u8>,
    queued: Vec<u8>,
    send_inflight: bool,
    /// The slot's close completed (the slot is back on the free list).
    closed: bool,
    /// The first failed step of the connect chain (0: none).
    step_error: i32,
    /// Poll mode: the multishot poll is armed / a receive is in flight / the poll fired
    /// while it was (receive again when it completes, or input could wait forever).
    poll_armed: bool,
    recv_inflight: bool,
    recv_again: bool,
    /// Poll mode: the poll reported a hang-up: read until EOF (data and FIN can arrive in one
    /// wake-up, and no further wake-up comes for the FIN once the data is read).
    hup: bool,
    /// Echo: the message being received — its stamp, stamp bytes seen, length so far.
    stamp: u64,
    stamp_got: u8,
    msg_len: u32,
    /// Fanout: the last sequence number received (or acknowledged at subscription).
    last_seq: u64,
}

/// What one engine does.
#[derive(Debug)]
pub struct EngineSpec {
    /// Engine number.
    pub id: usize,
    /// Where to connect; connections take targets in turn (reconnects try the next).
    pub targets: Arc<[Target]>,
    /// Source addresses this engine binds to, in turn.
    pub sources: Vec<IpAddr>,
    /// Connections this engine opens.
    pub quota: usize,
    /// Connections per second this engine opens.
    pub rate: f64,
    /// Handshakes in flight at most (during the ramp).
    pub concurrency: usize,
    /// File-table slots (≤ RLIMIT_NOFILE soft limit).
    pub table: u32,
    /// Shared counters and the run control word.
    pub stats: Arc<Stats>,
    /// Set by the main thread: close everything and finish.
    pub stop: Arc<AtomicBool>,
    /// Connect + upgrade deadline.
    pub handshake_timeout: Duration,
    /// How long a clean close may take before the socket is dropped.
    pub close_timeout: Duration,
    /// What open connections do.
    pub mode: Mode,
    /// How connections read.
    pub read_mode: ReadMode,
    /// Send our own (empty) Ping on every open connection this often.
    pub ping_interval: Option<Duration>,
}

/// Histograms an engine (or a thread of engines) hands back.
#[derive(Debug, Clone)]
pub struct Output {
    /// Connect + upgrade latency, µs.
    pub connect_us: Histogram<u64>,
    /// Echo round trip from the intended send time, ns.
    pub rtt_ns: Histogram<u64>,
    /// Storm: reconnect delays chosen, µs.
    pub delay_us: Histogram<u64>,
}

impl Output {
    /// Empty histograms.
    pub fn new() -> Result<Self, String> {
        let h = |hi| Histogram::new_with_bounds(1, hi, 3).map_err(|e| e.to_string());
        Ok(Self {
            connect_us: h(3_600_000_000)?,
            rtt_ns: h(3_600_000_000_000)?,
            delay_us: h(3_600_000_000)?,
        })
    }
    /// Add another output's samples.
    pub fn add(&mut self, o: &Self) -> Result<(), String> {
        self.connect_us
            .add(&o.connect_us)
            .map_err(|e| e.to_string())?;
        self.rtt_ns.add(&o.rtt_ns).map_err(|e| e.to_string())?;
        self.delay_us.add(&o.delay_us).map_err(|e| e.to_string())
    }
}

struct Engine {
    ring: IoUring,
    efd: OwnedFd,
    conns: Slab<Conn>,
    free: Vec<u32>,
    generation: u32,
    spec: EngineSpec,
    /// Target and source socket addresses; boxed so SQEs may point into them.
    dsts: Box<[(libc::sockaddr_storage, libc::socklen_t)]>,
    srcs: Box<[(libc::sockaddr_storage, libc::socklen_t)]>,
    next_src: usize,
    opened: usize,
    in_flight: usize,
    deadlines: VecDeque<(usize, u32, Instant)>,
    closing_since: Option<Instant>,
    out: Output,
    tokens: f64,
    last: Instant,
    control: u8,
    cut_done: bool,
    /// Storm: (when, attempt, target) of reconnects waiting for their delay.
    reconnects: BinaryHeap<Reverse<(Instant, u16, u16)>>,
    rng: holdfast::jitter::Jitter,
    /// Echo: a whole masked message with a zero stamp, copied and stamped per send.
    template: Vec<u8>,
    /// Echo (open loop): start of the schedule and messages scheduled so far.
    schedule: Option<(Instant, u64)>,
    /// Echo (open loop): open connections (index, generation), taken in turn.
    rr: Vec<(usize, u32)>,
    rr_pos: usize,
    done: bool,
    /// Completions taken off the ring while making room for submissions, not yet handled.
    deferred: Vec<cqueue::Entry>,
    /// Own pings: the next slab index to visit and when the sweep last ran.
    ping_cursor: usize,
    ping_last: Instant,
    /// Fanout: messages split across reads, being assembled (rare: deliveries are small).
    split: std::collections::HashMap<usize, Vec<u8>>,
    /// The last reap found completions: enter again without waiting. A DEFER_TASKRUN ring
    /// runs at most 20 deferred items per enter and signals its eventfd only when the list
    /// was empty, so leftovers would otherwise wait for the next sweep.
    hot: bool,
}

static ONE: libc::c_int = 1;

/// Run several engines on this thread until all are done; returns their merged histograms.
/// Pins to `cpu` when given.
pub fn run_thread(specs: Vec<EngineSpec>, cpu: Option<usize>) -> Result<Output, String> {
    if let Some(cpu) = cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    // Engines yield to the reporting thread: with busy engines on two cores its progress
    // line (and the hard timeout it enforces) starved in a 2M run. On Linux the nice value
    // of PRIO_PROCESS/0 is the calling thread's own.
    // SAFETY: setpriority takes no pointers; failure (e.g. no permission) only leaves the
    // priority as it was.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) };
    // Buffer rings are declared first so they are unmapped after the rings that use them.
    let mut bufs = Vec::with_capacity(specs.len());
    let mut engines = Vec::with_capacity(specs.len());
    for spec in specs {
        let (e, b) = Engine::new(spec)?;
        engines.push(e);
        bufs.push(b);
    }
    let mut pfds: Vec<libc::pollfd> = engines
        .iter()
        .map(|e| libc::pollfd {
            fd: e.efd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut cqes = Vec::with_capacity(16384);
    let mut last_sweep = Instant::now();
    loop {
        let now = Instant::now();
        let mut wait = Duration::from_millis(50);
        for e in engines.iter_mut().filter(|e| !e.done) {
            wait = wait.min(e.tick(now));
            if e.hot || !e.deferred.is_empty() {
                wait = Duration::ZERO;
            }
        }
        if engines.iter().all(|e| e.done) {
            break;
        }
        for e in &mut engines {
            if !e.ring.submission().is_empty() {
                e.enter()?;
            }
        }
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: i64::from(wait.subsec_nanos()) as _,
        };
        // SAFETY: `pfds` is a live array of `pfds.len()` pollfds; `ts` outlives the call; no
        // signal mask is passed.
        let n = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        // Every ring is reaped at least every 50 ms whatever its eventfd said.
        let sweep = last_sweep.elapsed() >= Duration::from_millis(50);
        if sweep {
            last_sweep = Instant::now();
        }
        for ((e, p), b) in engines.iter_mut().zip(pfds.iter_mut()).zip(bufs.iter_mut()) {
            let ready = (n > 0 && p.revents != 0) || e.hot || !e.deferred.is_empty();
            p.revents = 0;
            if e.done || !(ready || sweep) {
                continue;
            }
            if ready {
                holdfast::reactor::drain_eventfd(&e.efd);
            }
            e.enter()?;
            cqes.clear();
            cqes.append(&mut e.deferred);
            cqes.extend(e.ring.completion());
            e.hot = !cqes.is_empty();
            for c in &cqes {
                e.complete(b, c);
            }
        }
    }
    let mut out = Output::new()?;
    for e in &engines {
        out.add(&e.out)?;
    }
    Ok(out)
}

impl Engine {
    fn new(spec: EngineSpec) -> Result<(Self, BufRing), String> {
        let ring = holdfast::reactor::setup(1024, 16384)
            .map_err(|e| holdfast::reactor::explain_setup_error(&e))?
            .ring;
        ring.submitter()
            .register_files_sparse(spec.table)
            .map_err(|e| format!("cannot register {} file slots: {e}", spec.table))?;
        let efd = holdfast::reactor::eventfd().map_err(|e| format!("eventfd: {e}"))?;
        ring.submitter()
            .register_eventfd(efd.as_raw_fd())
            .map_err(|e| format!("register eventfd: {e}"))?;
        let bufs =
            BufRing::new(&ring, 512, BUF_SIZE, 0).map_err(|e| format!("buffer ring: {e}"))?;
        let dsts: Box<[_]> = spec.targets.iter().map(|t| sockaddr(t.addr)).collect();
        let srcs: Box<[_]> = spec
            .sources
            .iter()
            .map(|ip| sockaddr(SocketAddr::new(*ip, 0)))
            .collect();
        let template = match spec.mode {
            Mode::Echo { size, .. } => {
                let mut f = Vec::with_capacity(size + 14);
                encode_frame(&mut f, true, OpCode::Binary, Some(MASK), &vec![0u8; size]);
                f
            }
            _ => Vec::new(),
        };
        let now = Instant::now();
        let e = Self {
            ring,
            efd,
            conns: Slab::with_capacity(spec.quota.min(1 << 16)),
            free: (0..spec.table).rev().collect(),
            generation: 0,
            dsts,
            srcs,
            next_src: spec.id,
            opened: 0,
            in_flight: 0,
            deadlines: VecDeque::new(),
            closing_since: None,
            out: Output::new()?,
            tokens: 0.0,
            last: now,
            control: 0,
            cut_done: false,
            reconnects: BinaryHeap::new(),
            rng: holdfast::jitter::Jitter::new(spec.id as u64),
            template,
            schedule: None,
            rr: Vec::new(),
            rr_pos: 0,
            done: false,
            deferred: Vec::new(),
            ping_cursor: 0,
            ping_last: now,
            hot: false,
            split: std::collections::HashMap::new(),
            spec,
        };
        Ok((e, bufs))
    }

    /// Submit and run deferred work. While connects are in flight (a ramp, a storm) every
    /// pending item runs in one call; in steady state the cheaper call does (see
    /// `holdfast::reactor::enter_run_all`: the cheap one runs 20 items per call, and a burst
    /// of 5,000 reconnects then took 1.4–3.4 s to recover instead of 0.2–0.3 s; the
    /// run-all one costs a timer per call, which doubled the loadgen's CPU in open-loop echo).
    fn enter(&mut self) -> Result<(), String> {
        let r = if self.in_flight > 0 {
            holdfast::reactor::enter_run_all(&mut self.ring)
        } else {
            holdfast::reactor::enter_nonblocking(&mut self.ring)
        };
        r.map_err(|e| format!("io_uring_enter: {e}"))
    }

    fn stopping(&self) -> bool {
        self.closing_since.is_some()
    }

    /// Timers, the ramp, reconnects, the echo schedule and the end of the run. Returns how
    /// soon it wants to run again.
    fn tick(&mut self, now: Instant) -> Duration {
        let control = self.spec.stats.control.load(Ordering::Relaxed);
        if control != self.control {
            self.control = control;
            self.on_control();
        }
        let mut wait = Duration::from_millis(50);
        if !self.stopping() {
            // Connects started per tick are bounded (a chain is 4 SQEs; the SQ holds 1024), so
            // completions are reaped between batches; a storm of due reconnects takes a few
            // ticks of no waiting.
            let mut budget = 200usize;
            let rate = self.spec.rate;
            self.tokens =
                (self.tokens + rate * (now - self.last).as_secs_f64()).min(rate * 0.05 + 1.0);
            self.last = now;
            while self.tokens >= 1.0
                && budget > 0
                && self.opened < self.spec.quota
                && self.in_flight < self.spec.concurrency
                && !self.free.is_empty()
            {
                self.tokens -= 1.0;
                budget -= 1;
                self.opened += 1;
                let target = ((self.spec.id + self.opened) % self.spec.targets.len()) as u16;
                self.start_connect(target, None);
            }
            if self.opened < self.spec.quota {
                wait = Duration::from_millis(5);
            }
            while let Some(&Reverse((at, attempt, target))) = self.reconnects.peek() {
                if budget == 0 {
                    wait = Duration::ZERO;
                    break;
                }
                if at > now || self.free.is_empty() {
                    if at > now {
                        wait = wait.min(at - now);
                    }
                    break;
                }
                self.reconnects.pop();
                budget -= 1;
                self.spec.stats.attempts.fetch_add(1, Ordering::Relaxed);
                self.start_connect(target, Some(attempt));
            }
            if let Some(w) = self.pace_echo(now) {
                wait = wait.min(w);
            }
            self.send_pings(now);
        }
        self.expire(now);
        if self.spec.stop.load(Ordering::Relaxed) && !self.stopping() {
            self.fanout_tail();
            self.close_all(now);
        }
        if let Some(since) = self.closing_since {
            if self.conns.is_empty() {
                self.done = true;
            } else if now - since > self.spec.close_timeout {
                self.abort_all();
                if now - since > self.spec.close_timeout * 2 {
                    self.done = true; // the kernel finishes the closes; nothing waits on them
                }
            }
        }
        wait
    }

    /// The main thread moved the run on.
    fn on_control(&mut self) {
        if self.control == CUT && !self.cut_done {
            self.cut_done = true;
            let open: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| c.phase == Phase::Open)
                .map(|(i, _)| i)
                .collect();
            for idx in open {
                self.spec.stats.close_reason("cut_by_loadgen");
                self.finish(idx);
            }
        }
        if let Mode::Echo { rate, .. } = self.spec.mode {
            if self.control >= STEADY && self.control != CUT {
                match rate {
                    None => {
                        // Closed loop: every open connection starts its first round trip.
                        let open: Vec<usize> = self
                            .conns
                            .iter()
                            .filter(|(_, c)| c.phase == Phase::Open)
                            .map(|(i, _)| i)
                            .collect();
                        for idx in open {
                            self.send_echo(idx, self.spec.stats.now_ns());
                        }
                    }
                    Some(_) if self.schedule.is_none() => {
                        self.schedule = Some((Instant::now(), 0));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Open loop: send every message whose intended time has come, stamped with that time.
    fn pace_echo(&mut self, now: Instant) -> Option<Duration> {
        let Mode::Echo {
            rate: Some(rate), ..
        } = self.spec.mode
        else {
            return None;
        };
        let (t0, mut sent) = self.schedule?;
        let due = ((now - t0).as_secs_f64() * rate) as u64;
        let epoch = self.spec.stats.epoch;
        // Bounded per tick; a schedule that falls further behind shows up as latency.
        let mut budget = 100_000;
        while sent < due && budget > 0 {
            budget -= 1;
            let intended = t0 + Duration::from_secs_f64(sent as f64 / rate);
            let stamp = (intended - epoch).as_nanos() as u64;
            sent += 1;
            let Some(idx) = self.next_open() else {
                self.spec.stats.echo_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            self.send_echo(idx, stamp);
        }
        self.schedule = Some((t0, sent));
        let next = t0 + Duration::from_secs_f64(sent as f64 / rate);
        Some(
            next.saturating_duration_since(now)
                .max(Duration::from_micros(200)),
        )
    }

    /// Own pings: visit the slab evenly so each open connection gets one Ping per interval
    /// (no per-connection timer, like the server's heartbeat sweep).
    fn send_pings(&mut self, now: Instant) {
        let Some(every) = self.spec.ping_interval else {
            return;
        };
        let cap = self.conns.capacity().max(1);
        let share = (now - self.ping_last).as_secs_f64() / every.as_secs_f64().max(1e-3);
        let visit = ((cap as f64) * share) as usize;
        if visit == 0 {
            return;
        }
        self.ping_last = now;
        for _ in 0..visit.min(cap) {
            let idx = self.ping_cursor % cap;
            self.ping_cursor = (idx + 1) % cap;
            if self.conns.get(idx).is_some_and(|c| c.phase == Phase::Open) {
                self.spec.stats.pings_sent.fetch_add(1, Ordering::Relaxed);
                self.send_control(idx, &PING);
            }
        }
    }

    fn next_open(&mut self) -> Option<usize> {
        while !self.rr.is_empty() {
            if self.rr_pos >= self.rr.len() {
                self.rr_pos = 0;
            }
            let (idx, generation) = self.rr[self.rr_pos];
            if self
                .conns
                .get(idx)
                .is_some_and(|c| c.generation == generation && c.phase == Phase::Open)
            {
                self.rr_pos += 1;
                return Some(idx);
            }
            self.rr.swap_remove(self.rr_pos);
        }
        None
    }

    /// Make room for `n` SQEs: submit what is queued, and move completions out to
    /// `deferred` (processed by the thread loop) so a full completion queue never stalls
    /// submission. Bounded: gives up (and records why) if the kernel keeps refusing.
    fn make_room(&mut self, n: usize) -> bool {
        for _ in 0..1000 {
            let sq = self.ring.submission();
            if sq.capacity() - sq.len() >= n {
                return true;
            }
            drop(sq);
            if let Err(e) = holdfast::reactor::enter_nonblocking(&mut self.ring) {
                self.spec.stats.close_reason(&format!(
                    "io_uring_enter_error_{}",
                    e.raw_os_error().unwrap_or(0)
                ));
                return false;
            }
            self.deferred.extend(self.ring.completion());
        }
        self.spec.stats.close_reason("submission_queue_stuck");
        false
    }

    /// Queue SQEs together (a linked chain is never split across two submissions, which
    /// would break the link).
    fn push_all(&mut self, sqes: &[squeue::Entry]) {
        if !self.make_room(sqes.len()) {
            return;
        }
        for sqe in sqes {
            // SAFETY: SQEs reference the boxed socket addresses (`dsts`, `srcs`, alive for
            // the engine's life, which outlasts the ring's operations: the ring is dropped
            // first), the static ONE and PONG, the targets' request bytes (an Arc held by
            // `spec`), or a connection's `out` buffer, which is not touched while
            // `send_inflight` is set and whose connection is not removed until that send
            // completes.
            let pushed = unsafe { self.ring.submission().push(sqe) };
            debug_assert!(pushed.is_ok(), "make_room guaranteed the space");
        }
    }

    fn push(&mut self, sqe: squeue::Entry) {
        self.push_all(std::slice::from_ref(&sqe));
    }

    fn start_connect(&mut self, target: u16, attempt: Option<u16>) {
        let Some(slot) = self.free.pop() else { return };
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let idx = self.conns.insert(Conn {
            slot,
            generation,
            phase: Phase::Connecting,
            target,
            attempt,
            hint_ms: 0,
            started_us: self.spec.stats.now_ns().wrapping_div(1000) as u32,
            decoder: Decoder::new(Role::Client),
            pending: Vec::new(),
            out: Vec::new(),
            queued: Vec::new(),
            send_inflight: false,
            closed: false,
            step_error: 0,
            poll_armed: false,
            recv_inflight: false,
            recv_again: false,
            hup: false,
            stamp: 0,
            stamp_got: 0,
            last_seq: 0,
            msg_len: 0,
        });
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
        let t = &self.spec.targets[usize::from(target)];
        let domain = if t.addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let Ok(dest) = types::DestinationSlot::try_from_slot_target(slot) else {
            return;
        };
        let chain = squeue::Flags::IO_LINK;
        let step = token(OP_STEP, idx, generation);
        let socket = opcode::Socket::new(domain, libc::SOCK_STREAM, 0)
            .file_index(Some(dest))
            .build()
            .flags(chain)
            .user_data(step);
        let nop = opcode::SetSockOpt::new(
            types::Fixed(slot),
            libc::IPPROTO_IP as u32,
            libc::IP_BIND_ADDRESS_NO_PORT as u32,
            (&ONE as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
        .build()
        .flags(chain)
        .user_data(step);
        let bind = opcode::Bind::new(types::Fixed(slot), src.cast(), src_len)
            .build()
            .flags(chain)
            .user_data(step);
        let dst = &self.dsts[usize::from(target)];
        let connect = opcode::Connect::new(
            types::Fixed(slot),
            (&dst.0 as *const libc::sockaddr_storage).cast(),
            dst.1,
        )
        .build()
        .user_data(tok);
        self.push_all(&[socket, nop, bind, connect]);
    }

    fn fail(&mut self, idx: usize, why: Failure) {
        let c = &mut self.conns[idx];
        if matches!(c.phase, Phase::Connecting | Phase::Handshaking) {
            self.in_flight -= 1;
            self.spec.stats.fail(why);
        }
        self.finish(idx);
    }

    /// Drop the connection: shutdown (ends the armed receive), then close the slot. In a
    /// storm (past the ramp, not stopping) the loss or failed attempt schedules a reconnect.
    fn finish(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.phase == Phase::Closed {
            return;
        }
        let was = c.phase;
        if was == Phase::Open || was == Phase::Closing {
            self.spec.stats.open.fetch_sub(1, Ordering::Relaxed);
        }
        c.phase = Phase::Closed;
        let (slot, generation, target, attempt, hint) =
            (c.slot, c.generation, c.target, c.attempt, c.hint_ms);
        // Hard-linked: shutdown is punted to a kernel worker, so an unlinked close (which
        // runs inline) would empty the slot first and the shutdown would fail with EBADF —
        // leaving the socket open under its armed receive. Hard, so a failed shutdown
        // (never connected) still closes the slot.
        let shut = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
            .build()
            .flags(squeue::Flags::IO_HARDLINK)
            .user_data(token(OP_SHUTDOWN, idx, generation));
        let close = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(token(OP_CLOSE, idx, generation));
        self.push_all(&[shut, close]);
        if self.conns[idx].poll_armed {
            // A multishot poll holds the socket and outlives shutdown and close: remove it.
            let remove = opcode::PollRemove::new(token(OP_POLL, idx, generation))
                .build()
                .user_data(token(OP_POLL_REMOVE, idx, generation));
            self.push(remove);
        }
        if let Mode::Storm(policy) = self.spec.mode {
            if self.control >= STEADY && !self.stopping() {
                let stats = &self.spec.stats;
                let next = if was == Phase::Open {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    stats.awaiting.fetch_add(1, Ordering::Relaxed);
                    stats
                        .first_loss_ns
                        .fetch_min(stats.now_ns(), Ordering::Relaxed);
                    Some(0u32)
                } else {
                    attempt.map(|a| u32::from(a) + 1)
                };
                match next {
                    Some(a) if a < policy.max_attempts => {
                        let r = self.rng.next_u64();
                        let delay = if a == 0 && hint > 0 && policy.honor_hint {
                            Duration::from_millis(u64::from(hint))
                        } else {
                            policy.delay(a, r)
                        };
                        let _ = self.out.delay_us.record(delay.as_micros().max(1) as u64);
                        // A failed attempt tries the next target (a client's endpoint list).
                        let n = self.spec.targets.len() as u16;
                        let t = if a == 0 { target } else { (target + 1) % n };
                        self.reconnects
                            .push(Reverse((Instant::now() + delay, a as u16, t)));
                    }
                    Some(_) => {
                        self.spec.stats.gave_up.fetch_add(1, Ordering::Relaxed);
                        self.spec.stats.awaiting.fetch_sub(1, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
        }
    }

    /// Queue bytes; false if the connection's backlog is full.
    fn send(&mut self, idx: usize, bytes: &[u8]) -> bool {
        let c = &mut self.conns[idx];
        if c.queued.len() + bytes.len() > MAX_QUEUED {
            return false;
        }
        c.queued.extend_from_slice(bytes);
        self.flush(idx);
        true
    }

    /// Queue a control frame; a connection whose backlog is full is dropped.
    fn send_control(&mut self, idx: usize, bytes: &[u8]) {
        if !self.send(idx, bytes) {
            self.spec.stats.close_reason("client_backlog");
            self.finish(idx);
        }
    }

    fn send_echo(&mut self, idx: usize, stamp: u64) {
        let Mode::Echo { size, .. } = self.spec.mode else {
            return;
        };
        let c = &mut self.conns[idx];
        if c.phase != Phase::Open {
            return;
        }
        if c.queued.len() + self.template.len() > MAX_QUEUED {
            self.spec.stats.echo_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let at = c.queued.len();
        c.queued.extend_from_slice(&self.template);
        let payload = at + self.template.len() - size;
        for (i, b) in stamp.to_le_bytes().iter().enumerate() {
            c.queued[payload + i] = b ^ MASK[i % 4];
        }
        self.spec.stats.echo_sent.fetch_add(1, Ordering::Relaxed);
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
        let waiting = self.reconnects.len();
        if waiting > 0 {
            self.spec.stats.close_reason("reconnect_pending_at_end");
            self.reconnects.clear();
        }
        let mut frame = Vec::new();
        encode_close(&mut frame, Some(CloseCode::NORMAL), "", Some(MASK));
        let idxs: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for idx in idxs {
            match self.conns[idx].phase {
                Phase::Open => {
                    self.conns[idx].phase = Phase::Closing;
                    let _ = self.conns[idx].decoder.close_state_mut().on_send();
                    // Past the backlog cap the close cannot be queued: drop the socket.
                    let c = &mut self.conns[idx];
                    if c.queued.len() + frame.len() > MAX_QUEUED {
                        self.finish(idx);
                    } else {
                        c.queued.extend_from_slice(&frame);
                        self.flush(idx);
                    }
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
        if op == OP_SHUTDOWN && res < 0 && res != -libc::ENOTCONN {
            self.spec
                .stats
                .close_reason(&format!("shutdown_error_{}", -res));
        }
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
            OP_STEP => {
                // The first failing step's error; the connect then completes -ECANCELED and
                // the failure is counted once, under this error.
                let c = &mut self.conns[idx];
                if res < 0 && c.step_error == 0 {
                    c.step_error = res;
                }
            }
            OP_CHAIN => {
                let step = self.conns[idx].step_error;
                self.on_connected(idx, if step < 0 { step } else { res })
            }
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
                    let mut rest = c.out.split_off(res as usize);
                    rest.extend_from_slice(&c.queued);
                    c.queued = rest;
                    self.flush(idx);
                } else {
                    self.flush(idx);
                }
            }
            OP_RECV => self.on_recv(bufs, idx, res, flags),
            OP_POLL => self.on_poll(idx, res, flags),
            OP_RECV_ONE => self.on_recv_one(bufs, idx, res, flags),
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
                        let mut q = PONG[r as usize..].to_vec();
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
            self.split.remove(&idx);
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
        let req = &self.spec.targets[usize::from(c.target)].request;
        let send = opcode::Send::new(types::Fixed(slot), req.as_ptr(), req.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(OP_IGNORE, idx, generation));
        let read = match self.spec.read_mode {
            ReadMode::Recv => opcode::RecvMulti::new(types::Fixed(slot), 0)
                .build()
                .user_data(token(OP_RECV, idx, generation)),
            ReadMode::Poll => {
                c.poll_armed = true;
                Self::poll_sqe(slot, idx, generation)
            }
        };
        self.push_all(&[send, read]);
    }

    fn poll_sqe(slot: u32, idx: usize, generation: u32) -> squeue::Entry {
        opcode::PollAdd::new(types::Fixed(slot), (libc::POLLIN | libc::POLLRDHUP) as u32)
            .multi(true)
            .build()
            .user_data(token(OP_POLL, idx, generation))
    }

    /// Poll mode: the socket is readable (or hung up).
    fn on_poll(&mut self, idx: usize, res: i32, flags: u32) {
        let c = &mut self.conns[idx];
        if !cqueue::more(flags) {
            c.poll_armed = false;
        }
        if c.phase == Phase::Closed {
            return self.maybe_remove(idx);
        }
        if res < 0 {
            // The poll failed (not a removal: removals happen only once Closed).
            return self.on_read_end(idx, res);
        }
        if res & i32::from(libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            c.hup = true;
        }
        if !c.poll_armed {
            c.poll_armed = true;
            let sqe = Self::poll_sqe(c.slot, idx, c.generation);
            self.push(sqe);
        }
        self.recv_one(idx);
    }

    /// Poll mode: one non-blocking receive into a provided buffer, unless one is in flight
    /// (then it runs again when that completes).
    fn recv_one(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.recv_inflight {
            c.recv_again = true;
            return;
        }
        c.recv_inflight = true;
        c.recv_again = false;
        let sqe = opcode::Recv::new(types::Fixed(c.slot), std::ptr::null_mut(), BUF_SIZE)
            .buf_group(0)
            .flags(libc::MSG_DONTWAIT)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(token(OP_RECV_ONE, idx, c.generation));
        self.push(sqe);
    }

    fn on_recv_one(&mut self, bufs: &mut BufRing, idx: usize, res: i32, flags: u32) {
        let c = &mut self.conns[idx];
        c.recv_inflight = false;
        if c.phase == Phase::Closed {
            if let Some(bid) = cqueue::buffer_select(flags) {
                bufs.recycle(bid);
            }
            return self.maybe_remove(idx);
        }
        if res == -libc::EAGAIN || res == -libc::ENOBUFS {
            // Nothing after all (the poll raced a previous receive), or no buffer free now:
            // try again only if the poll fired meanwhile (ENOBUFS: always).
            if res == -libc::ENOBUFS || c.recv_again {
                self.recv_one(idx);
            }
            return;
        }
        if res <= 0 {
            return self.on_read_end(idx, res);
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return;
        };
        let data = bufs.slice_mut(bid, res as usize);
        self.on_bytes(idx, data);
        bufs.recycle(bid);
        if let Some(c) = self.conns.get(idx) {
            if c.phase != Phase::Closed && (res as u32 == BUF_SIZE || c.recv_again || c.hup) {
                self.recv_one(idx);
            }
        }
    }

    fn on_recv(&mut self, bufs: &mut BufRing, idx: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if res <= 0 {
            if res == -libc::ENOBUFS {
                self.rearm(idx);
                return;
            }
            return self.on_read_end(idx, res);
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

    /// The read side ended: EOF (`res` 0) or an error.
    fn on_read_end(&mut self, idx: usize, res: i32) {
        {
            match self.conns[idx].phase {
                Phase::Handshaking => {
                    let why = if res == 0 {
                        "handshake_eof".to_string()
                    } else {
                        format!("handshake_errno_{}", -res)
                    };
                    self.spec.stats.close_reason(&why);
                    self.fail(idx, Failure::Reset)
                }
                Phase::Open => {
                    self.spec
                        .stats
                        .close_reason(if res == 0 { "eof" } else { "reset" });
                    self.finish(idx);
                }
                Phase::Closing => self.finish(idx),
                _ => self.maybe_remove(idx),
            }
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
            // `pending` holds the response head until it is complete.
            c.pending.extend_from_slice(data);
            let Some(end) = c.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.pending.len() > 8192 {
                    self.fail(idx, Failure::Protocol);
                }
                return;
            };
            let head = std::mem::take(&mut c.pending);
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
            let t = &self.spec.targets[usize::from(c.target)];
            let accept = std::str::from_utf8(&t.accept).unwrap_or("");
            let ok = text.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == accept
                })
            });
            if !ok {
                return self.fail(idx, Failure::Protocol);
            }
            let now_us = (self.spec.stats.now_ns() / 1000) as u32;
            let micros = u64::from(now_us.wrapping_sub(c.started_us).max(1));
            let _ = self.out.connect_us.record(micros);
            c.phase = Phase::Open;
            let (generation, reconnect) = (c.generation, c.attempt.is_some());
            self.in_flight -= 1;
            let stats = &self.spec.stats;
            stats.established.fetch_add(1, Ordering::Relaxed);
            stats.open.fetch_add(1, Ordering::Relaxed);
            if reconnect {
                stats.reconnected.fetch_add(1, Ordering::Relaxed);
                stats.awaiting.fetch_sub(1, Ordering::Relaxed);
                stats
                    .last_reconnect_ns
                    .fetch_max(stats.now_ns(), Ordering::Relaxed);
            }
            if let Mode::Echo { rate, .. } = self.spec.mode {
                if rate.is_some() {
                    self.rr.push((idx, generation));
                } else if self.control >= STEADY {
                    self.send_echo(idx, self.spec.stats.now_ns());
                }
            }
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
                        self.send_control(idx, &f);
                    }
                }
                Some(Event::Data {
                    range,
                    first,
                    last,
                    kind,
                }) => {
                    let piece = &buf[base + range.start..base + range.end];
                    if matches!(self.spec.mode, Mode::Fanout { .. }) {
                        self.on_fanout_data(idx, piece, kind == DataKind::Binary, first, last);
                    } else {
                        self.on_data(idx, piece, first, last);
                    }
                }
                Some(Event::Close {
                    code,
                    reason,
                    reply,
                }) => {
                    self.spec.stats.close_code(code.map_or(1005, |c| c.0));
                    let reason = &buf[base + reason.start..base + reason.end];
                    self.conns[idx].hint_ms = reconnect_hint(reason);
                    if let Some(echo) = reply {
                        let mut f = Vec::new();
                        encode_close(&mut f, echo, "", Some(MASK));
                        let _ = self.send(idx, &f);
                    }
                    done = true;
                    break;
                }
                Some(Event::Pong(_)) => {
                    self.spec.stats.pongs.fetch_add(1, Ordering::Relaxed);
                }
            }
            if self.conns[idx].phase == Phase::Closed {
                return;
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

    /// A piece of a data message. Echo mode reads the stamp from the first 8 bytes and, at
    /// the last piece, records the round trip and (closed loop) sends the next message.
    fn on_data(&mut self, idx: usize, piece: &[u8], first: bool, last: bool) {
        let Mode::Echo { size, rate } = self.spec.mode else {
            if last {
                self.spec.stats.messages.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let c = &mut self.conns[idx];
        if first {
            c.stamp = 0;
            c.stamp_got = 0;
            c.msg_len = 0;
        }
        for &b in piece.iter().take(usize::from(8 - c.stamp_got)) {
            c.stamp |= u64::from(b) << (8 * c.stamp_got);
            c.stamp_got += 1;
        }
        c.msg_len = c.msg_len.saturating_add(piece.len() as u32);
        if !last {
            return;
        }
        let stats = &self.spec.stats;
        stats.messages.fetch_add(1, Ordering::Relaxed);
        let now = stats.now_ns();
        if c.msg_len as usize != size || c.stamp_got != 8 || c.stamp > now {
            stats.echo_mismatch.fetch_add(1, Ordering::Relaxed);
        } else if self.control == MEASURE
            && c.stamp >= stats.measure_from_ns.load(Ordering::Relaxed)
        {
            // The histogram is the count of measured round trips.
            let _ = self.out.rtt_ns.record((now - c.stamp).max(1));
        }
        if rate.is_none() && !self.stopping() {
            self.send_echo(idx, now);
        }
    }

    /// Fanout: a piece of a delivery; whole messages are checked against the connection's
    /// last sequence number and timed from their stamp.
    fn on_fanout_data(&mut self, idx: usize, piece: &[u8], binary: bool, first: bool, last: bool) {
        let parsed = if first && last {
            crate::fanout::parse_delivery(binary, piece)
        } else {
            let buf = self.split.entry(idx).or_default();
            if first {
                buf.clear();
            }
            buf.extend_from_slice(piece);
            if !last {
                return;
            }
            let whole = self.split.remove(&idx).unwrap_or_default();
            crate::fanout::parse_delivery(binary, &whole)
        };
        let stats = &self.spec.stats;
        let c = &mut self.conns[idx];
        match parsed {
            Parsed::Subscribed { seq } => c.last_seq = seq,
            Parsed::Gap { from, to } => {
                stats.fanout_gaps.fetch_add(1, Ordering::Relaxed);
                stats
                    .fanout_gap_messages
                    .fetch_add(to.saturating_sub(from) + 1, Ordering::Relaxed);
                if from > c.last_seq + 1 {
                    stats
                        .fanout_lost
                        .fetch_add(from - c.last_seq - 1, Ordering::Relaxed);
                }
                c.last_seq = c.last_seq.max(to);
            }
            Parsed::Message { seq, stamp } => {
                stats.messages.fetch_add(1, Ordering::Relaxed);
                if seq == c.last_seq {
                    stats.fanout_duplicates.fetch_add(1, Ordering::Relaxed);
                } else if seq < c.last_seq {
                    stats.fanout_reordered.fetch_add(1, Ordering::Relaxed);
                } else {
                    if seq > c.last_seq + 1 {
                        stats
                            .fanout_lost
                            .fetch_add(seq - c.last_seq - 1, Ordering::Relaxed);
                    }
                    c.last_seq = seq;
                }
                let now = stats.now_ns();
                if let Some(stamp) = stamp {
                    if self.control == MEASURE
                        && stamp <= now
                        && stamp >= stats.measure_from_ns.load(Ordering::Relaxed)
                    {
                        let _ = self.out.rtt_ns.record((now - stamp).max(1));
                    }
                }
            }
            Parsed::Other => {}
        }
    }

    /// Fanout, at the end: messages published on each connection's topic that it never got.
    fn fanout_tail(&mut self) {
        let Mode::Fanout {
            per_topic,
            ref last,
        } = self.spec.mode
        else {
            return;
        };
        let mut lost = 0;
        for (_, c) in self.conns.iter().filter(|(_, c)| c.phase == Phase::Open) {
            let topic = usize::from(c.target) / per_topic.max(1);
            let newest = last.get(topic).map_or(0, |a| a.load(Ordering::Relaxed));
            lost += newest.saturating_sub(c.last_seq);
        }
        self.spec
            .stats
            .fanout_tail_lost
            .fetch_add(lost, Ordering::Relaxed);
    }

    /// Answer an empty Ping (every server heartbeat) from a static frame when nothing else
    /// is queued: no allocation per heartbeat.
    fn pong_empty(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.send_inflight || !c.queued.is_empty() {
            return self.send_control(idx, &PONG);
        }
        c.send_inflight = true;
        let sqe = opcode::Send::new(types::Fixed(c.slot), PONG.as_ptr(), PONG.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(OP_SEND_STATIC, idx, c.generation));
        self.push(sqe);
    }
}

static PONG: [u8; 6] = [0x8A, 0x80, MASK[0], MASK[1], MASK[2], MASK[3]];
static PING: [u8; 6] = [0x89, 0x80, MASK[0], MASK[1], MASK[2], MASK[3]];

/// `reconnect_after_ms` from a holdfast drain reason (`{"reason":"draining",
/// "reconnect_after_ms":N}`), capped at 10 minutes; 0 when absent.
pub fn reconnect_hint(reason: &[u8]) -> u32 {
    const KEY: &[u8] = b"\"reconnect_after_ms\":";
    let Some(at) = reason.windows(KEY.len()).position(|w| w == KEY) else {
        return 0;
    };
    let digits = reason[at + KEY.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .take(9)
        .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    digits.min(600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceiling_doubles_to_the_cap_and_jitter_stays_below_it() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 10,
            jitter: false,
            honor_hint: false,
        };
        let got: Vec<u128> = (0..7).map(|a| b.delay(a, 0).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 2000, 2000]);
        let j = Backoff { jitter: true, ..b };
        for (a, r) in [(0, u64::MAX), (3, 12345), (30, 999_999_999_999)] {
            assert!(j.delay(a, r) < b.delay(a, 0));
        }
        assert_ne!(j.delay(2, 1), j.delay(2, 2));
    }

    #[test]
    fn connection_state_stays_small() {
        // Printed for the record (docs/loadgen.md); bounded so growth is a decision.
        let size = std::mem::size_of::<Conn>();
        println!("loadgen Conn: {size} bytes");
        assert!(size <= 160, "{size}");
    }

    #[test]
    fn drain_hint_is_read_from_the_close_reason() {
        assert_eq!(
            reconnect_hint(br#"{"reason":"draining","reconnect_after_ms":1234}"#),
            1234
        );
        assert_eq!(reconnect_hint(b"going away"), 0);
        assert_eq!(
            reconnect_hint(br#""reconnect_after_ms":99999999999"#),
            600_000
        );
    }
}
