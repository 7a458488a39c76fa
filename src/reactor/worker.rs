//! One worker: a pinned thread that owns its rings, a slab of connections, its services
//! and its timers, and shares nothing on its hot path.
//!
//! # Event loop
//! Each turn submits what was queued and waits on ring 0 (whose polls cover the other
//! rings' eventfds and the hub's wake-up) for a completion or the next timer tick, then
//! reaps every ring that has work and, on a tick, runs the timers. A completion whose
//! generation no longer matches its slab entry belongs to a connection that is gone and is
//! dropped (its buffer goes back to the ring as it drops).
//!
//! # A connection
//! A [`Conn`] is a sans-IO [`Session`] and an io [`Socket`]. Every completion goes to the
//! socket's machine first, what it yields to the session, and then [`Worker::drive`] carries
//! the session's outputs to the socket: the next send, our FIN, or the close.
//!
//! # Timers
//! No per-connection timer objects: two FIFOs of deadlines (every handshake has the same
//! timeout, and so has every close, so deadlines arrive in order) and a sweep that visits
//! the slab slots whose step is `tick mod B` each tick (the first `64·B` one by one, then
//! runs of 64 neighbours: [`super::SweepStep`]), `B` ticks per ping interval, so every
//! connection is visited once per interval and pings are spread evenly over it.

mod moving;

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::closelog::CloseLog;
use super::deferred::{Deferred, Owed};
use super::gaps::SendGaps;
use super::pace::{self, Pace, Pacer, Usage};
use super::rings::{RingPlan, Rings, HUB_WAKE, TABLE_HEADROOM};
use super::spacing::Spacing;
use super::tls::{Sent, TlsSide};
use super::Conn;
use crate::budget::MemoryBudget;
use crate::histograms::Hists;
use crate::io::{Completion, Extra, Op, Read, ReadMode, Socket, Token, TASK_WORK_CHECK};
use crate::lifecycle::{self, Lifecycle};
use crate::metrics::{Limit, Side, WorkerMetrics};
use crate::session::{self, Answer, Ctx, Phase, Services, Session, Trace};
use crate::slabmap::SlabMap;
use crate::ws::handshake::Rejection;
use crate::ws::CloseCode;

/// Length of a timer tick.
pub const TICK: Duration = Duration::from_millis(100);

/// Deliveries (one message to one connection) made per turn before other work — sends,
/// receives, accepts, timers — gets a go: some 0.3 s of work at the rate one core
/// delivers. Bounded in recipients, not messages: one message to 18,000 subscribers is
/// 18,000 deliveries, and 1,024 such messages once held the worker for 14 s without a tick
/// (no sends completed, no memory budget check). Large enough that a busy connection gets
/// dozens of messages per turn and so per send (each recipient is sent to once per turn):
/// at 256k, 18,000 subscribers got ~14 messages per send and one core delivered 1.75M/s
/// instead of 2.2M/s (bench/results/2026-11-30-overload-18k.md).
const DELIVERY_BATCH: usize = 1024 * 1024;

/// Most messages offered in one run to the same recipients (see `Worker::offer_run`).
const MAX_RUN: usize = 256;

/// Recipients driven, or completions handled, between two looks at the hub's queue while a
/// turn's sends go out (`--fanout-join`, see `Worker::joinable`): ~2–3 ms of sends on
/// loopback, one atomic load each.
const DRIVE_CHUNK: usize = 256;

/// A message offered at once to at most this many recipients (a direct message, a reply)
/// has each of them take what was deferred for it first, one by one; to more (a topic's
/// gap or presence event), everyone takes theirs at once (see `Worker::offer_owed_before`).
const OWED_ONE_BY_ONE: usize = 64;

/// Everything a worker needs, prepared by the server before the thread starts.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Worker number.
    pub id: usize,
    /// The listener this worker accepts on.
    pub listener: std::net::TcpListener,
    /// Established connections this worker may hold.
    pub max_conns: usize,
    /// Size of the registered file table.
    pub table_size: u32,
    /// Protocol and timing settings.
    pub settings: Settings,
    /// Counters the admin thread reads.
    pub metrics: Arc<WorkerMetrics>,
    /// Drain and stop flags.
    pub life: Arc<Lifecycle>,
    /// The process-wide memory budget: this worker publishes what its sessions hold and
    /// sheds its largest holders when the total is over it.
    pub memory: Arc<MemoryBudget>,
    /// Fault injection for tests: panic at this tick (`HOLDFAST_FAULT_WORKER_PANIC`).
    pub panic_at_tick: Option<u32>,
    /// Terminate TLS on every connection with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The hand-over link (live upgrades).
    pub link: Option<Arc<crate::handover::Link>>,
}

/// The settings a worker uses, in its own units.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The sessions' limits and timings.
    pub session: session::Config,
    /// Ticks over which a drain spreads its closes.
    pub drain_ticks: u32,
    /// Ticks to wait after the drain window before forcing the rest.
    pub grace_ticks: u32,
    /// Provided buffers.
    pub recv_buffers: u16,
    /// Provided buffer size.
    pub recv_buffer_size: u32,
    /// What an idle connection keeps armed for reading.
    pub read_mode: ReadMode,
    /// The data listeners defer accept until a client's first bytes come
    /// (`--defer-accept`): a new connection's first read is a receive, not a poll
    /// ([`crate::io::Socket::read_first`]).
    pub read_first: bool,
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// Close log lines per second this worker may write (0: none).
    pub close_log_rate: u32,
    /// The pause after a fan-out turn while the worker's CPU is shared ([`super::pace`]); zero:
    /// never pause.
    pub fanout_pause: Duration,
    /// Whether a fan-out turn takes in messages published while its sends go out
    /// (`--fanout-join`, see `Worker::joinable`).
    pub fanout_join: bool,
    /// The period of each connection's send phase (`--fanout-send-interval`,
    /// [`super::spacing`]): a send that leaves nothing queued holds the next one until the
    /// connection's phase comes round; zero: send at once.
    pub fanout_send_interval: Duration,
    /// The send interval while the worker paces (`--fanout-pace-interval`, [`super::pace`]);
    /// zero: pacing pauses turns instead. Unused when `fanout_send_interval` spaces always.
    pub fanout_pace_interval: Duration,
}

#[derive(Debug)]
struct Drain {
    start: u32,
    total: usize,
    sent: usize,
    cursor: usize,
}

/// A deadline: (slab index, generation, tick).
type Deadline = (u32, u32, u32);

/// A message part-way through its recipients.
struct Pending<D> {
    delivery: D,
    list: Vec<u32>,
    /// Recipients before this one were offered it.
    from: usize,
    /// The generation of each recipient from `from` on when the turn ended: an entry
    /// released and reused since then is another connection, which is skipped.
    generations: Vec<u32>,
}

/// The sessions' limits, the worker's counters, the current tick and the close log.
struct Env {
    session: session::Config,
    metrics: Arc<WorkerMetrics>,
    tick: u32,
    log: CloseLog,
}

impl Env {
    /// What a call on connection `idx`'s session gets.
    fn ctx(&self, idx: u32) -> Ctx<'_> {
        Ctx {
            cfg: &self.session,
            metrics: &self.metrics,
            now: self.tick,
            trace: self.log.trace(idx),
        }
    }
}

