//! Engines: one io_uring [`Ring`] each (from `holdfast::io`, the server's own io layer),
//! whose registered file table holds its sockets as direct descriptors, so a process is
//! not bounded by `ulimit -n`. One thread drives several engines: each ring signals its own
//! eventfd and the thread waits on all of them with one `ppoll`, so 2M connections need
//! ~100 rings but only one thread per core.
//!
//! A connection is opened by the ring's linked connect chain into a free slot, then the
//! shared upgrade request is sent and the socket's read machine reads the 101 and frames;
//! pings are answered. What open connections do is the scenario's business
//! (`crate::scenario`): the engine calls its hooks on open, on each whole message, on each
//! tick, on a change of run phase and when a connection is lost.
//!
//! The engine counts in plain integers ([`Counts`]) that its thread publishes once per
//! 10 ms (see `crate::counters`).

pub mod conn;
mod input;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use holdfast::io::{AddrId, Op, ReadMode, Ring, RingConfig, SendBuf, Socket, TASK_WORK_CHECK};
use holdfast::ws::frame::encode_close;
use holdfast::ws::CloseCode;
use slab::Slab;

pub use conn::{reconnect_hint, Conn, Phase, MAX_QUEUED};

use crate::counters::{Board, CloseKey, Control, Counts, Failure, Keyed, C, CUT, STEADY};
use crate::scenario::{Mode, Work};
use crate::target::Target;

/// Bytes per provided buffer (a receive that fills one may have left more behind).
const BUF_SIZE: u32 = 2048;
/// How many deliveries may share one clock reading (`Engine::delivery_now_ns`).
const DELIVERY_CLOCK_REUSE: u32 = 16;

/// The masking key of every client frame. RFC 6455 asks for unpredictable keys to protect
/// intermediaries from cache poisoning by hostile scripts; a load generator's frames carry
/// no attacker-chosen bytes, and a fixed key lets pongs and closes share static frames.
pub const MASK: [u8; 4] = [0x4c, 0x6f, 0x61, 0x64];
static PONG: [u8; 6] = [0x8A, 0x80, MASK[0], MASK[1], MASK[2], MASK[3]];
static PING: [u8; 6] = [0x89, 0x80, MASK[0], MASK[1], MASK[2], MASK[3]];

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
    /// The run phase and the measurement start, from the reporting thread.
    pub control: Arc<Control>,
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

/// What an engine (or a thread of engines) hands back at the end.
#[derive(Debug, Clone)]
pub struct Output {
    /// Connect + upgrade latency, µs.
    pub connect_us: Histogram<u64>,
    /// Echo round trip (or publish → delivery) from the intended send time, ns.
    pub rtt_ns: Histogram<u64>,
    /// Storm: reconnect delays chosen, µs.
    pub delay_us: Histogram<u64>,
    /// Closes by code or reason, and HTTP statuses.
    pub keyed: Keyed,
    /// Final counters.
    pub counts: Counts,
    /// The CPUs the engine threads were allowed to run on once pinned (sorted, each once).
    pub cpus: Vec<usize>,
}

impl Output {
    /// Empty histograms.
    pub fn new() -> Result<Self, String> {
        let h = |hi| Histogram::new_with_bounds(1, hi, 3).map_err(|e| e.to_string());
        Ok(Self {
            connect_us: h(3_600_000_000)?,
            rtt_ns: h(3_600_000_000_000)?,
            delay_us: h(3_600_000_000)?,
            keyed: Keyed::new(),
            counts: Counts::default(),
            cpus: Vec::new(),
        })
    }

    /// Add another output's samples.
    pub fn add(&mut self, o: &Self) -> Result<(), String> {
        self.connect_us
            .add(&o.connect_us)
            .map_err(|e| e.to_string())?;
        self.rtt_ns.add(&o.rtt_ns).map_err(|e| e.to_string())?;
        self.delay_us.add(&o.delay_us).map_err(|e| e.to_string())?;
        for (k, n) in &o.keyed {
            *self.keyed.entry(*k).or_insert(0) += n;
        }
        self.counts.merge(&o.counts);
        self.cpus.extend(&o.cpus);
        self.cpus.sort_unstable();
        self.cpus.dedup();
        Ok(())
    }
}