/// The worker's state. Fields are split so a connection, its ring and the services can be
/// borrowed at once.
struct Worker<S: Services> {
    rings: Rings,
    conns: Slab<Conn>,
    /// Slab slots ever used (the slab reuses freed slots first, so this is its high-water
    /// mark): what the sweep, the drain and the hand-over scan, and what is resident.
    slots: usize,
    generation: u32,
    s: Settings,
    /// What every session call gets (limits, counters, the time), apart from the fields a
    /// call also borrows mutably.
    env: Env,
    life: Arc<Lifecycle>,
    svc: S,
    handshakes: VecDeque<Deadline>,
    closings: VecDeque<Deadline>,
    drain: Option<Drain>,
    last_shed_log: Option<Instant>,
    /// Accepts completed in the batch being handled: their replacements are armed once the
    /// batch is done (see `run`).
    rearm_accepts: bool,
    id: usize,
    /// Deliveries were left for the next turn.
    backlog: bool,
    /// A message whose recipients were not all offered it in the last turn.
    pending: Option<Pending<S::Delivery>>,
    /// Connections offered a message this turn: driven once the turn's offers are made, so
    /// one send carries everything they were offered.
    touched: Vec<u32>,
    /// Deliveries that joins (`--fanout-join`) may still offer in this pass of the run loop:
    /// together at most one turn's worth, so joining never holds the worker from its
    /// completions and ticks longer than a turn does.
    join_budget: usize,
    panic_at_tick: Option<u32>,
    /// Open until a drain starts (the rings accept on its fd); closed then, so connections
    /// arriving during the drain are refused at once instead of waiting in a backlog that is
    /// never accepted (with `net.ipv4.tcp_migrate_req=1` the kernel moves queued ones to a
    /// sibling listener of the same port, e.g. a new process's).
    listener: Option<std::net::TcpListener>,
    memory: Arc<MemoryBudget>,
    /// Histograms recorded here, published to the shared copy once a tick.
    hist: Hists,
    /// When each connection still in its handshake was accepted.
    accepted_at: SlabMap<Instant>,
    /// What the sessions hold (partial input, queued output), kept by the delta of every
    /// call that may change it and recounted exactly once a second. TLS's partial records
    /// and unsent handshake output count as partial input.
    tally: (usize, usize),
    /// TLS connections' state, when the listener speaks TLS.
    tls: Option<TlsSide>,
    /// The hand-over link and this worker's part in it.
    link: Option<Arc<crate::handover::Link>>,
    moving: moving::Moving,
    /// Whether turns that delivered end with a pause (see [`super::pace`]).
    pacer: Pacer,
    /// When the last tick ran.
    ticked: Instant,
    /// The gap between a connection's eager sends and the frames they carried, which size
    /// pacing's spacing interval or keep it from spacing (see [`super::gaps`]), and the
    /// interval this load was last spaced at; counted only where pacing spaces sends, while
    /// it does not.
    gaps: SendGaps,
    /// Pacing would space, but the eager sends carry one frame each or are not measured yet:
    /// it stays eager (logged once while it lasts).
    stays_eager: bool,
    /// Connections whose next send waits for their phase (`--fanout-send-interval`).
    spacing: Spacing,
    /// Holds come due, to drive (kept for its allocation).
    due: Vec<u32>,
    /// Runs of messages waiting for their held recipients' phases (see [`super::deferred`]).
    deferred: Deferred<S::Delivery>,
    /// Scratch: recipients that take a run later; recipients owed runs; runs owed to one
    /// slot.
    later: Vec<u32>,
    owed: Vec<Owed>,
    owed_runs: Vec<usize>,
    /// Scratch of [`Worker::offer_owed`]: recipients per deferred run, as differences.
    owed_counts: Vec<isize>,
}

/// Queue deadline `d` on `q` (deadlines are pushed in time order). Entries whose
/// connection has moved on (its handshake finished, it closed) are normally dropped only
/// when they come due; a queue about to grow drops them first and stays small, instead of
/// holding every accept of the last handshake timeout (400k entries and the copies its
/// growth left behind, after a 40k/s ramp).
fn schedule(q: &mut VecDeque<Deadline>, conns: &Slab<Conn>, cfg: &session::Config, d: Deadline) {
    if q.len() == q.capacity() && q.len() >= 1024 {
        q.retain(|&(idx, generation, at)| {
            conns.get(idx as usize).is_some_and(|c| {
                c.socket.generation() == generation & Token::GENERATION_MASK
                    && c.session.deadline(cfg) == Some(at)
            })
        });
        if q.len() > q.capacity() / 2 {
            // Mostly live: grow, so the next pass comes only after as many pushes again.
            q.reserve(q.capacity());
        }
    }
    q.push_back(d);
}

/// Slab slots reserved up front for a worker allowed `max_conns` connections (at most 4M,
/// 192 MiB of address space at 48 B a slot). Reserving is only address space: a slot's
/// page becomes resident when a connection first uses it. Growing the slab by doubling
/// instead copied it into fresh pages each time and left the old copies resident in the
/// allocator (the page-fault profile of a 300k ramp: 56% of faults in `Vec` growth), about
/// 19 B per connection at 1M.
fn reserved_slots(max_conns: usize) -> usize {
    // Room for the refusals answered past the cap and the handshakes in flight.
    (max_conns + 4096).clamp(1024, 1 << 22)
}

/// Run a worker with its services until it has drained (or the server stops). Errors from
/// setup or a failed ring are returned (the server exits on them).
pub fn run<S: Services>(spec: WorkerSpec, svc: S, ready: impl FnOnce()) -> io::Result<()> {
    let s = spec.settings;
    let table = spec.table_size as usize;
    let max_rings = spec
        .max_conns
        .div_ceil(table.saturating_sub(TABLE_HEADROOM).max(1))
        .max(1);
    let plan = RingPlan {
        sq_entries: s.sq_entries,
        cq_entries: s.cq_entries,
        table: spec.table_size,
        buffers: s.recv_buffers,
        buffer_size: s.recv_buffer_size,
        max_rings,
        // Poll mode reads with single-shot receives, which the ring can gate on free
        // buffers; recv mode's multishot receives take buffers as data arrives.
        gate_receives: s.read_mode.polls(),
    };
    let rings = Rings::new(plan, spec.listener.as_raw_fd())?;
    // Sends are spaced always (`--fanout-send-interval`) or while the worker paces.
    let always = !s.fanout_send_interval.is_zero();
    let paced_spacing = !always && !s.fanout_pace_interval.is_zero();
    let interval = if always {
        s.fanout_send_interval
    } else {
        s.fanout_pace_interval
    };
    let mut w = Worker {
        rings,
        conns: Slab::with_capacity(reserved_slots(spec.max_conns)),
        slots: 0,
        generation: 0,
        s,
        svc,
        env: Env {
            session: s.session,
            metrics: spec.metrics,
            tick: 0,
            log: CloseLog::new(spec.id, s.close_log_rate),
        },
        life: spec.life,
        handshakes: VecDeque::new(),
        closings: VecDeque::new(),
        drain: None,
        last_shed_log: None,
        rearm_accepts: false,
        id: spec.id,
        backlog: false,
        pending: None,
        touched: Vec::new(),
        join_budget: DELIVERY_BATCH,
        panic_at_tick: spec.panic_at_tick,
        listener: Some(spec.listener),
        memory: spec.memory,
        hist: Hists::default(),
        accepted_at: SlabMap::default(),
        tally: (0, 0),
        tls: spec.tls.map(TlsSide::new),
        link: spec.link,
        moving: moving::Moving::default(),
        pacer: Pacer::new(s.fanout_pause, paced_spacing),
        ticked: Instant::now(),
        gaps: SendGaps::default(),
        stays_eager: false,
        spacing: Spacing::new(interval, always, Instant::now()),
        due: Vec::new(),
        deferred: Deferred::new(0),
        later: Vec::new(),
        owed: Vec::new(),
        owed_runs: Vec::new(),
        owed_counts: Vec::new(),
    };
    w.deferred = Deferred::new(w.spacing.steps());
    w.env.metrics.rings.set(1);
    let hub_fd = w.svc.wake_fd();
    w.rings.list[0]
        .ring
        .poll_fd(hub_fd, Token::new(Op::Wake, HUB_WAKE, 0));
    w.svc.claim_wakes();
    w.rings.arm_accept();
    ready();
    w.run()
}

impl<S: Services> Worker<S> {
    /// Put a connection in the slab; its index.
    fn insert_conn(&mut self, conn: Conn) -> u32 {
        let idx = self.conns.insert(conn);
        self.slots = self.slots.max(idx + 1);
        self.env.metrics.connections.set(self.conns.len() as u64);
        self.env
            .metrics
            .slab_bytes
            .set((self.slots * std::mem::size_of::<Option<Conn>>()) as u64);
        idx as u32
    }

    fn run(&mut self) -> io::Result<()> {
        let start = Instant::now();
        let mut cqes: Vec<Completion> = Vec::with_capacity(self.s.cq_entries as usize);
        loop {
            // A wake this thread raised for itself (a client's publish to a topic with
            // subscribers here, a subscribe's answer) wrote no eventfd: taken here, just
            // before the wait, it is served without waiting, as its completion would have
            // been. Nothing below publishes before the wait.
            if self.svc.own_wake() {
                self.backlog = true;
            }
            // Hand every other ring its queued submissions, then wait on ring 0.
            for slot in self.rings.list.iter_mut().skip(1) {
                if slot.ring.has_pending() {
                    slot.ring.enter()?;
                }
            }
            let now_tick = (start.elapsed().as_millis() / TICK.as_millis()) as u32;
            let next = start + TICK * (now_tick + 1);
            // A ring left dirty by the fairness cap below, or deliveries left over, are
            // served without blocking.
            let wait = if self.backlog || self.rings.list.iter().any(|r| r.dirty) {
                Duration::ZERO
            } else {
                // Held sends (`--fanout-send-interval`) wake the worker at their phases.
                let until = self.spacing.next_due().map_or(next, |due| due.min(next));
                let wait = until.saturating_duration_since(Instant::now());
                // A worker with more than one ring reads the later rings' task-work flags
                // at least every `TASK_WORK_CHECK`: their eventfd signals can come 5–20 ms
                // late. With one ring it sleeps to its next timer: nothing to check.
                if self.rings.list.len() > 1 {
                    wait.min(TASK_WORK_CHECK)
                } else {
                    wait
                }
            };
            match self.pacer.end_turn() {
                Some(pause) => {
                    self.env.metrics.paused_turns.inc();
                    self.rings.list[0].ring.pause(pause)?;
                }
                None => self.rings.list[0].ring.wait(wait)?,
            }
            self.rings.list[0].dirty = true;
            // Whatever woke ring 0 (or the `TASK_WORK_CHECK` timeout), a later ring with task
            // work waiting is reaped now too. Read after the wait, never before it: the kernel
            // raises the flag just after queueing the work, so a worker that runs the work in
            // between is left with the flag up and nothing to run (an enter clears it only
            // when it runs work). Read before the wait, such a flag would cut every wait to
            // zero and spin the worker until the ring's next event; read after it, it costs
            // one enter per turn.
            self.rings.mark_task_work();
            self.join_budget = DELIVERY_BATCH;
            let now_tick = (start.elapsed().as_millis() / TICK.as_millis()) as u32;
            if self.env.tick < now_tick {
                // Reap every ring once a tick, whatever the eventfds said.
                for r in &mut self.rings.list {
                    r.dirty = true;
                }
            }
            // Reap dirty rings until none is (handling one ring's completions can wake
            // another).
            let mut rounds = 0;
            while let Some(r) = self.rings.list.iter().position(|r| r.dirty) {
                let slot = &mut self.rings.list[r];
                slot.dirty = false;
                if r > 0 {
                    slot.ring.enter()?;
                }
                cqes.clear();
                let n = slot.ring.reap(&mut cqes);
                for (k, c) in cqes.drain(..).enumerate() {
                    self.complete(r, c);
                    // A subscriber that keeps up is driven from its send's completion: at
                    // saturation these completions are the fan-out turn, each driving the
                    // next send. Messages published meanwhile join it (see `join_turn`).
                    if k % DRIVE_CHUNK == DRIVE_CHUNK - 1 {
                        self.join_turn();
                    }
                }
                // Replace the accepts this batch completed only now. Armed at once, each
                // could complete (a ramp keeps the listen queue full) and take a slot of the
                // accepting ring's file table while the rest of the batch — up to a pool of
                // accepts already in slots but not yet counted — was still being handled:
                // twice the pool uncounted, past the table's headroom, and the next accepts
                // failed with ENFILE after the kernel had taken their connections (clients
                // reset: 50–110 of 100,000 long polls, which reconnect at every answer).
                if std::mem::take(&mut self.rearm_accepts) {
                    self.rings.arm_accept();
                }
                // An enter runs at most 20 deferred task-work items when it waits for
                // nothing, and the eventfd fires only when that list was empty: a ring that
                // yielded completions may hold more, so it is entered again rather than left
                // until the next tick's sweep.
                if r > 0 && n > 0 {
                    self.rings.list[r].dirty = true;
                }
                rounds += 1;
                if rounds > 4 * self.rings.list.len() {
                    break; // fairness: the rest waits for the next turn
                }
            }
            if self.backlog {
                self.deliver_queued();
            }
            if self.spacing.on() {
                self.drive_due();
            }
            // Long polls that gathered something — from this turn's deliveries, or on
            // arrival from a resume's replay (a cursor behind the topic) — are answered once
            // the hub's queue is drained: with everything it brought, in this turn, not at
            // the next tick (that made a poll arriving behind wait 0–100 ms, and a client
            // polling at the publish rate stayed one message and one interval behind for
            // good). A turn with nothing gathered pays one length check.
            if !self.backlog && self.svc.answers_ready() {
                self.answer_due();
            }
            if self.link.is_some() {
                self.handover_step();
            }
            while self.env.tick < now_tick {
                self.env.tick += 1;
                self.on_tick();
            }
            if self.finished() || self.life.stopping() {
                break;
            }
        }
        tracing::info!(
            worker = self.id,
            rings = self.rings.list.len(),
            "worker stopped"
        );
        Ok(())
    }

    // ------------------------------------------------------------------ completions

    fn complete(&mut self, r: usize, c: Completion) {
        let tok = c.token;
        match tok.op {
            Op::Accept => return self.on_accept(r, c),
            Op::Wake => return self.on_wake(tok.index, &c),
            Op::Install => return self.on_installed(tok, c.res),
            Op::Adopt => return self.on_placed(tok.index, c),
            Op::Ignore | Op::Step | Op::Connect => return,
            _ => {}
        }
        let idx = tok.index;
        let Some(conn) = self.conns.get(idx as usize) else {
            return;
        };
        if !conn.socket.owns(tok) {
            return; // an earlier connection's (its buffer goes back as `c` drops)
        }
        if tok.op == Op::Recv && self.spacing.on() {
            // Input ends a hold: what it brings (a reply, a pong, an echo) goes now, behind
            // the messages deferred for the connection, which it takes first.
            self.spacing.end(idx);
            self.offer_owed_to(idx);
        }
        let conn = &mut self.conns[idx as usize];
        let before = with_tls(conn.session.held(), &self.tls, idx);
        let handshaking = conn.session.phase() == Phase::Handshake;
        let mode = self.s.read_mode;
        let ring = &mut self.rings.list[conn.socket.ring()].ring;
        let ctx = self.env.ctx(idx);
        match tok.op {
            Op::Recv => {
                // Whether this input held a message: the poll is multishot from then on.
                let seen = ctx.metrics.messages_in.get();
                match conn.socket.on_recv(mode, c) {
                    Read::Data(mut buf) => {
                        if let Some(t) = ctx.trace {
                            Trace::add(&t.bytes_in, buf.bytes_mut().len() as u64);
                        }
                        let mut host = self.svc.host(idx);
                        match self.tls.as_mut() {
                            None => conn.session.handle_input(buf.bytes_mut(), &ctx, &mut host),
                            Some(tls) => {
                                let session = &mut conn.session;
                                let r = tls.input(idx, buf.bytes_mut(), ctx.metrics, &mut |p| {
                                    session.handle_input(p, &ctx, &mut host);
                                });
                                if let Err(f) = r {
                                    if let Some(last) = f.last_words {
                                        if !conn.socket.sending() {
                                            conn.socket.send(ring, last, idx);
                                        }
                                    }
                                    tracing::debug!(conn = idx, "{}: {}", f.why, f.detail);
                                    ctx.aborted(Side::Client, f.why);
                                    if conn.session.phase() != Phase::Done {
                                        ctx.metrics.aborted.inc();
                                    }
                                    conn.session.abort();
                                } else if tls.get(idx).is_some_and(|t| t.peer_closed()) {
                                    conn.session.handle_end(&ctx);
                                }
                            }
                        }
                    }
                    Read::End(_) => conn.session.handle_end(&ctx),
                    Read::Nothing => {}
                }
                // Paused by a hand-over: an open connection's input stays in the kernel.
                let wants = conn.session.wants_input()
                    && !(self.moving.frozen() && conn.session.phase() == Phase::Open);
                let active = ctx.metrics.messages_in.get() != seen;
                conn.socket.resume(ring, mode.arming(active), idx, wants);
            }
            Op::Poll => {
                let wants = conn.session.wants_input()
                    && !(self.moving.frozen() && conn.session.phase() == Phase::Open);
                conn.socket
                    .on_poll(ring, mode.arming(false), &c, idx, wants);
            }
            Op::Send => {
                conn.socket.on_sent();
                if let (Some(t), Ok(n)) = (ctx.trace, u64::try_from(c.res)) {
                    Trace::add(&t.bytes_out, n);
                }
                let Extra::Sent(buf) = c.extra else { return };
                match self.tls.as_mut() {
                    None => conn.session.handle_sent(c.res, buf, &ctx),
                    Some(tls) => match tls.on_sent(idx, buf) {
                        Sent::Session(plain) => {
                            // The session counts its own bytes: all of them went, or none.
                            let res = if c.res < 0 {
                                c.res
                            } else {
                                plain.bytes().len() as i32
                            };
                            conn.session.handle_sent(res, plain, &ctx);
                        }
                        Sent::Tls if c.res < 0 => {
                            ctx.aborted(Side::Client, "a TLS send failed");
                            conn.session.abort();
                        }
                        Sent::Tls => {}
                    },
                }
            }
            Op::Shutdown => conn.socket.on_shutdown(ring, idx),
            Op::Close => {
                self.account(before, (0, 0));
                return self.release(idx);
            }
            _ => {}
        }
        let after = with_tls(conn.session.held(), &self.tls, idx);
        let upgraded = handshaking && conn.session.phase() != Phase::Handshake;
        self.account(before, after);
        if upgraded {
            if let Some(t) = self.accepted_at.remove(&idx) {
                if self.conns[idx as usize].session.counted() {
                    let us = t.elapsed().as_micros() as u64;
                    self.hist.handshake_us.saturating_record(us.max(1));
                }
            }
            if self.moving.frozen() && self.answer_poll_to_leave(idx) {
                return; // answered and driven
            }
        }
        if self.spacing.on() {
            let session = &self.conns[idx as usize].session;
            let open = session.phase() == Phase::Open;
            match tok.op {
                // Input ended the hold (above).
                Op::Recv => {}
                // A completed send that left nothing queued holds the next one until the
                // connection's phase. One that left a backlog (more than a send carries:
                // large frames, a slow reader's queue) goes on draining at once.
                Op::Send if open && session.queued() == 0 => return self.spacing.start(idx),
                _ if self.spacing.holds(idx) && open => return,
                // Only an open connection's sends are spaced: one that is closing (a close
                // we started, a drained stream's last event) takes its next step now, so
                // our FIN does not wait for the phase.
                _ => self.spacing.end(idx),
            }
        }
        self.drive(idx);
    }