/// One ring and its connections.
pub struct Engine {
    pub(crate) ring: Ring,
    pub(crate) conns: Slab<Conn>,
    free: Vec<u32>,
    generation: u32,
    pub(crate) spec: EngineSpec,
    dsts: Vec<AddrId>,
    srcs: Vec<AddrId>,
    next_src: usize,
    opened: usize,
    in_flight: usize,
    deadlines: VecDeque<(u32, u32, Instant)>,
    closing_since: Option<Instant>,
    pub(crate) out: Output,
    /// This engine's counters (published by its thread).
    pub(crate) counts: Counts,
    tokens: f64,
    last: Instant,
    /// The run phase as last read from `Control`.
    pub(crate) phase: u8,
    /// Stamps at or after this count (read when measuring starts).
    pub(crate) measure_from: u64,
    cut_done: bool,
    pub(crate) rng: holdfast::jitter::Jitter,
    done: bool,
    ping_cursor: usize,
    ping_last: Instant,
    /// The last reap found completions: enter again without waiting. A DEFER_TASKRUN ring
    /// runs at most 20 deferred items per enter and signals its eventfd only when the list
    /// was empty, so leftovers would otherwise wait for the next sweep.
    hot: bool,
    /// The clock as last read for a delivery, and how many deliveries have used that
    /// reading (see `delivery_now_ns`).
    delivery_clock: (u64, u32),
    /// What the scenario keeps.
    pub(crate) work: Work,
    /// Storm: (when, attempt, target) of reconnects waiting for their delay.
    pub(crate) reconnects: BinaryHeap<Reverse<(Instant, u16, u16)>>,
    /// wss://: plaintext of one read, reused.
    pub(crate) tls_plain: Vec<u8>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.spec.id)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// Run several engines on this thread until all are done, publishing their counters to