    /// Pacing spaces sends: each open connection not sending now is held until its phase.
    /// Left idle, each would take the next message at once, one send per subscriber — the
    /// eager cost, paid again at every start. Returns false, spacing nothing, where the eager
    /// sends carried about one frame each ([`pace::MIN_FRAMES`]).
    fn start_spacing(&mut self) -> bool {
        let eager = self.gaps.measured();
        let gap_ms = eager.map(|e| e.gap.as_millis() as u64);
        let frames = eager.map(|e| (e.frames * 10.0).round() / 10.0);
        let max = self.s.fanout_pace_interval;
        let Some(interval) = pace::spacing_interval(eager, self.gaps.last_spaced(), max) else {
            if !std::mem::replace(&mut self.stays_eager, true) {
                let why = if eager.is_some() {
                    "each eager send carried about one frame"
                } else {
                    "eager sends not measured yet"
                };
                tracing::debug!(worker = self.id, gap_ms, frames, "not spacing sends: {why}");
            }
            return false;
        };
        self.stays_eager = false;
        self.gaps.spacing_at(interval);
        self.spacing.resume(interval, Instant::now());
        tracing::debug!(
            worker = self.id,
            gap_ms,
            frames,
            interval_ms = interval.as_millis() as u64,
            "spacing sends"
        );
        for (idx, conn) in &self.conns {
            if conn.session.sends_spaced() && !conn.socket.sending() {
                self.spacing.start(idx as u32);
            }
        }
        true
    }

    /// Pacing stopped spacing: every hold ends, every recipient takes what was deferred for
    /// it, and each sends now.
    fn stop_spacing(&mut self) {
        let mut due = std::mem::take(&mut self.due);
        self.spacing.stop(&mut due);
        self.offer_all_owed();
        self.drive_listed(due);
    }

    /// Drive the connections of `due` (kept, emptied, for its allocation), then those
    /// marked touched.
    fn drive_listed(&mut self, mut due: Vec<u32>) {
        for &idx in &due {
            self.drive(idx);
        }
        due.clear();
        self.due = due;
        let mut touched = std::mem::take(&mut self.touched);
        for &idx in &touched {
            self.drive(idx);
        }
        touched.clear();
        self.touched = touched;
    }

    /// Drive the connections whose held send (`--fanout-send-interval`) came due.
    fn drive_due(&mut self) {
        let mut due = std::mem::take(&mut self.due);
        let now = Instant::now();
        if !self.deferred.is_empty() {
            // Each step that came: its recipients take the runs deferred for them, while
            // still held (those not held and idle are marked to be driven).
            let mut deferred = std::mem::take(&mut self.deferred);
            let mut owed = std::mem::take(&mut self.owed);
            let steps = u64::from(self.spacing.steps().max(1));
            let came = self.spacing.coming(now);
            let swept = came.end.saturating_sub(1);
            for k in came {
                deferred.take_step((k % steps) as u32, &mut owed);
            }
            self.offer_owed(&deferred, &owed, true);
            owed.clear();
            deferred.expire(swept);
            self.deferred = deferred;
            self.owed = owed;
        }
        self.spacing.take_due(now, self.slots, &mut due);
        self.env.metrics.spaced_sends.add(due.len() as u64);
        self.drive_listed(due);
    }

    /// A session's holdings went from `before` to `after`: keep the tally.
    fn account(&mut self, before: (usize, usize), after: (usize, usize)) {
        // Modular arithmetic: exact as long as every change is accounted for.
        self.tally.0 = self.tally.0.wrapping_add(after.0).wrapping_sub(before.0);
        self.tally.1 = self.tally.1.wrapping_add(after.1).wrapping_sub(before.1);
    }

    /// The tally as the budget sees it. A change that escaped [`Worker::account`] could
    /// take it below zero (a huge number once wrapped), which would read as the budget
    /// being exceeded and shed every connection: read as 0 until the next recount.
    fn publish_tally(&self) {
        let sane = |v: usize| if v > isize::MAX as usize { 0 } else { v };
        self.memory
            .set_worker(self.id, sane(self.tally.0), sane(self.tally.1));
        self.memory.set_deferred(self.id, self.deferred.bytes());
    }

    /// Carry connection `idx`'s session outputs to its socket: the close, the next send,
    /// our FIN, a new deadline.
    fn drive(&mut self, idx: u32) {
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return;
        };
        if conn.session.phase() == Phase::Answered {
            self.recycle(idx);
        }
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return;
        };
        let mode = self.s.read_mode;
        let ring = &mut self.rings.list[conn.socket.ring()].ring;
        if conn.session.is_done() {
            if conn.session.wants_reset() {
                return conn.socket.abort(ring, mode, idx);
            }
            return conn.socket.close(ring, mode, idx);
        }
        let ctx = self.env.ctx(idx);
        let tls_before = tls_held(&self.tls, idx);
        let gaps = (self.pacer.spaces() && !self.spacing.on()).then_some(&mut self.gaps);
        if !conn.socket.sending() {
            let mut host = self.svc.host(idx);
            let session = &mut conn.session;
            let hist = &mut self.hist;
            let mut poll = || {
                let buf = session.poll_transmit(&ctx, &mut host)?;
                let depth = session.queued().max(buf.bytes().len()) as u64;
                hist.send_queue_bytes.saturating_record(depth.max(1));
                Some(buf)
            };
            // With TLS: its own output first, then the session's, encrypted.
            let next = match self.tls.as_mut() {
                None => Ok(poll()),
                Some(tls) => tls.next_send(idx, poll),
            };
            match next {
                Ok(Some(buf)) => {
                    conn.socket.send(ring, buf, idx);
                    if let Some(g) = gaps {
                        g.sent(idx);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(conn = idx, "TLS encryption failed: {e}");
                    ctx.aborted(Side::Server, "TLS: encryption failed");
                    conn.session.abort();
                    conn.socket.close(ring, mode, idx);
                }
            }
        }
        if conn.session.poll_shutdown() {
            if let Some(tls) = self.tls.as_mut() {
                // close_notify before our FIN (best effort: sent only if nothing else is).
                tls.close_notify(idx);
                if !conn.socket.sending() {
                    if let Ok(Some(buf)) = tls.next_send(idx, || None) {
                        conn.socket.send(ring, buf, idx);
                    }
                }
            }
            conn.socket.shutdown_write(ring, idx);
            conn.socket.resume(ring, mode.arming(false), idx, true);
        }
        let tls_after = tls_held(&self.tls, idx);
        self.tally.0 = self
            .tally
            .0
            .wrapping_add(tls_after)
            .wrapping_sub(tls_before);
        if conn.session.take_new_deadline() {
            if let Some(at) = conn.session.deadline(&self.env.session) {
                let d = (idx, conn.socket.generation(), at);
                // Each queue holds deadlines of one length, so each is in order.
                let q = match conn.session.phase() {
                    Phase::Handshake => &mut self.handshakes,
                    _ => &mut self.closings,
                };
                schedule(q, &self.conns, &self.env.session, d);
            }
        }
    }

    /// Close connection `idx` if it is kept alive between requests (a drain, a hand-over:
    /// its next request should reach the server that stays); whether it was.
    fn end_if_between_requests(&mut self, idx: u32, reason: &str) -> bool {
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return false;
        };
        if !conn.session.between_requests() {
            return false;
        }
        let ctx = self.env.ctx(idx);
        conn.session.end_idle(&ctx, reason);
        self.drive(idx);
        true
    }

    /// A kept-alive answer is out: what the request held goes, and the connection waits
    /// for its next request — or closes, when the worker is draining or handing over (the
    /// next request should reach the server that stays).
    fn recycle(&mut self, idx: u32) {
        let leaving = self.drain.is_some() || self.moving.frozen();
        let conn = &mut self.conns[idx as usize];
        let counted = conn.session.counted();
        let transport = conn.session.transport();
        if counted {
            self.env.metrics.transport_open(transport, false);
        }
        self.svc.on_recycle(idx, counted, &self.env.metrics);
        let conn = &mut self.conns[idx as usize];
        let ctx = self.env.ctx(idx);
        conn.session.recycle(&ctx);
        if leaving {
            conn.session
                .end_idle(&ctx, "kept-alive connection closed: the server is leaving");
        }
        self.env
            .metrics
            .websockets
            .set(self.svc.websockets() as u64);
    }

    fn release(&mut self, idx: u32) {
        self.accepted_at.remove(&idx);
        self.spacing.end(idx);
        self.deferred.forget(idx);
        let conn = self.conns.remove(idx as usize);
        let m = &self.env.metrics;
        let upgraded = conn.session.counted();
        let user = match self.env.log.trace(idx) {
            Some(_) => self.svc.user(idx),
            None => None,
        };
        self.env.log.on_release(
            idx,
            upgraded,
            (user, conn.session.transport()),
            m,
            &mut self.hist,
        );
        if upgraded {
            m.transport_open(conn.session.transport(), false);
        }
        self.svc
            .on_release(idx, conn.session.counted(), &self.env.metrics);
        if let Some(tls) = self.tls.as_mut() {
            tls.on_release(idx, &self.env.metrics);
        }
        let draining = self.drain.is_some() || self.moving.frozen();
        self.rings.on_release(conn.socket.ring(), draining);
        self.env.metrics.connections.set(self.conns.len() as u64);
        self.env
            .metrics
            .websockets
            .set(self.svc.websockets() as u64);
    }

    /// Ring 0's poll says ring `r` has work (or, for `HUB_WAKE`, the hub queued deliveries).
    fn on_wake(&mut self, r: u32, c: &Completion) {
        if r == HUB_WAKE {
            if !c.more() {
                let fd = self.svc.wake_fd();
                self.rings.list[0]
                    .ring
                    .poll_fd(fd, Token::new(Op::Wake, HUB_WAKE, 0));
            }
            self.svc.on_wake();
            return self.deliver_queued();
        }
        let r = r as usize;
        let Some(slot) = self.rings.list.get_mut(r) else {
            return;
        };
        slot.dirty = true;
        slot.ring.clear_eventfd();
        if !c.more() {
            self.rings.arm_wake(r);
        }
    }

    fn on_accept(&mut self, r: usize, c: Completion) {
        if c.res < 0 {
            let errno = -c.res;
            if errno == libc::ECANCELED
                && self.drain.is_none()
                && r != self.rings.accept_ring
                && !self.rings.list[r].ring.accepting()
            {
                // The last accept of the ring accepting moved away is gone. One of them may
                // have taken a wake-up (they are exclusive) and lost it: try the queue now.
                self.rings.probe_accept();
            }
            if errno == libc::ECANCELED || self.drain.is_some() {
                return; // cancelled, or the listener was closed by the drain on purpose
            }
            if matches!(
                errno,
                libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS
            ) {
                self.env.metrics.reject(Limit::AcceptResources);
                let now = Instant::now();
                if self
                    .last_shed_log
                    .is_none_or(|t| now - t > Duration::from_secs(10))
                {
                    self.last_shed_log = Some(now);
                    tracing::warn!(
                        worker = self.id,
                        "accept failed ({}); shedding and retrying next tick",
                        io::Error::from_raw_os_error(errno)
                    );
                }
                return; // re-armed by the next tick, not in a hot loop
            }
            tracing::warn!(
                worker = self.id,
                "accept failed: {}",
                io::Error::from_raw_os_error(errno)
            );
            self.rearm_accepts = true; // with the batch's, once it is handled
            return;
        }
        let slot = c.res as u32;
        self.env.metrics.accepted.inc();
        if self.drain.is_some() {
            let tok = Token::new(Op::Ignore, u32::MAX, 0);
            self.rings.list[r].ring.close(slot, tok);
            return;
        }
        let peer = match c.extra {
            Extra::Peer(p) => p,
            _ => None,
        };
        self.generation = self.generation.wrapping_add(1) & Token::GENERATION_MASK;
        let socket = Socket::new(r, slot, self.generation);
        self.rings.list[r].live += 1;
        let idx = self.insert_conn(Conn {
            session: Session::new(self.env.tick),
            socket,
        });
        self.accepted_at.insert(idx, Instant::now());
        self.env.log.on_accept(idx, peer, &self.env.metrics);
        if let Some(tls) = self.tls.as_mut() {
            if let Err(e) = tls.on_accept(idx, &self.env.metrics) {
                tracing::error!(worker = self.id, "TLS connection setup failed: {e}");
                self.conns[idx as usize].session.abort();
            }
        }
        let refusal = self.svc.on_accept(idx, peer.map(|p| p.ip()));
        let conn = &mut self.conns[idx as usize];
        let ring = &mut self.rings.list[r].ring;
        let mode = self.s.read_mode.arming(false);
        if self.s.read_first {
            conn.socket.read_first(ring, mode, idx);
        } else {
            conn.socket.arm(ring, mode, idx);
        }
        if let Some(answer) = refusal {
            let ctx = self.env.ctx(idx);
            conn.session.refuse_now(answer, &ctx);
            let after = conn.session.held();
            self.account((0, 0), after);
            self.drive(idx);
        }
        let deadline = self.env.tick + self.env.session.handshake_ticks;
        let d = (idx, self.generation, deadline);
        schedule(&mut self.handshakes, &self.conns, &self.env.session, d);
        if r == self.rings.accept_ring && !self.rings.has_room(r) {
            // Move on before the table fills.
            self.rings.move_accept(self.id);
            self.env.metrics.rings.set(self.rings.list.len() as u64);
        } else {
            self.rearm_accepts = true; // replaced once the batch is handled
        }
    }

    // ------------------------------------------------------------------ pub/sub

    /// Deliver what the hub queued for this worker, up to a batch per turn.
    fn deliver_queued(&mut self) {
        self.deliver(DELIVERY_BATCH);
    }

    /// Offer queued messages, up to `budget` deliveries, and drive their recipients; the
    /// deliveries offered (joins during the drives draw on `join_budget`).
    fn deliver(&mut self, budget: usize) -> usize {
        self.backlog = false;
        let made = self.offer_queued(budget);
        let mut touched = std::mem::take(&mut self.touched);
        let mut at = 0;
        while at < touched.len() {
            let end = (at + DRIVE_CHUNK).min(touched.len());
            for &idx in &touched[at..end] {
                self.drive(idx);
            }
            at = end;
            // The kernel runs this turn's sends as they are driven (a full submission queue
            // is submitted on the spot), so a turn to thousands of recipients takes as long
            // as their sends. With `--fanout-join`, messages published meanwhile are offered
            // now: the recipients not yet driven take them in this turn's send, the others
            // in their next. Left for the next turn, a message waits for the rest of this
            // one and then for its recipient's place in the next.
            if at < touched.len() && self.joinable() {
                self.env.metrics.turns_joined.inc();
                let made = self.offer_queued(self.join_budget);
                self.join_budget -= made;
                // A recipient not yet driven is listed twice; its second drive finds its
                // send in flight and does nothing.
                touched.append(&mut self.touched);
            }
        }
        touched.clear();
        self.touched = touched;
        // More waiting: finish on the next turn, after other completions. Long polls that
        // gathered something are answered at the end of the turn (`run`).
        self.backlog = self.pending.is_some() || self.svc.has_deliveries();
        made
    }

    /// Whether messages wait that a turn going out may take in (`--fanout-join`): some were
    /// published and no message is left half offered (that one, and the rest, go in order
    /// next turn). Joining offers each message as it comes: messages that piled up for a
    /// whole turn are offered in one run per recipient (`offer_run`), cheaper per delivery.
    /// Never with spaced sends (`--fanout-send-interval`): they gather messages on purpose.
    fn joinable(&self) -> bool {
        self.s.fanout_join
            && !self.spacing.on()
            && self.join_budget > 0
            && self.pending.is_none()
            && self.svc.has_deliveries()
    }

    /// Between completions of a turn's sends: offer messages published meanwhile, so that
    /// the subscribers whose completions are still to come send them in their next send,
    /// now, instead of a turn later (idle ones are driven at once).
    fn join_turn(&mut self) {
        if self.joinable() {
            self.env.metrics.turns_joined.inc();
            // Its drives do not join again: the next completions will.
            let budget = std::mem::take(&mut self.join_budget);
            let made = self.deliver(budget);
            self.join_budget = budget - made;
        }
    }

    /// Offer queued messages to their recipients, up to `budget` deliveries (a turn's worth:
    /// [`DELIVERY_BATCH`]); the deliveries made.
    fn offer_queued(&mut self, budget: usize) -> usize {
        let start = budget;
        let mut budget = budget;
        while budget > 0 {
            let (d, list, from, generations) = match self.pending.take() {
                Some(p) => (p.delivery, p.list, p.from, p.generations),
                None => match self.svc.next_delivery() {
                    Some((d, list)) => (d, list, 0, Vec::new()),
                    None => return start - budget,
                },
            };
            let (d, list) = if from == 0 && S::batchable(&d) {
                match self.offer_run(d, list, budget) {
                    Ok(done) => {
                        budget -= done;
                        debug_assert!(budget > 0, "a message left pending is started this turn");
                        continue;
                    }
                    Err(one) => one,
                }
            } else {
                (d, list)
            };
            if from == 0 {
                // Offered now to every recipient, held or not: each takes what was deferred
                // for it first (a gap, an event or a reset follows the messages before it).
                self.offer_owed_before(&list);
            }
            let to = list.len().min(from + budget);
            for (k, &idx) in list[from..to].iter().enumerate() {
                // A recipient released and reused since the list was made is skipped.
                self.offer_to(idx, generations.get(k).copied(), std::slice::from_ref(&d));
            }
            budget -= to - from;
            if let Some(at) = S::published_at(&d) {
                let us = at.elapsed().as_micros() as u64;
                self.hist
                    .publish_delivery_us
                    .saturating_record_n(us.max(1), (to - from) as u64);
            }
            if to < list.len() {
                // The rest of this message's recipients get it next turn, before any later
                // message (so each connection's order is kept). Nothing else waits in
                // `pending`: `offer_run` leaves a message there only with room in the
                // budget for two lists, so the one it hands back is never split.
                debug_assert!(self.pending.is_none());
                let generations = if generations.is_empty() {
                    list[to..]
                        .iter()
                        .map(|&i| {
                            let c = self.conns.get(i as usize);
                            c.map_or(u32::MAX, |c| c.socket.generation())
                        })
                        .collect()
                } else {
                    // Keep the generations of the first split: the list was made then.
                    generations[to - from..].to_vec()
                };
                self.pending = Some(Pending {
                    delivery: d,
                    list,
                    from: to,
                    generations,
                });
                break;
            }
            self.svc.finish_delivery(list);
        }
        start - budget
    }

    /// Messages that piled up for the same recipients (one topic's publishes that arrived
    /// while the worker was busy) are offered recipient by recipient: each connection is
    /// visited once for the run, not once per message. Visiting 18,000 subscribers was a
    /// cache miss each, per message: at saturation ~40 messages a turn made offering a
    /// third of the worker's time, and the turn — the time between a subscriber's sends,
    /// so its latency — long (docs/benchmarks.md, twelfth sitting). Each connection still
    /// takes the messages in their order. Returns the deliveries made, or `first` back
    /// when no later message goes to the same recipients (or the budget has room for one).
    fn offer_run(
        &mut self,
        first: S::Delivery,
        list: Vec<u32>,
        budget: usize,
    ) -> Result<usize, (S::Delivery, Vec<u32>)> {
        // One delivery of the budget is always left: a message this takes from the queue
        // that is not part of the run waits in `pending` with no generations (its list is
        // this turn's), so it must be started in this turn — whole, or split with the
        // generations taken then — never carried over to a turn after slots were released.
        let room = (budget.saturating_sub(1) / list.len().max(1)).min(MAX_RUN);
        // With spaced sends even one message is a run: its held recipients take it later.
        let defer = self.spacing.on() && !self.moving.frozen();
        let least = if defer { 1 } else { 2 };
        if room < least {
            return Err((first, list));
        }
        let mut run = vec![first];
        while run.len() < room {
            match self.svc.next_delivery() {
                Some((d, other)) if S::batchable(&d) && other == list => {
                    self.svc.finish_delivery(other);
                    run.push(d);
                }
                Some((d, other)) => {
                    // Not the same recipients: it is the next message, whole.
                    self.pending = Some(Pending {
                        delivery: d,
                        list: other,
                        from: 0,
                        generations: Vec::new(),
                    });
                    break;
                }
                None => break,
            }
        }
        if run.len() < least {
            let first = run.pop().expect("one message");
            return Err((first, list));
        }
        let done = run.len() * list.len();
        if defer {
            // Held recipients take the run at their phase (`super::deferred`): offered now,
            // each would be visited now and again when its send goes out. One whose send is
            // in flight takes it at its phase too (that send's completion holds it). One that
            // is idle — its last hold came due with nothing to send, or input ended it — takes
            // it now and sends at once, and that send's completion holds it: a message after
            // a quiet spell does not wait, what follows it within the interval does. So do a
            // long poll (answered at once) and a connection that is closing.
            let mut later = std::mem::take(&mut self.later);
            later.clear();
            // Whether an event stream is among the held recipients: looked up only on a
            // worker that has one open (a held recipient's slot is not touched otherwise).
            let mut streams = false;
            let mut look = self.env.metrics.streams_open();
            for &idx in &list {
                if !self.spacing.holds(idx) {
                    match self.conns.get(idx as usize) {
                        // In flight, or owed earlier runs (not expected when idle, but order
                        // comes first): it takes this one at its phase, after them.
                        Some(c)
                            if c.session.sends_spaced()
                                && (c.socket.sending() || self.deferred.owes(idx)) =>
                        {
                            if !c.socket.sending() {
                                self.spacing.start(idx);
                            }
                        }
                        _ => {
                            self.offer_to(idx, None, &run);
                            continue;
                        }
                    }
                }
                if look
                    && self
                        .conns
                        .get(idx as usize)
                        .is_some_and(|c| c.session.is_stream())
                {
                    (streams, look) = (true, false);
                }
                later.push(idx);
            }
            self.record_offered(&run, list.len() - later.len());
            self.env
                .metrics
                .deferred_deliveries
                .add((later.len() * run.len()) as u64);
            // An event stream among them takes the messages' event JSON, which the run then
            // holds too: converted now (once, as it would be at the first stream's phase)
            // and counted.
            let share = run.iter().map(|d| S::delivery_bytes(d, streams)).sum();
            self.deferred
                .defer(run, share, &later, self.spacing.swept());
            self.later = later;
        } else {
            for &idx in &list {
                self.offer_to(idx, None, &run);
            }
            self.record_offered(&run, list.len());
        }
        self.svc.finish_delivery(list);
        Ok(done)
    }

    /// Record the publish-to-offer latency of `msgs` offered to `n` recipients.
    fn record_offered(&mut self, msgs: &[S::Delivery], n: usize) {
        if n == 0 {
            return;
        }
        for d in msgs {
            if let Some(at) = S::published_at(d) {
                let us = at.elapsed().as_micros() as u64;
                self.hist
                    .publish_delivery_us
                    .saturating_record_n(us.max(1), n as u64);
            }
        }
    }

    /// Offer the deferred runs `owed` lists (each slot's runs in order) to their recipients;
    /// `touch`: mark them to be driven (the caller drives them otherwise). A slot's
    /// consecutive entries are offered in one visit to its connection.
    fn offer_owed(&mut self, deferred: &Deferred<S::Delivery>, owed: &[Owed], touch: bool) {
        // Takers per run, as differences: an entry adds one to each run of its range.
        let mut takers = std::mem::take(&mut self.owed_counts);
        takers.clear();
        takers.resize(deferred.runs() + 1, 0);
        for entries in owed.chunk_by(|a, b| a.slot == b.slot) {
            let idx = entries[0].slot;
            for o in entries {
                let runs = o.runs();
                takers[runs.start] += 1;
                takers[runs.end] -= 1;
            }
            let msgs = entries
                .iter()
                .flat_map(|o| o.runs().map(|k| deferred.msgs(k)));
            if self.offer_into(idx, None, msgs) && touch {
                self.touched.push(idx);
            }
        }
        let mut n = 0isize;
        for (k, &d) in takers[..deferred.runs()].iter().enumerate() {
            n += d;
            self.record_offered(deferred.msgs(k), n as usize);
        }
        self.owed_counts = takers;
    }

    /// Slot `idx` takes what was deferred for it, now (its hold ended before its phase; the
    /// caller drives it).
    fn offer_owed_to(&mut self, idx: u32) {
        if !self.deferred.owes(idx) {
            return;
        }
        let mut deferred = std::mem::take(&mut self.deferred);
        let mut runs = std::mem::take(&mut self.owed_runs);
        deferred.take_slot(idx, &mut runs);
        for &k in &runs {
            let msgs = deferred.msgs(k);
            self.offer_into(idx, None, [msgs]);
            self.record_offered(msgs, 1);
        }
        runs.clear();
        self.deferred = deferred;
        self.owed_runs = runs;
    }

    /// Before something is offered to all of `list` at once: each takes what was deferred
    /// for it (a few, one by one; many, everyone's at once).
    fn offer_owed_before(&mut self, list: &[u32]) {
        if self.deferred.is_empty() {
            return;
        }
        if list.len() > OWED_ONE_BY_ONE {
            return self.offer_all_owed();
        }
        for &idx in list {
            self.offer_owed_to(idx);
        }
    }

    /// Every recipient takes what was deferred for it, now (a hand-over, a large list).
    pub(super) fn offer_all_owed(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let mut deferred = std::mem::take(&mut self.deferred);
        let mut owed = std::mem::take(&mut self.owed);
        deferred.take_all(&mut owed);
        self.offer_owed(&deferred, &owed, true);
        owed.clear();
        deferred.expire(self.spacing.swept());
        self.deferred = deferred;
        self.owed = owed;
    }

    /// Offer messages, in order, to one recipient — unless its slot is empty or, when
    /// `generation` is given, was released and reused since the recipient list was made —
    /// and mark it to be driven when no send of its own is in flight to pick them up.
    fn offer_to(&mut self, idx: u32, generation: Option<u32>, msgs: &[S::Delivery]) {
        if self.offer_into(idx, generation, [msgs]) {
            self.touched.push(idx);
        }
    }

    /// [`Worker::offer_to`] without the mark, for messages in one or more runs (offered in
    /// order, in one visit): whether the recipient is to be driven.
    fn offer_into<'m>(
        &mut self,
        idx: u32,
        generation: Option<u32>,
        runs: impl IntoIterator<Item = &'m [S::Delivery], IntoIter: Clone>,
    ) -> bool
    where
        S::Delivery: 'm,
    {
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return false;
        };
        if generation.is_some_and(|g| g != conn.socket.generation()) {
            return false;
        }
        let ctx = self.env.ctx(idx);
        let before = conn.session.held();
        let runs = runs.into_iter();
        for msgs in runs.clone() {
            self.pacer.delivered(msgs.len());
        }
        self.svc.offer_runs(idx, runs, conn.session.writer(), &ctx);
        let after = conn.session.held();
        // A held connection sends what it was offered at its phase, unless the offer closed
        // it (a slow consumer's close goes at once).
        if conn.session.phase() != Phase::Open {
            self.spacing.end(idx);
        }
        let drive = !conn.socket.sending() && !self.spacing.holds(idx);
        self.account(before, after);
        drive
    }

    // ------------------------------------------------------------------ timers

    fn on_tick(&mut self) {
        let tick = self.env.tick;
        if self.panic_at_tick == Some(tick) {
            panic!("injected fault (HOLDFAST_FAULT_WORKER_PANIC)");
        }
        self.env.metrics.ticks.inc();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(std::mem::replace(&mut self.ticked, now));
        let (cpu, waits) = crate::io::sys::thread_usage();
        // Only a pacer that spaces sends needs the run-queue time (a `/proc` read).
        let spaces = self.pacer.spaces();
        let queued = spaces.then(crate::io::sys::thread_queued).flatten();
        let mut pace = self.pacer.on_tick(elapsed, Usage { cpu, waits, queued });
        if spaces && !self.spacing.on() {
            self.gaps.on_tick(elapsed, self.pacer.delivered_last());
        }
        if spaces {
            match (pace == Pace::Space, self.spacing.on()) {
                (true, false) if !self.start_spacing() => {
                    self.pacer.stay_eager();
                    pace = Pace::Eager;
                }
                (false, true) => self.stop_spacing(),
                (false, false) => self.stays_eager = false,
                _ => {}
            }
        }
        self.env.metrics.pacing.set(u64::from(pace != Pace::Eager));
        self.env.metrics.spacing.set(u64::from(self.spacing.on()));
        let interval = self.spacing.on().then(|| self.spacing.interval());
        self.env
            .metrics
            .spacing_interval_us
            .set(interval.map_or(0, |iv| iv.as_micros() as u64));
        let retried: u64 = self
            .rings
            .list
            .iter_mut()
            .map(|r| r.ring.take_unpoll_retries())
            .sum();
        if retried > 0 {
            self.env.metrics.poll_removals_retried.add(retried);
        }
        for fifo in [0, 1] {
            loop {
                let q = if fifo == 0 {
                    &mut self.handshakes
                } else {
                    &mut self.closings
                };
                let Some(&(idx, generation, at)) = q.front() else {
                    break;
                };
                if at > tick {
                    break;
                }
                q.pop_front();
                self.timeout(idx, generation);
            }
        }
        if self.rings.accepting && self.drain.is_none() {
            self.rings.arm_accept();
            // Any wake-up lost another way is recovered within a tick.
            if self.rings.backlog_waiting() {
                self.rings.probe_accept();
            }
        }
        self.sweep();
        self.drain_step();
        crate::session::Outbound::trim_pool();
        self.env.log.on_tick();
        // Every tick: expired tokens (their index is checked in O(1) when none is due) and
        // users disconnected by the operator.
        self.close_expired();
        self.answer_due();
        if tick % 10 == 0 {
            let (mut bytes, mut waits) = (0, 0);
            for r in &self.rings.list {
                waits += u64::from(r.ring.adjust_buffers());
                bytes += r.ring.buffer_bytes();
            }
            self.env.metrics.recv_buffer_bytes.set(bytes);
            self.env.metrics.recv_buffer_waits.add(waits);
            // Once a second, one pass over the slab for both gauges, which also makes the
            // memory tally exact again (calls that are not tracked one by one: drain
            // closes, refusals at accept).
            let tls = &self.tls;
            let (heap, partial, queued) = self.conns.iter().fold((0, 0, 0), |(h, p, q), (i, c)| {
                let (cp, cq) = with_tls(c.session.held(), tls, i as u32);
                (h + c.session.heap_bytes(), p + cp, q + cq)
            });
            self.env.metrics.conn_heap_bytes.set(heap as u64);
            self.env.metrics.outbound_bytes.set(queued as u64);
            self.tally = (partial, queued);
        }
        self.publish_tally();
        self.shed_memory();
        self.env.metrics.hist.publish(&mut self.hist);
    }

    /// Give the connections whose answer is due (long polls) their answer.
    fn answer_due(&mut self) {
        let mut due = Vec::new();
        self.svc.answers_due(&mut due);
        for idx in due {
            let ctx = self.env.ctx(idx);
            let Some(conn) = self.conns.get_mut(idx as usize) else {
                continue;
            };
            let before = conn.session.held();
            self.svc.answer(idx, conn.session.writer(), &ctx);
            let after = conn.session.held();
            self.account(before, after);
            self.drive(idx);
        }
    }

    /// Close the connections whose credentials expired (4401: a token not refreshed).
    fn close_expired(&mut self) {
        let mut expired = Vec::new();
        self.svc.expired(&mut expired);
        for (idx, code, reason) in expired {
            let ctx = self.env.ctx(idx);
            let Some(conn) = self.conns.get_mut(idx as usize) else {
                continue;
            };
            if conn.session.phase() != Phase::Open {
                continue;
            }
            if code.0 == crate::auth::TOKEN_EXPIRED {
                self.env.metrics.token_expired_closes.inc();
            }
            let before = conn.session.held();
            conn.session.close(code, reason, true, &ctx);
            let after = conn.session.held();
            self.account(before, after);
            self.drive(idx);
        }
    }

    /// Over the memory budget: close this worker's largest holders (1009 / 1013), what
    /// they held discarded, until it is back under its share (see `budget`).
    fn shed_memory(&mut self) {
        let excess = self.memory.excess(self.id);
        if excess == 0 {
            return;
        }
        let mut holders: Vec<(usize, u32)> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.session.phase(), Phase::Open | Phase::Handshake))
            .map(|(i, c)| {
                let (p, q) = c.session.held();
                (p + q, i as u32)
            })
            .filter(|&(b, _)| b > 0)
            .collect();
        holders.sort_unstable_by(|a, b| b.cmp(a));
        let (mut freed, mut closed) = (0, 0);
        for (bytes, idx) in holders {
            if freed >= excess {
                break;
            }
            let ctx = self.env.ctx(idx);
            let conn = &mut self.conns[idx as usize];
            let before = conn.session.held();
            if let Some(why) = conn.session.shed(&ctx) {
                self.memory.shed(why);
                freed += bytes;
                closed += 1;
            }
            let after = self.conns[idx as usize].session.held();
            self.account(before, after);
            self.drive(idx);
        }
        self.publish_tally();
        if closed == 0 {
            return;
        }
        tracing::warn!(
            worker = self.id,
            closed,
            freed_bytes = freed,
            budget = self.memory.limit(),
            "over the memory budget: closed the largest holders (1009 partial message, 1013 \
             outbound queue)"
        );
    }

    /// Let connection `idx` (if it is still the one with `generation`) check its deadlines.
    fn timeout(&mut self, idx: u32, generation: u32) {
        let ctx = self.env.ctx(idx);
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return;
        };
        if conn.socket.generation() != generation & Token::GENERATION_MASK {
            return;
        }
        let sending = conn.socket.sending();
        let before = conn.session.held();
        conn.session.handle_timeout(&ctx, sending);
        let after = conn.session.held();
        self.account(before, after);
        self.drive(idx);
    }

    fn sweep(&mut self) {
        let slots = super::sweep_slots(self.env.tick, self.env.session.ping_ticks, self.slots);
        let frozen = self.moving.frozen();
        for i in slots {
            if let Some(conn) = self.conns.get(i) {
                if frozen && conn.session.phase() == Phase::Open {
                    // Paused by a hand-over: its input is not read, so its silence is ours;
                    // no ping (a send would hold its move) and no idle close.
                    continue;
                }
                let generation = conn.socket.generation();
                self.timeout(i as u32, generation);
            }
        }
    }

    fn drain_step(&mut self) {
        if self.drain.is_none() {
            if !self.life.draining() {
                return;
            }
            let total = self.svc.websockets();
            if total == 0 {
                tracing::info!(worker = self.id, "drain started: no connections to close");
            } else {
                tracing::info!(
                    worker = self.id,
                    connections = total,
                    window_s = self.s.drain_ticks as f64 * TICK.as_secs_f64(),
                    "drain started: closing connections over the window"
                );
            }
            self.rings.stop_accepting();
            self.listener = None;
            // Connections still in their handshake will not be upgraded: tell them now
            // (503 + Retry-After) rather than when they finish their request, or never.
            // A kept-alive connection between requests asked nothing: it just closes.
            let handshaking: Vec<u32> = self
                .conns
                .iter()
                .filter(|(_, c)| c.session.phase() == Phase::Handshake)
                .map(|(i, _)| i as u32)
                .collect();
            for idx in handshaking {
                if self.end_if_between_requests(idx, "kept-alive connection closed: draining") {
                    continue;
                }
                let ctx = self.env.ctx(idx);
                let answer = Answer::Refuse(
                    Limit::Draining,
                    Rejection::Unavailable { retry_after: 1 },
                    "draining".into(),
                );
                let session = &mut self.conns[idx as usize].session;
                let before = session.held();
                session.refuse_now(answer, &ctx);
                let after = session.held();
                self.account(before, after);
                self.drive(idx);
            }
            self.drain = Some(Drain {
                start: self.env.tick,
                total,
                sent: 0,
                cursor: 0,
            });
        }
        let Some(d) = self.drain.as_ref() else { return };
        let elapsed = self.env.tick - d.start;
        let window = self.s.drain_ticks.max(1);
        let target = lifecycle::drain_target(d.total, elapsed, window);
        let (mut sent, mut cursor, total) = (d.sent, d.cursor, d.total);
        let cap = self.slots;
        while sent < target && cursor < cap {
            let phase = self.conns.get(cursor).map(|c| c.session.phase());
            match phase {
                Some(Phase::Open) => {
                    // What was deferred for it goes before its close.
                    self.offer_owed_to(cursor as u32);
                    let hint = self.svc.next_rand() % (u64::from(window) * TICK.as_millis() as u64);
                    let reason =
                        format!("{{\"reason\":\"draining\",\"reconnect_after_ms\":{hint}}}");
                    let ctx = self.env.ctx(cursor as u32);
                    let session = &mut self.conns[cursor].session;
                    let before = session.held();
                    session.close(CloseCode::SERVICE_RESTART, &reason, true, &ctx);
                    let after = session.held();
                    self.account(before, after);
                    sent += 1;
                    self.drive(cursor as u32);
                }
                Some(Phase::Handshake) => {
                    self.conns[cursor].session.abort();
                    self.drive(cursor as u32);
                }
                _ => {}
            }
            cursor += 1;
        }
        if let Some(d) = self.drain.as_mut() {
            d.sent = sent;
            d.cursor = cursor;
            if elapsed % 10 == 0 && elapsed > 0 {
                tracing::info!(
                    worker = self.id,
                    sent,
                    total,
                    remaining = self.conns.len(),
                    "drain progress"
                );
            }
        }
        if elapsed >= window + self.s.grace_ticks {
            // The bound: whatever has not finished its closing handshake goes now.
            let left: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
            for i in left {
                self.conns[i].session.reset();
                self.drive(i as u32);
            }
        }
    }

    /// The drain is over: every connection is gone (no new one can arrive once accepts are
    /// cancelled: late accepts are closed unseen), or 2 s past window + grace.
    fn finished(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| {
            self.conns.is_empty()
                || self.env.tick - d.start > self.s.drain_ticks + self.s.grace_ticks + 20
        })
    }
}