/// `board`; returns their merged output (with the CPUs this thread was allowed on once
/// pinned). Pins to `cpu` when given; runs at `nice` (see `crate::run::launch`: the
/// reporting thread must not starve behind engines).
pub fn run_thread(
    specs: Vec<EngineSpec>,
    cpu: Option<usize>,
    nice: i32,
    board: Arc<Board>,
) -> Result<Output, String> {
    if let Some(cpu) = cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    holdfast::io::sys::set_thread_nice(nice);
    let mut engines = specs
        .into_iter()
        .map(Engine::new)
        .collect::<Result<Vec<_>, _>>()?;
    // Each ring signals its eventfd and the thread waits on all of them with one `ppoll`;
    // since a signal sent from another task's softirq can come through an RCU callback
    // 5–20 ms late (perf tracepoints against holdfast's worker), the wait is cut to
    // `TASK_WORK_CHECK` and every ring whose SQ flags say task work is pending is entered
    // too (IORING_SETUP_TASKRUN_FLAG: a read of shared memory, no system call). Without that
    // check a TLS setup with one opening in flight took 28 ms at the median; waiting in the
    // ring's own io_uring_enter instead woke at once but read uWebSockets' fan-out sockets
    // every ~15 frames instead of ~9 (docs/loadgen.md, "Waiting for completions").
    let mut pfds: Vec<libc::pollfd> = engines
        .iter()
        .map(|e| libc::pollfd {
            fd: e.ring.eventfd().unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut cqes = Vec::with_capacity(16384);
    let mut last_sweep = Instant::now();
    let mut last_publish = Instant::now();
    loop {
        let now = Instant::now();
        let mut wait = TASK_WORK_CHECK;
        for e in engines.iter_mut().filter(|e| !e.done) {
            wait = wait.min(e.tick(now));
            if e.hot || e.ring.has_completions() {
                wait = Duration::ZERO;
            }
        }
        if now - last_publish >= Duration::from_millis(10) {
            last_publish = now;
            publish(&engines, &board);
        }
        if engines.iter().all(|e| e.done) {
            break;
        }
        for e in &mut engines {
            if e.ring.has_pending() {
                e.enter()?;
            }
        }
        let n = holdfast::io::sys::poll_fds(&mut pfds, wait);
        // Every ring is reaped at least every 50 ms whatever its eventfd and flags said.
        let sweep = last_sweep.elapsed() >= Duration::from_millis(50);
        if sweep {
            last_sweep = Instant::now();
        }
        for (e, p) in engines.iter_mut().zip(pfds.iter_mut()) {
            let signalled = n > 0 && p.revents != 0;
            p.revents = 0;
            let ready = signalled || e.hot || e.ring.task_work_pending();
            if e.done || !(ready || sweep) {
                continue;
            }
            if signalled {
                e.ring.clear_eventfd();
            }
            e.enter()?;
            cqes.clear();
            e.hot = e.ring.reap(&mut cqes) > 0;
            e.delivery_clock.1 = DELIVERY_CLOCK_REUSE;
            for c in cqes.drain(..) {
                e.complete(c);
            }
        }
    }
    publish(&engines, &board);
    let mut out = Output::new()?;
    out.cpus = holdfast::topology::allowed_cpus();
    for e in &mut engines {
        e.out.counts = e.counts.clone();
        out.add(&e.out)?;
    }
    Ok(out)
}

fn publish(engines: &[Engine], board: &Board) {
    let mut sum = Counts::default();
    for e in engines {
        sum.merge(&e.counts);
    }
    board.publish(&sum);
}

impl Engine {
    fn new(spec: EngineSpec) -> Result<Self, String> {
        let mut ring = Ring::new(RingConfig {
            sq_entries: 1024,
            cq_entries: 16384,
            files: spec.table,
            buffers: 512,
            initial_buffers: holdfast::io::bufring::INITIAL_BUFFERS,
            buffer_size: BUF_SIZE,
            eventfd: true,
            // Left ungated: the client's pool grows with its receive bursts (it never
            // shrinks either), as it always has; the server's memory is what is measured.
            gate_receives: false,
        })
        .map_err(|e| holdfast::io::explain_setup_error(&e))?;
        let dsts = spec
            .targets
            .iter()
            .map(|t| ring.register_addr(t.addr))
            .collect();
        let srcs = spec
            .sources
            .iter()
            .map(|ip| ring.register_addr(SocketAddr::new(*ip, 0)))
            .collect();
        let work = Work::new(&spec.mode);
        let now = Instant::now();
        Ok(Self {
            ring,
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
            counts: Counts::default(),
            tokens: 0.0,
            last: now,
            phase: 0,
            measure_from: u64::MAX,
            cut_done: false,
            rng: holdfast::jitter::Jitter::new(spec.id as u64),
            done: false,
            ping_cursor: 0,
            ping_last: now,
            hot: false,
            delivery_clock: (0, u32::MAX),
            work,
            reconnects: BinaryHeap::new(),
            tls_plain: Vec::new(),
            spec,
        })
    }

    /// Submit and run deferred work. While connects are in flight (a ramp, a storm) every
    /// pending item runs in one call; in steady state the cheaper call does (see
    /// `holdfast::io::enter_run_all`: the cheap one runs 20 items per call, and a burst
    /// of 5,000 reconnects then took 1.4–3.4 s to recover instead of 0.2–0.3 s; the
    /// run-all one costs a timer per call, which doubled the loadgen's CPU in open-loop echo).
    fn enter(&mut self) -> Result<(), String> {
        let r = if self.in_flight > 0 {
            self.ring.enter_all()
        } else {
            self.ring.enter()
        };
        r.map_err(|e| format!("io_uring_enter: {e}"))
    }

    pub(crate) fn stopping(&self) -> bool {
        self.closing_since.is_some()
    }

    /// Count a connection that ended for `key`.
    pub(crate) fn close_key(&mut self, key: CloseKey) {
        *self.out.keyed.entry(key).or_insert(0) += 1;
    }

    /// Nanoseconds since the run's epoch.
    pub(crate) fn now_ns(&self) -> u64 {
        self.spec.control.now_ns()
    }

    /// The arrival time of a delivery: the clock read at most every
    /// `DELIVERY_CLOCK_REUSE` deliveries and after every reap. At 2M deliveries/s a clock
    /// read per delivery was 8% of the loadgen's CPU (perf), taken from the server it
    /// shares the cores with; the reading is then at most 16 deliveries' processing (a few
    /// µs) early, against latencies of milliseconds, and never later than per delivery.
    pub(crate) fn delivery_now_ns(&mut self) -> u64 {
        let (at, uses) = &mut self.delivery_clock;
        if *uses >= DELIVERY_CLOCK_REUSE {
            *at = self.spec.control.now_ns();
            *uses = 0;
        }
        *uses += 1;
        *at
    }

    /// Timers, the ramp, reconnects, the scenario's pacing and the end of the run. Returns
    /// how soon it wants to run again.
    fn tick(&mut self, now: Instant) -> Duration {
        let phase = self.spec.control.phase();
        if phase != self.phase {
            self.phase = phase;
            self.on_phase();
        }
        let mut wait = Duration::from_millis(50);
        if !self.stopping() {
            // Connects started per tick are bounded (a chain is 4 SQEs; the SQ holds 1024),
            // so completions are reaped between batches; a storm of due reconnects takes a
            // few ticks of no waiting.
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
                let _ = self.start_connect(target, None);
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
                self.counts.inc(C::Attempts);
                let _ = self.start_connect(target, Some(attempt));
            }
            if let Some(w) = self.pace(now) {
                wait = wait.min(w);
            }
            self.send_pings(now);
        }
        self.expire(now);
        if self.spec.stop.load(Ordering::Relaxed) && !self.stopping() {
            self.at_end();
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

    /// The reporting thread moved the run on.
    fn on_phase(&mut self) {
        if self.phase == CUT && !self.cut_done {
            self.cut_done = true;
            for idx in self.open_conns() {
                self.close_key(CloseKey::Reason("cut_by_loadgen"));
                self.finish(idx);
            }
        }
        if self.phase == crate::counters::MEASURE {
            self.measure_from = self.spec.control.measure_from_ns();
        }
        if self.phase >= STEADY && self.phase != CUT {
            self.on_steady();
        }
    }

    /// Open connections' indexes.
    pub(crate) fn open_conns(&self) -> Vec<u32> {
        self.conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Open)
            .map(|(i, _)| i as u32)
            .collect()
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
                self.counts.inc(C::PingsSent);
                self.send_control(idx as u32, &PING);
            }
        }
    }

    fn start_connect(&mut self, target: u16, attempt: Option<u16>) -> Option<u32> {
        let slot = self.free.pop()?;
        self.generation = self.generation.wrapping_add(1) & holdfast::io::Token::GENERATION_MASK;
        let socket = Socket::new(0, slot, self.generation);
        let started = (self.now_ns() / 1000) as u32;
        let idx = self
            .conns
            .insert(Conn::new(socket, target, attempt, started)) as u32;
        self.in_flight += 1;
        self.deadlines.push_back((
            idx,
            self.generation,
            Instant::now() + self.spec.handshake_timeout,
        ));
        let src = self.srcs[self.next_src % self.srcs.len()];
        self.next_src = self.next_src.wrapping_add(1);
        let dst = self.dsts[usize::from(target)];
        self.ring
            .connect(slot, src, dst, socket.token(Op::Connect, idx));
        Some(idx)
    }

    /// Long-poll: the answer to poll `idx` is in; the client polls again at once from
    /// `cursor`: on the same connection when the server `kept` it, else on a new one (the
    /// answered one closes without counting as a loss). Not while stopping, and not
    /// without a free slot for a new connection (then it is lost).
    pub(crate) fn repoll(&mut self, idx: u32, cursor: Box<str>, kept: bool) {
        if self.stopping() {
            self.close_key(CloseKey::Reason("poll_not_renewed"));
            return self.finish(idx);
        }
        let c = &mut self.conns[idx as usize];
        if kept && !c.socket.sending() {
            let req = self.spec.targets[usize::from(c.target)].poll_request(&cursor);
            c.held = None;
            c.socket.send(&mut self.ring, SendBuf::Owned(req), idx);
            return;
        }
        if self.free.is_empty() {
            self.close_key(CloseKey::Reason("poll_not_renewed"));
            return self.finish(idx);
        }
        let c = &mut self.conns[idx as usize];
        let (target, last_seq) = (c.target, c.last_seq);
        c.phase = Phase::Closed;
        c.held = None;
        c.socket.close(&mut self.ring, self.spec.read_mode, idx);
        if let Some(next) = self.start_connect(target, None) {
            let n = &mut self.conns[next as usize];
            n.cursor = Some(cursor);
            n.last_seq = last_seq;
        }
    }

    pub(crate) fn fail(&mut self, idx: u32, why: Failure) {
        let c = &mut self.conns[idx as usize];
        if matches!(c.phase, Phase::Connecting | Phase::Handshaking) {
            self.in_flight -= 1;
            self.counts.fail(why);
        }
        self.finish(idx);
    }

    /// Drop the connection: shutdown, then close the slot (the socket's close sequence).
    /// In a storm (past the ramp, not stopping) the loss or failed attempt schedules a
    /// reconnect.
    pub(crate) fn finish(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if c.phase == Phase::Closed {
            return;
        }
        let was = c.phase;
        if was == Phase::Open || was == Phase::Closing {
            self.counts.dec(C::Open);
        }
        c.phase = Phase::Closed;
        c.held = None;
        c.tls = None;
        let (target, attempt, hint) = (c.target, c.attempt, c.hint_ms);
        c.socket.close(&mut self.ring, self.spec.read_mode, idx);
        self.on_lost(was, target, attempt, hint);
    }

    /// Queue bytes; false if the connection's backlog is full.
    pub(crate) fn send(&mut self, idx: u32, bytes: &[u8]) -> bool {
        let c = &mut self.conns[idx as usize];
        if c.queued.len() + bytes.len() > MAX_QUEUED {
            return false;
        }
        c.queued.extend_from_slice(bytes);
        self.flush(idx);
        true
    }

    /// Queue a control frame; a connection whose backlog is full is dropped.
    fn send_control(&mut self, idx: u32, bytes: &[u8]) {
        if !self.send(idx, bytes) {
            self.close_key(CloseKey::Reason("client_backlog"));
            self.finish(idx);
        }
    }

    /// Send what is queued, unless a send is in flight (wss://: TLS's own output first,
    /// then what is queued, encrypted once the handshake is over).
    pub(crate) fn flush(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if c.socket.sending() || c.phase == Phase::Closed {
            return;
        }
        if let Some(tls) = c.tls.as_mut() {
            let mut out = tls
                .take_output()
                .unwrap_or_else(|| std::mem::take(&mut c.spare));
            if tls.is_established() && !c.queued.is_empty() {
                if tls.encrypt(&c.queued, &mut out).is_err() {
                    self.close_key(CloseKey::Reason("tls_error"));
                    return self.finish(idx);
                }
                c.queued.clear();
            }
            if out.is_empty() {
                c.spare = out;
                return;
            }
            return c.socket.send(&mut self.ring, SendBuf::Owned(out), idx);
        }
        if c.queued.is_empty() {
            return;
        }
        let next = std::mem::take(&mut c.spare);
        let buf = std::mem::replace(&mut c.queued, next);
        c.socket.send(&mut self.ring, SendBuf::Owned(buf), idx);
    }

    /// Answer an empty Ping (every server heartbeat) from a static frame when nothing else
    /// is queued: no allocation per heartbeat.
    fn pong_empty(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if c.socket.sending() || !c.queued.is_empty() || c.tls.is_some() {
            return self.send_control(idx, &PONG);
        }
        c.socket.send(&mut self.ring, SendBuf::Static(&PONG), idx);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(idx, generation, at)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let pending = self.conns.get(idx as usize).is_some_and(|c| {
                c.socket.generation() == generation
                    && matches!(c.phase, Phase::Connecting | Phase::Handshaking)
            });
            if pending {
                self.fail(idx, Failure::Timeout);
            }
        }
    }

    fn close_all(&mut self, now: Instant) {
        self.closing_since = Some(now);
        if !self.reconnects.is_empty() {
            self.close_key(CloseKey::Reason("reconnect_pending_at_end"));
            self.reconnects.clear();
        }
        let mut frame = Vec::new();
        encode_close(&mut frame, Some(CloseCode::NORMAL), "", Some(MASK));
        let idxs: Vec<u32> = self.conns.iter().map(|(i, _)| i as u32).collect();
        for idx in idxs {
            let t = &self.spec.targets[usize::from(self.conns[idx as usize].target)];
            let plain = t.sse || t.poll;
            match self.conns[idx as usize].phase {
                // An event stream or a poll has no closing handshake: the client just goes.
                Phase::Open if plain => self.finish(idx),
                Phase::Open => {
                    let c = &mut self.conns[idx as usize];
                    c.phase = Phase::Closing;
                    let _ = c.decoder.close_state_mut().on_send();
                    // Past the backlog cap the close cannot be queued: drop the socket.
                    if !self.send(idx, &frame) {
                        self.finish(idx);
                    }
                }
                Phase::Connecting | Phase::Handshaking => self.fail(idx, Failure::Aborted),
                Phase::Closing | Phase::Closed => {}
            }
        }
    }

    fn abort_all(&mut self) {
        let idxs: Vec<u32> = self.conns.iter().map(|(i, _)| i as u32).collect();
        for idx in idxs {
            self.finish(idx);
        }
    }
}