/// Bytes connection `idx`'s TLS state holds (partial records, unsent TLS output).
fn tls_held(tls: &Option<TlsSide>, idx: u32) -> usize {
    tls.as_ref()
        .and_then(|t| t.get(idx))
        .map_or(0, |t| t.held_bytes())
}

/// A session's holdings with its TLS buffers counted as partial input.
fn with_tls(held: (usize, usize), tls: &Option<TlsSide>, idx: u32) -> (usize, usize) {
    (held.0 + tls_held(tls, idx), held.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_queue_drops_settled_entries_instead_of_growing() {
        let cfg = crate::session::pair::test_config();
        let mut conns: Slab<Conn> = Slab::new();
        let mut q = VecDeque::new();
        // A ramp: 100,000 accepts whose handshakes finish at once (the connection left the
        // slab, or it is another connection now), and every 1,000th still waiting.
        let mut waiting = Vec::new();
        for n in 0..100_000u32 {
            let tick = n / 1000;
            let idx = conns.insert(Conn {
                session: Session::new(tick),
                socket: Socket::new(0, n, n & Token::GENERATION_MASK),
            }) as u32;
            schedule(&mut q, &conns, &cfg, (idx, n, tick + cfg.handshake_ticks));
            if n % 1000 == 0 {
                waiting.push(idx);
            } else {
                conns.remove(idx as usize);
            }
        }
        assert!(q.capacity() <= 4096, "grew to {}", q.capacity());
        // Every waiting handshake keeps its deadline, in order.
        let live: Vec<u32> = q
            .iter()
            .filter(|(i, _, _)| waiting.contains(i))
            .map(|(i, _, _)| *i)
            .collect();
        assert_eq!(live.len(), waiting.len());
        let ats: Vec<u32> = q.iter().map(|d| d.2).collect();
        assert!(ats.windows(2).all(|w| w[0] <= w[1]), "time order kept");
    }

    #[test]
    fn a_deadline_queue_of_live_entries_grows() {
        let cfg = crate::session::pair::test_config();
        let mut conns: Slab<Conn> = Slab::new();
        let mut q = VecDeque::new();
        for n in 0..10_000u32 {
            let idx = conns.insert(Conn {
                session: Session::new(0),
                socket: Socket::new(0, n, n),
            }) as u32;
            schedule(&mut q, &conns, &cfg, (idx, n, cfg.handshake_ticks));
        }
        assert_eq!(q.len(), 10_000, "nothing live is dropped");
    }
}
