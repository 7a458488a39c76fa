//! One worker: a pinned thread that owns a ring, a listener, a provided-buffer ring, a slab
//! of connections and a timer sweep, and shares nothing on its hot path.
//!
//! # Event loop
//! Each turn submits what was queued and waits (with GETEVENTS, which DEFER_TASKRUN needs)
//! for at least one completion or the next timer tick, then handles every completion and, on a
//! tick, the timers. Completions carry a [`Token`]; one whose generation no longer matches its
//! slab entry belongs to a connection that is gone and is ignored (its buffer recycled).
//!
//! # Closing a connection
//! shutdown(2) first (it ends the armed multishot receive), then, once no receive is armed and
//! no send is in flight (the kernel may still hold a pointer into the send buffer), close the
//! direct descriptor; the slab entry is freed when that close completes.
//!
//! # Timers
//! No per-connection timers: a handshake deadline FIFO (every handshake has the same timeout,
//! so deadlines arrive in order) and a sweep that visits slab slots `i ≡ tick (mod B)` each
//! tick, `B` ticks per ping interval, so every connection is visited once per interval and
//! pings are spread evenly over it. The visit sends the ping, closes connections silent for
//! `idle_timeout`, and bounds how long a close may linger.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

mod fanout;

use super::bufring::BufRing;
use super::token::{Op, Token};
use crate::conn::{
    Chunk, Conn, Outbound, Phase, Spill, COUNTED_WS, RECV_AGAIN, RECV_ARMED, RECV_INFLIGHT,
    REJECT_IP, REJECT_RATE, SEND_INFLIGHT, SHUT_INFLIGHT,
};
use crate::limits::{IpTable, TokenBucket};
use crate::metrics::{self, Limit, Side, WorkerMetrics};
use crate::pubsub::{self, Control, Delivery, Hub, LocalSubs, PolicyTable};
use crate::server::Shared;
use crate::ws::frame::{encode_close, encode_frame};
use crate::ws::handshake::{self, HeadScanner, Limits, Rejection};
use crate::ws::{CloseCode, DataKind, Event, OpCode};

/// Length of a timer tick.
pub const TICK: Duration = Duration::from_millis(100);

/// Connection slots kept free in each file table. An accept into a full table fails with
/// ENFILE after the kernel has taken the connection off the listen queue, so the client is
/// reset. Accepts are single-shot and at most `ACCEPT_POOL` are in flight, so at most that
/// many can land between two looks at the table: a headroom of at least the pool keeps every
/// table from filling. (A multishot accept can land a whole listen backlog in one batch,
/// which is why it is not used.)
const TABLE_HEADROOM: usize = 192;
const _: () = assert!(TABLE_HEADROOM >= ACCEPT_POOL);

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
    pub shared: Arc<Shared>,
    /// The per-source-IP cap, when configured.
    pub ip_table: Option<Arc<IpTable>>,
    /// This worker's share of the accept rate (connections/s), 0 for none.
    pub accept_rate: f64,
    /// Its side of pub/sub.
    pub pubsub: PubsubSpec,
}

/// What a worker needs for pub/sub.
#[derive(Debug)]
pub struct PubsubSpec {
    /// The hub every worker and the admin API share.
    pub hub: Arc<Hub>,
    /// Deliveries for this worker's subscribers.
    pub rx: crossbeam_channel::Receiver<Delivery>,
    /// Written by the hub when `rx` has work; ring 0 polls it.
    pub waker: Arc<super::waker::Waker>,
    /// Slow-consumer policy per topic.
    pub policies: Arc<PolicyTable>,
    /// Topic name and per-connection limits.
    pub limits: pubsub::TopicLimits,
    /// Whether clients may publish.
    pub client_publish: bool,
}

/// The `Op::Wake` index that means "the hub queued deliveries" (ring numbers are small).
const HUB_WAKE: u32 = u32::MAX;
/// Published messages handled per turn before other work gets a go.
const DELIVERY_BATCH: usize = 1024;

/// The worker's pub/sub state.
struct PubsubCtx {
    spec: PubsubSpec,
    local: LocalSubs,
    /// Recipients of the message being delivered (reused).
    scratch: Vec<u32>,
    /// The queue held more than one batch: deliver again before waiting.
    backlog: bool,
}

/// Single-shot accepts kept in flight on the accepting ring, each with an address buffer
/// (the per-IP cap needs peer addresses; multishot accept into a direct descriptor has none).
const ACCEPT_POOL: usize = 128;

/// Where the kernel writes the peer address of one pooled accept.
struct AddrSlot {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
    armed: bool,
    /// The ring the accept was submitted on.
    ring: u16,
}

/// One of the worker's rings. Ring 0 is the one the worker waits on; every other ring has a
/// registered eventfd that ring 0 polls (multishot), so one blocking wait covers them all.
struct RingCtx {
    ring: IoUring,
    /// Size of its registered file table (RLIMIT_NOFILE soft caps it).
    table: usize,
    /// Connections whose socket sits in this ring's table.
    live: usize,
    /// Signalled by the kernel when this ring has completions (rings ≥ 1).
    eventfd: Option<std::os::fd::OwnedFd>,
    /// Has completions to reap.
    dirty: bool,
}

/// The settings a worker uses, in its own units.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Handshake limits.
    pub limits: Limits,
    /// Largest message.
    pub max_message: u32,
    /// Outbound queue cap per connection.
    pub max_outbound: usize,
    /// Ticks to complete a handshake.
    pub handshake_ticks: u32,
    /// Ticks per ping interval (the sweep's bucket count).
    pub ping_ticks: u32,
    /// Ticks of silence before an idle close.
    pub idle_ticks: u32,
    /// Ticks a close may linger (waiting for the peer's Close or for a send to finish).
    pub close_ticks: u32,
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
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
}

/// What each connection keeps armed in the kernel to learn that it has input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// A multishot POLLIN (~258 B of kernel memory per connection); on readiness a
    /// single-shot receive takes a provided buffer. One more completion per read.
    Poll,
    /// A multishot receive (~865 B per connection); one completion per read.
    Recv,
}

struct Drain {
    start: u32,
    total: usize,
    sent: usize,
    cursor: usize,
}

/// Everything but the buffer ring, so a received buffer can be borrowed while the rest is
/// mutated.
struct Core {
    rings: Vec<RingCtx>,
    /// The ring new connections are accepted into.
    accept_ring: usize,
    /// Rings this worker may create (its connection target over the table size).
    max_rings: usize,
    conns: Slab<Conn>,
    generation: u32,
    s: Settings,
    max_conns: usize,
    table_size: usize,
    /// Provided buffers per ring after ring 0 (ring 0 has `s.recv_buffers`).
    extra_ring_buffers: u16,
    metrics: Arc<WorkerMetrics>,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    accepting: bool,
    tick: u32,
    handshakes: VecDeque<(u32, u32, u32)>,
    lingers: VecDeque<(u32, u32, u32)>,
    websockets: usize,
    drain: Option<Drain>,
    rng: crate::jitter::Jitter,
    last_shed_log: Option<Instant>,
    id: usize,
    ip_table: Option<Arc<IpTable>>,
    /// Source IP of each connection, kept only while a per-IP cap is configured.
    peer_ips: std::collections::HashMap<usize, std::net::IpAddr>,
    /// The accept pool's address buffers (boxed: the kernel writes into them).
    addr_slots: Box<[AddrSlot]>,
    bucket: Option<TokenBucket>,
    ps: PubsubCtx,
}

/// Run a worker until it has drained (or the server stops). Errors only from setup.
pub fn run(spec: WorkerSpec, ready: impl FnOnce()) -> io::Result<()> {
    let s = spec.settings;
    let table = spec.table_size as usize;
    let max_rings = spec
        .max_conns
        .div_ceil(table.saturating_sub(TABLE_HEADROOM).max(1))
        .max(1);
    let mut core = Core {
        rings: Vec::with_capacity(max_rings),
        accept_ring: 0,
        max_rings,
        conns: Slab::with_capacity(1024),
        generation: 0,
        s,
        max_conns: spec.max_conns,
        table_size: table,
        extra_ring_buffers: (s.recv_buffers / 16).clamp(64.min(s.recv_buffers), 256),
        metrics: spec.metrics,
        shared: spec.shared,
        listener: spec.listener,
        accepting: true,
        tick: 0,
        handshakes: VecDeque::new(),
        lingers: VecDeque::new(),
        websockets: 0,
        drain: None,
        rng: crate::jitter::Jitter::new(spec.id as u64 + 1),
        last_shed_log: None,
        id: spec.id,
        addr_slots: (0..ACCEPT_POOL)
            .map(|_| AddrSlot {
                // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
                storage: unsafe { std::mem::zeroed() },
                len: 0,
                armed: false,
                ring: 0,
            })
            .collect(),
        ip_table: spec.ip_table,
        peer_ips: std::collections::HashMap::new(),
        bucket: (spec.accept_rate > 0.0)
            .then(|| TokenBucket::new(spec.accept_rate, spec.accept_rate.max(1.0), Instant::now())),
        ps: PubsubCtx {
            spec: spec.pubsub,
            local: LocalSubs::default(),
            scratch: Vec::new(),
            backlog: false,
        },
    };
    // Declared after `core` is built but dropped after it: the rings go first.
    let mut bufs: Vec<BufRing> = Vec::with_capacity(max_rings);
    core.add_ring(&mut bufs)?;
    core.arm_hub_wake();
    core.arm_accept();
    ready();
    let start = Instant::now();
    let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(s.cq_entries as usize);
    loop {
        // Hand every other ring its queued submissions, then wait on ring 0.
        for r in 1..core.rings.len() {
            if !core.rings[r].ring.submission().is_empty() {
                core.enter(r)?;
            }
        }
        let now_tick = (start.elapsed().as_millis() / TICK.as_millis()) as u32;
        let next = start + TICK * (now_tick + 1);
        // A ring left dirty by the fairness cap below, or deliveries left over, are served
        // without blocking.
        let wait = if core.ps.backlog || core.rings.iter().any(|r| r.dirty) {
            Duration::ZERO
        } else {
            next.saturating_duration_since(Instant::now())
        };
        let ts = types::Timespec::new()
            .sec(wait.as_secs())
            .nsec(wait.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match core.rings[0].ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        core.rings[0].dirty = true;
        let now_tick = (start.elapsed().as_millis() / TICK.as_millis()) as u32;
        if core.tick < now_tick {
            // Reap every ring once a tick, whatever the eventfds said.
            for r in &mut core.rings {
                r.dirty = true;
            }
        }
        // Reap dirty rings until none is (handling one ring's completions can wake another).
        let mut rounds = 0;
        while let Some(r) = core.rings.iter().position(|r| r.dirty) {
            core.rings[r].dirty = false;
            if r > 0 {
                core.enter(r)?;
            }
            cqes.clear();
            cqes.extend(core.rings[r].ring.completion());
            for cqe in &cqes {
                core.complete(r, &mut bufs, cqe);
            }
            // An enter runs at most 20 deferred task-work items when it waits for nothing,
            // and the eventfd fires only when that list was empty: a ring that yielded
            // completions may hold more, so it is entered again rather than left until the
            // next tick's sweep.
            if r > 0 && !cqes.is_empty() {
                core.rings[r].dirty = true;
            }
            rounds += 1;
            if rounds > 4 * core.rings.len() {
                break; // fairness: the rest waits for the next turn
            }
        }
        if core.ps.backlog {
            core.deliver_queued();
        }
        while core.tick < now_tick {
            core.tick += 1;
            core.on_tick();
        }
        if core.finished() || core.shared.stop.load(Ordering::Relaxed) {
            break;
        }
    }
    tracing::info!(worker = core.id, rings = core.rings.len(), "worker stopped");
    drop(core);
    drop(bufs);
    Ok(())
}

impl Core {
    // ------------------------------------------------------------------ rings

    /// Create, register and wire up one more ring.
    fn add_ring(&mut self, bufs: &mut Vec<BufRing>) -> io::Result<usize> {
        let r = self.rings.len();
        let first = r == 0;
        let (sq, cq) = if first {
            (self.s.sq_entries, self.s.cq_entries)
        } else {
            (1024, 8192)
        };
        let ring = super::setup(sq, cq)?;
        for f in &ring.fallbacks {
            tracing::warn!(
                worker = self.id,
                ring = r,
                "io_uring setup flag unavailable, fell back: {f}"
            );
        }
        let ring = ring.ring;
        ring.submitter()
            .register_files_sparse(self.table_size as u32)?;
        let entries = if first {
            self.s.recv_buffers
        } else {
            self.extra_ring_buffers
        };
        bufs.push(BufRing::new(&ring, entries, self.s.recv_buffer_size, 0)?);
        let eventfd = if first {
            None
        } else {
            let efd = super::eventfd()?;
            ring.submitter().register_eventfd(efd.as_raw_fd())?;
            Some(efd)
        };
        self.rings.push(RingCtx {
            ring,
            table: self.table_size,
            live: 0,
            eventfd,
            dirty: false,
        });
        self.metrics.rings.set(self.rings.len() as u64);
        if !first {
            self.arm_wake(r);
            tracing::info!(
                worker = self.id,
                ring = r,
                table = self.table_size,
                "added a ring"
            );
        }
        Ok(r)
    }

    /// Ring 0 polls ring `r`'s eventfd, so the worker's one wait also covers ring `r`.
    fn arm_wake(&mut self, r: usize) {
        let Some(fd) = self.rings[r].eventfd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(Token::new(Op::Wake, r as u32, 0).encode());
        self.push(0, sqe);
    }

    /// Submit ring `r`'s queue and run its deferred work without blocking, so its
    /// completions appear (DEFER_TASKRUN needs GETEVENTS for that).
    fn enter(&mut self, r: usize) -> io::Result<()> {
        super::enter_nonblocking(&mut self.rings[r].ring)
    }

    // ------------------------------------------------------------------ submission

    fn push(&mut self, r: usize, sqe: squeue::Entry) {
        let ring = &mut self.rings[r].ring;
        loop {
            // SAFETY: every SQE built here references either no user memory (recv into
            // provided buffers, poll, shutdown, close, cancel), the static ping frame, a pooled
            // accept's `AddrSlot` (boxed, never moved, not rewritten while `armed`, and
            // outliving the rings: `rings` is Core's first field, so it is dropped first),
            // or a connection's `Outbound::inflight` chunk (an owned Vec, or a shared frame
            // whose `Arc` the chunk holds), which is neither mutated nor dropped while the
            // connection's SEND_INFLIGHT flag is set, i.e. until this send's completion.
            if unsafe { ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            // The submission queue is full: hand it to the kernel and retry.
            if let Err(e) = ring.submit() {
                tracing::error!(worker = self.id, "io_uring submit failed: {e}");
                return;
            }
        }
    }

    /// Push an operation on connection `idx`'s ring.
    fn push_conn(&mut self, idx: usize, sqe: squeue::Entry) {
        let r = usize::from(self.conns[idx].ring);
        self.push(r, sqe);
    }

    fn token(&self, op: Op, idx: usize) -> u64 {
        Token::new(op, idx as u32, self.conns[idx].generation).encode()
    }

    fn arm_accept(&mut self) {
        if !self.accepting {
            return;
        }
        let r = self.accept_ring;
        let fd = self.listener.as_raw_fd();
        let mut sqes = Vec::new();
        for (k, slot) in self
            .addr_slots
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| !s.armed)
        {
            slot.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            slot.armed = true;
            slot.ring = r as u16;
            let sqe = opcode::Accept::new(
                types::Fd(fd),
                (&mut slot.storage as *mut libc::sockaddr_storage).cast(),
                &mut slot.len,
            )
            .file_index(Some(types::DestinationSlot::auto_target()))
            .build()
            .user_data(Token::new(Op::Accept, k as u32, 0).encode());
            sqes.push(sqe);
        }
        for sqe in sqes {
            self.push(r, sqe);
        }
    }

    /// Cancel the accepts armed on ring `r`.
    fn cancel_accept(&mut self, r: usize) {
        let armed: Vec<u32> = (0..self.addr_slots.len() as u32)
            .filter(|&k| {
                let s = &self.addr_slots[k as usize];
                s.armed && usize::from(s.ring) == r
            })
            .collect();
        for k in armed {
            let sqe = opcode::AsyncCancel::new(Token::new(Op::Accept, k, 0).encode())
                .build()
                .user_data(Token::new(Op::Cancel, u32::MAX, 0).encode());
            self.push(r, sqe);
        }
    }

    /// Whether ring `r` can take another connection without nearing a full table.
    fn has_room(&self, r: usize) -> bool {
        self.rings[r].live + TABLE_HEADROOM < self.rings[r].table
    }

    /// The accepting ring is nearly full: move accepting to a ring with room, adding a ring
    /// if the connection target allows, or stop accepting until connections leave.
    fn move_accept(&mut self, bufs: &mut Vec<BufRing>) {
        let old = self.accept_ring;
        self.cancel_accept(old);
        let target = match (0..self.rings.len()).find(|&r| self.has_room(r)) {
            Some(r) => Some(r),
            None if self.rings.len() < self.max_rings => match self.add_ring(bufs) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(worker = self.id, "cannot add a ring: {e}");
                    None
                }
            },
            None => None,
        };
        match target {
            Some(r) => {
                self.accept_ring = r;
                self.arm_accept();
            }
            None => {
                self.accepting = false;
                tracing::warn!(
                    worker = self.id,
                    rings = self.rings.len(),
                    "every file table is nearly full; pausing accept"
                );
            }
        }
    }

    /// Arm the connection's read side: a multishot poll or a multishot receive.
    fn arm_read(&mut self, idx: usize) {
        let slot = self.conns[idx].slot;
        let sqe = match self.s.read_mode {
            ReadMode::Poll => {
                opcode::PollAdd::new(types::Fixed(slot), (libc::POLLIN | libc::POLLRDHUP) as u32)
                    .multi(true)
                    .build()
                    .user_data(self.token(Op::Poll, idx))
            }
            ReadMode::Recv => opcode::RecvMulti::new(types::Fixed(slot), 0)
                .build()
                .user_data(self.token(Op::Recv, idx)),
        };
        self.push_conn(idx, sqe);
        self.conns[idx].flags |= RECV_ARMED;
    }

    /// Poll mode: take what the socket holds with one non-blocking receive into a provided
    /// buffer (MSG_DONTWAIT: with nothing to read it returns EAGAIN instead of arming itself,
    /// which would cost the kernel memory poll mode exists to save).
    fn submit_recv(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if conn.flags & RECV_INFLIGHT != 0 {
            conn.flags |= RECV_AGAIN;
            return;
        }
        conn.flags = (conn.flags | RECV_INFLIGHT) & !RECV_AGAIN;
        let slot = conn.slot;
        let sqe = opcode::Recv::new(
            types::Fixed(slot),
            std::ptr::null_mut(),
            self.s.recv_buffer_size,
        )
        .buf_group(0)
        .flags(libc::MSG_DONTWAIT)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
        .user_data(self.token(Op::Recv, idx));
        self.push_conn(idx, sqe);
    }

    /// Whether the connection still reads input: to decode it, or to drop it while its final
    /// bytes go out (Finishing) and after (Lingering). A peer that keeps sending while we
    /// stop reading would block in its send and never read our Close.
    fn reading(&self, idx: usize) -> bool {
        matches!(
            self.conns[idx].phase,
            Phase::Handshake
                | Phase::Open
                | Phase::AwaitingClose
                | Phase::Finishing
                | Phase::Lingering
        )
    }

    /// Send whatever is queued, unless a send is already in flight.
    fn flush(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if conn.flags & SEND_INFLIGHT != 0 {
            return;
        }
        let Some(out) = conn.out.as_mut() else { return };
        loop {
            if !out.advance() {
                conn.out = None;
                self.after_sent(idx);
                return;
            }
            if let Some(Chunk::Gap { topic, from, to }) = out.inflight {
                // Encoded only now, when it is sent; skipped if the connection has since left
                // the topic (the gap no longer concerns it).
                match self.ps.local.name(topic) {
                    Some(name) => {
                        let frame = pubsub::encode_gap(name, from, to);
                        self.metrics.bytes_out.add(frame.len() as u64);
                        out.inflight = Some(Chunk::Shared {
                            frame,
                            topic,
                            seq: to,
                        });
                    }
                    None => out.inflight = None,
                }
            }
            if out.inflight.is_some() {
                break;
            }
        }
        let bytes = out.inflight.as_ref().map_or(&[][..], Chunk::bytes);
        let ptr = bytes[out.offset..].as_ptr();
        let len = (bytes.len() - out.offset) as u32;
        let slot = conn.slot;
        conn.flags |= SEND_INFLIGHT;
        let sqe = opcode::Send::new(types::Fixed(slot), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(self.token(Op::Send, idx));
        self.push_conn(idx, sqe);
    }

    /// Send a heartbeat ping straight from the static frame: an idle connection gets no
    /// buffer for it. Only called with nothing queued and no send in flight.
    fn send_ping(&mut self, idx: usize) {
        /// A server Ping with no payload: FIN + opcode 0x9, unmasked, length 0.
        static PING: [u8; 2] = [0x89, 0x00];
        self.metrics.pings_sent.inc();
        self.metrics.bytes_out.add(PING.len() as u64);
        let conn = &mut self.conns[idx];
        conn.flags |= SEND_INFLIGHT;
        let slot = conn.slot;
        let sqe = opcode::Send::new(types::Fixed(slot), PING.as_ptr(), PING.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(self.token(Op::Ping, idx));
        self.push_conn(idx, sqe);
    }

    fn on_ping_sent(&mut self, idx: usize, res: i32) {
        self.conns[idx].flags &= !SEND_INFLIGHT;
        match res {
            2 => self.flush(idx),
            // A short send of two bytes: finish the frame through the queue.
            1 => self.queue(idx, |v| v.push(0x00)),
            _ => {
                if !matches!(self.conns[idx].phase, Phase::ShuttingDown | Phase::Closing) {
                    self.metrics.aborted.inc();
                }
                self.teardown(idx);
                self.maybe_close(idx);
            }
        }
    }

    /// Everything queued was sent.
    fn after_sent(&mut self, idx: usize) {
        match self.conns[idx].phase {
            Phase::Finishing => self.linger(idx),
            Phase::ShuttingDown => self.maybe_close(idx),
            _ => {}
        }
    }

    // ------------------------------------------------------------------ queueing output

    fn queue(&mut self, idx: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let conn = &mut self.conns[idx];
        let out = conn.out.get_or_insert_with(Box::<Outbound>::default);
        let added = out.write_owned(write);
        self.metrics.bytes_out.add(added as u64);
        if out.queued() > self.s.max_outbound && conn.phase == Phase::Open {
            self.close_slow(idx);
        }
        self.flush(idx);
    }

    /// Slow consumer: drop what it has not been sent yet, tell it why (1008), and go.
    fn close_slow(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        let out = conn.out.get_or_insert_with(Box::<Outbound>::default);
        out.queue.clear();
        out.queued_bytes = 0;
        out.write_owned(|v| {
            encode_close(v, Some(CloseCode::POLICY_VIOLATION), "slow consumer", None)
        });
        conn.phase = Phase::Finishing;
        conn.last_seen = self.tick;
        self.metrics.slow_consumers.inc();
        self.metrics
            .close(Side::Server, CloseCode::POLICY_VIOLATION.0);
        tracing::debug!(
            worker = self.id,
            conn = idx,
            "slow consumer closed with 1008"
        );
    }

    fn queue_frame(&mut self, idx: usize, op: OpCode, payload: &[u8]) {
        if op == OpCode::Text || op == OpCode::Binary {
            self.metrics.messages_out.inc();
        }
        self.queue(idx, |v| encode_frame(v, true, op, None, payload));
    }

    /// Start a server-initiated close. `wait` says whether to wait for the peer's Close
    /// (a clean close) or tear down once ours is sent (failing the connection).
    fn close_with(&mut self, idx: usize, code: CloseCode, reason: &str, wait: bool) {
        let conn = &mut self.conns[idx];
        if !conn.decoder.close_state_mut().on_send() {
            return;
        }
        self.metrics.close(Side::Server, code.0);
        let phase = if wait {
            Phase::AwaitingClose
        } else {
            Phase::Finishing
        };
        conn.phase = phase;
        conn.last_seen = self.tick;
        self.queue(idx, |v| encode_close(v, Some(code), reason, None));
    }

    // ------------------------------------------------------------------ teardown

    /// Our final bytes are sent: send FIN, then drop input until the peer closes or the
    /// linger deadline passes (see `Phase::Lingering`).
    fn linger(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        conn.phase = Phase::Lingering;
        conn.last_seen = self.tick;
        conn.spill = None;
        let (generation, armed) = (conn.generation, conn.flags & RECV_ARMED != 0);
        self.push_shutdown(idx, libc::SHUT_WR);
        if !armed {
            self.arm_read(idx);
        }
        self.lingers
            .push_back((idx as u32, generation, self.tick + self.s.close_ticks));
    }

    fn teardown(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if matches!(conn.phase, Phase::ShuttingDown | Phase::Closing) {
            return;
        }
        conn.phase = Phase::ShuttingDown;
        conn.last_seen = self.tick;
        let (armed, inflight) = (
            conn.flags & RECV_ARMED != 0,
            conn.flags & RECV_INFLIGHT != 0,
        );
        if armed || inflight {
            // Ends a multishot or single-shot receive (they complete with EOF).
            self.push_shutdown(idx, libc::SHUT_RDWR);
        }
        if armed && self.s.read_mode == ReadMode::Poll {
            // A multishot poll outlives shutdown (the socket just stays readable): remove it.
            let sqe = opcode::PollRemove::new(self.token(Op::Poll, idx))
                .build()
                .user_data(Token::new(Op::Cancel, u32::MAX, 0).encode());
            self.push_conn(idx, sqe);
        }
        self.maybe_close(idx);
    }

    fn maybe_close(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        let busy = RECV_ARMED | RECV_INFLIGHT | SEND_INFLIGHT | SHUT_INFLIGHT;
        if conn.phase != Phase::ShuttingDown || conn.flags & busy != 0 {
            return;
        }
        conn.phase = Phase::Closing;
        let slot = conn.slot;
        let sqe = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(self.token(Op::Close, idx));
        self.push_conn(idx, sqe);
    }

    fn release(&mut self, idx: usize) {
        self.leave_pubsub(idx);
        let conn = self.conns.remove(idx);
        if let Some(ip) = self.peer_ips.remove(&idx) {
            if let Some(t) = self.ip_table.as_ref() {
                t.release(ip);
            }
        }
        if conn.flags & COUNTED_WS != 0 {
            self.websockets -= 1;
        }
        let r = usize::from(conn.ring);
        self.rings[r].live -= 1;
        self.metrics.connections.set(self.conns.len() as u64);
        self.metrics.websockets.set(self.websockets as u64);
        if !self.accepting && self.drain.is_none() && self.has_room(r) {
            self.accepting = true;
            self.accept_ring = r;
            self.arm_accept();
        }
    }

    // ------------------------------------------------------------------ completions

    fn complete(&mut self, r: usize, bufs: &mut Vec<BufRing>, cqe: &cqueue::Entry) {
        let Some(tok) = Token::decode(cqe.user_data()) else {
            return;
        };
        let res = cqe.result();
        let flags = cqe.flags();
        match tok.op {
            Op::Accept => return self.on_accept(r, tok.index, res, bufs),
            Op::Wake => return self.on_wake(tok.index as usize, flags),
            Op::Cancel | Op::SockOpt => return,
            _ => {}
        }
        let idx = tok.index as usize;
        let live = self
            .conns
            .get(idx)
            .is_some_and(|c| c.generation & Token::GENERATION_MASK == tok.generation);
        if !live {
            if let Some(bid) = cqueue::buffer_select(flags) {
                bufs[r].recycle(bid);
            }
            return;
        }
        match tok.op {
            Op::Recv => self.on_recv(&mut bufs[r], idx, res, flags),
            Op::Poll => self.on_poll(idx, res, flags),
            Op::Send => self.on_send(idx, res),
            Op::Ping => self.on_ping_sent(idx, res),
            Op::Close => self.release(idx),
            Op::Shutdown => {
                self.conns[idx].flags &= !SHUT_INFLIGHT;
                self.maybe_close(idx);
            }
            _ => {}
        }
    }

    /// Shut the socket down (`how`), and hold the slot's close until that completes: the
    /// kernel punts shutdown to a worker thread that resolves the direct descriptor only when
    /// it runs, so a close (and the next accept into the slot) could otherwise overtake it
    /// and the late shutdown would cut the *next* connection. Found by `holdfast-loadgen
    /// storm`: ~1 in 2,000 reconnects saw EOF right after connecting.
    fn push_shutdown(&mut self, idx: usize, how: libc::c_int) {
        let conn = &mut self.conns[idx];
        conn.flags |= SHUT_INFLIGHT;
        let sqe = opcode::Shutdown::new(types::Fixed(conn.slot), how)
            .build()
            .user_data(self.token(Op::Shutdown, idx));
        self.push_conn(idx, sqe);
    }

    /// Ring 0's poll says ring `r` has work (or, for `HUB_WAKE`, the hub queued deliveries).
    fn on_wake(&mut self, r: usize, flags: u32) {
        if r == HUB_WAKE as usize {
            if !cqueue::more(flags) {
                self.arm_hub_wake();
            }
            self.ps.spec.waker.reset();
            return self.deliver_queued();
        }
        let Some(ctx) = self.rings.get_mut(r) else {
            return;
        };
        ctx.dirty = true;
        if let Some(fd) = ctx.eventfd.as_ref() {
            super::drain_eventfd(fd);
        }
        if !cqueue::more(flags) {
            self.arm_wake(r);
        }
    }

    fn on_accept(&mut self, r: usize, k: u32, res: i32, bufs: &mut Vec<BufRing>) {
        let mut peer = None;
        if let Some(slot) = self.addr_slots.get_mut(k as usize) {
            slot.armed = false;
            if res >= 0 && self.ip_table.is_some() {
                peer = super::listener::peer_ip(&slot.storage);
            }
        }
        if res < 0 {
            let errno = -res;
            if errno == libc::ECANCELED {
                return;
            }
            if matches!(
                errno,
                libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS
            ) {
                self.metrics.reject(Limit::AcceptResources);
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
                // Re-armed by the next tick, not in a hot loop.
                return;
            }
            tracing::warn!(
                worker = self.id,
                "accept failed: {}",
                io::Error::from_raw_os_error(errno)
            );
            self.arm_accept();
            return;
        }
        let slot = res as u32;
        self.metrics.accepted.inc();
        if self.drain.is_some() {
            let sqe = opcode::Close::new(types::Fixed(slot))
                .build()
                .user_data(Token::new(Op::Cancel, u32::MAX, 0).encode());
            self.push(r, sqe);
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        self.rings[r].live += 1;
        let idx = self
            .conns
            .insert(Conn::new(r as u16, slot, self.generation, self.tick));
        self.metrics.connections.set(self.conns.len() as u64);
        // A slab entry is an enum around Conn; Option<Conn> has the same layout question
        // (tag or niche), so it stands in for the private entry type.
        self.metrics
            .slab_bytes
            .set((self.conns.capacity() * std::mem::size_of::<Option<Conn>>()) as u64);
        if let Some(bucket) = self.bucket.as_mut() {
            if !bucket.try_take(Instant::now()) {
                self.conns[idx].flags |= REJECT_RATE;
            }
        }
        if let (Some(table), Some(ip)) = (self.ip_table.as_ref(), peer) {
            if table.try_acquire(ip) {
                self.peer_ips.insert(idx, ip);
            } else {
                self.conns[idx].flags |= REJECT_IP;
            }
        }
        self.arm_read(idx);
        let deadline = self.tick + self.s.handshake_ticks;
        self.handshakes
            .push_back((idx as u32, self.generation, deadline));
        if r == self.accept_ring && !self.has_room(r) {
            // Move on before the table fills (a full table ends the multishot with ENFILE).
            self.move_accept(bufs);
        } else {
            // Multishot: re-arm if it ended; pool: replace the accept that completed.
            self.arm_accept();
        }
    }

    fn on_poll(&mut self, idx: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.conns[idx].flags &= !RECV_ARMED;
        }
        if res < 0 && res != -libc::ECANCELED {
            // The socket failed; let a receive report how.
            if self.reading(idx) {
                self.submit_recv(idx);
            }
        } else if res > 0 && self.reading(idx) {
            self.submit_recv(idx);
            if res & i32::from(libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                // The peer's FIN is here, maybe behind data that arrived in the same wake-up:
                // read until EOF, since no further poll event will announce it once the data
                // is taken. (Found by the loadgen's bad-server test, which had the same gap.)
                self.conns[idx].flags |= RECV_AGAIN;
            }
        }
        if !more {
            if self.reading(idx) && res != -libc::ECANCELED {
                self.arm_read(idx);
            } else {
                self.maybe_close(idx);
            }
        }
    }

    fn on_recv(&mut self, bufs: &mut BufRing, idx: usize, res: i32, flags: u32) {
        let single = self.s.read_mode == ReadMode::Poll;
        let more = !single && cqueue::more(flags);
        let again = self.conns[idx].flags & RECV_AGAIN != 0;
        if single {
            self.conns[idx].flags &= !(RECV_INFLIGHT | RECV_AGAIN);
        } else if !more {
            self.conns[idx].flags &= !RECV_ARMED;
        }
        if res > 0 {
            let Some(bid) = cqueue::buffer_select(flags) else {
                return;
            };
            let data = bufs.slice_mut(bid, res as usize);
            self.on_bytes(idx, data);
            bufs.recycle(bid);
            // The entry is still there: releases only happen on Close completions.
            if self.reading(idx) {
                if single && (again || res as u32 == bufs.buffer_size()) {
                    // A full buffer, or input announced while this receive was in flight:
                    // there may be more waiting, with no further poll event to say so.
                    self.submit_recv(idx);
                } else if !single && !more {
                    self.arm_read(idx);
                }
            } else {
                self.maybe_close(idx);
            }
            return;
        }
        if single && res == -libc::EAGAIN {
            // Nothing (more) to read; the armed poll announces the next input.
            if again && self.reading(idx) {
                self.submit_recv(idx);
            }
            return;
        }
        if res == -libc::ENOBUFS {
            // Every provided buffer is in use (the multishot ended). Buffers are recycled as
            // each completion is handled, so ask again.
            if single {
                self.submit_recv(idx);
            } else if !more {
                self.arm_read(idx);
            }
            return;
        }
        // EOF or an error: the peer is gone.
        match self.conns[idx].phase {
            Phase::Handshake | Phase::Open | Phase::Finishing => {
                self.metrics.aborted.inc();
                self.teardown(idx);
            }
            Phase::AwaitingClose | Phase::Lingering => self.teardown(idx),
            Phase::ShuttingDown | Phase::Closing => self.maybe_close(idx),
        }
    }

    fn on_send(&mut self, idx: usize, res: i32) {
        let conn = &mut self.conns[idx];
        conn.flags &= !SEND_INFLIGHT;
        if res < 0 {
            conn.out = None;
            if !matches!(conn.phase, Phase::ShuttingDown | Phase::Closing) {
                self.metrics.aborted.inc();
            }
            self.teardown(idx);
            self.maybe_close(idx);
            return;
        }
        if let Some(out) = conn.out.as_mut() {
            out.offset += res as usize;
        }
        self.flush(idx);
    }

    // ------------------------------------------------------------------ protocol

    fn on_bytes(&mut self, idx: usize, data: &mut [u8]) {
        let conn = &mut self.conns[idx];
        match conn.phase {
            Phase::Handshake => {
                conn.last_seen = self.tick;
                self.on_handshake_bytes(idx, data)
            }
            Phase::Open | Phase::AwaitingClose => {
                if conn.phase == Phase::Open {
                    conn.last_seen = self.tick;
                }
                self.on_frame_bytes(idx, data)
            }
            // Finishing, shutting down: the answer is decided; ignore what arrives.
            _ => {}
        }
    }

    fn on_handshake_bytes(&mut self, idx: usize, data: &mut [u8]) {
        let limits = self.s.limits;
        let conn = &mut self.conns[idx];
        let mut spill = conn.spill.take();
        let result = match spill.as_mut() {
            None => {
                // The common case: the whole request in one read, parsed in place.
                let mut scanner = HeadScanner::new();
                match scanner.scan(data, &limits) {
                    Ok(Some(n)) => {
                        let (head, rest) = data.split_at_mut(n);
                        self.respond(idx, head);
                        if !rest.is_empty() && self.conns[idx].phase == Phase::Open {
                            self.on_frame_bytes(idx, rest);
                        }
                        Ok(())
                    }
                    Ok(None) => {
                        let mut s = Box::<Spill>::default();
                        s.pending.extend_from_slice(data);
                        s.scanner = scanner;
                        spill = Some(s);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Some(s) => {
                s.pending.extend_from_slice(data);
                match s.scanner.scan(&s.pending, &limits) {
                    Ok(Some(n)) => {
                        let mut owned = std::mem::take(&mut s.pending);
                        spill = None;
                        let (head, rest) = owned.split_at_mut(n);
                        self.respond(idx, head);
                        if !rest.is_empty() && self.conns[idx].phase == Phase::Open {
                            self.on_frame_bytes(idx, rest);
                        }
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Some(s) = spill {
            self.conns[idx].spill = Some(s);
        }
        if let Err(e) = result {
            self.fail_handshake(idx, e);
        }
    }

    fn fail_handshake(&mut self, idx: usize, e: crate::ws::Error) {
        metrics::handshake_failure(&self.metrics, e);
        tracing::debug!(worker = self.id, conn = idx, "handshake failed: {e}");
        let conn = &mut self.conns[idx];
        conn.spill = None;
        conn.phase = Phase::Finishing;
        self.queue(idx, |v| handshake::write_error(v, e));
    }

    fn reject(&mut self, idx: usize, limit: Limit, rejection: Rejection, body: &str) {
        self.metrics.reject(limit);
        let conn = &mut self.conns[idx];
        conn.spill = None;
        conn.phase = Phase::Finishing;
        self.queue(idx, |v| handshake::write_rejection(v, rejection, body));
    }

    fn respond(&mut self, idx: usize, head: &[u8]) {
        let req = match handshake::parse_request(head) {
            Ok(r) => r,
            Err(e) => return self.fail_handshake(idx, e),
        };
        let pubsub = req.path == "/ws";
        let subscribe = if pubsub {
            match pubsub::parse_query(req.query.unwrap_or(""), &self.ps.spec.limits) {
                Ok(Control::Subscribe { topics, resume }) => Some((topics, resume)),
                Ok(_) => None,
                Err(e) => {
                    self.metrics.control_errors.inc();
                    let body = e.reason();
                    return self.reject(idx, Limit::BadRequest, Rejection::BadRequest, &body);
                }
            }
        } else {
            None
        };
        if !matches!(req.path, "/echo" | "/ws" | "/") {
            return self.reject(
                idx,
                Limit::NotFound,
                Rejection::NotFound,
                "no such endpoint",
            );
        }
        let flags = self.conns[idx].flags;
        if flags & REJECT_RATE != 0 {
            return self.reject(
                idx,
                Limit::AcceptRate,
                Rejection::Unavailable { retry_after: 1 },
                "over the accept rate",
            );
        }
        if flags & REJECT_IP != 0 {
            return self.reject(
                idx,
                Limit::PerIp,
                Rejection::TooManyRequests {
                    retry_after: Some(5),
                },
                "too many connections from this address",
            );
        }
        if self.drain.is_some() || self.shared.draining.load(Ordering::Relaxed) {
            let retry = 1 + (self.next_rand() % 5) as u32;
            return self.reject(
                idx,
                Limit::Draining,
                Rejection::Unavailable { retry_after: retry },
                "draining",
            );
        }
        if self.websockets >= self.max_conns {
            return self.reject(
                idx,
                Limit::MaxConnections,
                Rejection::Unavailable { retry_after: 1 },
                "at connection limit",
            );
        }
        let accept = req.accept_key();
        let conn = &mut self.conns[idx];
        conn.phase = Phase::Open;
        conn.flags |= COUNTED_WS;
        conn.spill = None;
        self.websockets += 1;
        self.metrics.websockets.set(self.websockets as u64);
        self.metrics.upgrades.inc();
        self.queue(idx, |v| handshake::write_accept(v, &accept, None));
        if pubsub {
            self.ps.local.join(idx as u32);
            if let Some((topics, resume)) = subscribe {
                self.subscribe(idx, topics, resume);
            }
        }
    }

    fn on_frame_bytes(&mut self, idx: usize, data: &mut [u8]) {
        let max_message = self.s.max_message;
        let mut spill = self.conns[idx].spill.take();
        // Decode from the spill when it holds a split header or control frame; else in place.
        let mut pending = match spill.as_mut() {
            Some(s) if !s.pending.is_empty() => {
                let mut p = std::mem::take(&mut s.pending);
                p.extend_from_slice(data);
                p
            }
            _ => Vec::new(),
        };
        let use_spill = !pending.is_empty();
        let buf: &mut [u8] = if use_spill { &mut pending } else { data };
        let mut pos = 0;
        let mut stop = false;
        while !stop {
            let base = pos;
            let step = match self.conns[idx]
                .decoder
                .decode(&mut buf[base..], max_message)
            {
                Ok(s) => s,
                Err(e) => {
                    metrics::protocol_error(&self.metrics, e);
                    tracing::debug!(worker = self.id, conn = idx, "protocol error: {e}");
                    let code = e.close_code().unwrap_or(CloseCode::PROTOCOL_ERROR);
                    self.close_with(idx, code, e.reason(), false);
                    spill = None;
                    break;
                }
            };
            pos += step.consumed;
            let Some(event) = step.event else { break };
            let at = |r: std::ops::Range<usize>| base + r.start..base + r.end;
            let awaiting = self.conns[idx].phase == Phase::AwaitingClose;
            match event {
                Event::Data {
                    kind,
                    range,
                    first,
                    last,
                } => {
                    let len = range.len() as u64;
                    self.metrics.bytes_in.add(len);
                    if last {
                        self.metrics.messages_in.inc();
                    }
                    if awaiting {
                        continue;
                    }
                    let op = match kind {
                        DataKind::Text => OpCode::Text,
                        DataKind::Binary => OpCode::Binary,
                    };
                    if first && last {
                        let r = at(range);
                        self.on_message(idx, op, &buf[r]);
                    } else {
                        let s = spill.get_or_insert_with(Box::<Spill>::default);
                        if first {
                            s.message.clear();
                            s.message_op = Some(op);
                        }
                        s.message.extend_from_slice(&buf[at(range)]);
                        if last {
                            let msg = std::mem::take(&mut s.message);
                            self.on_message(idx, op, &msg);
                            if let Some(s) = spill.as_mut() {
                                s.message = msg;
                                s.message.clear();
                                s.message_op = None;
                            }
                        }
                    }
                }
                Event::Ping(r) => {
                    if !awaiting {
                        let r = at(r);
                        self.queue_frame(idx, OpCode::Pong, &buf[r]);
                    }
                }
                Event::Pong(_) => {}
                Event::Close {
                    code,
                    reason: _,
                    reply,
                } => {
                    match reply {
                        Some(echo) => {
                            self.metrics.close(Side::Client, code.map_or(1005, |c| c.0));
                            let conn = &mut self.conns[idx];
                            conn.phase = Phase::Finishing;
                            conn.last_seen = self.tick;
                            self.queue(idx, |v| encode_close(v, echo, "", None));
                        }
                        // Our Close was answered: the closing handshake is complete.
                        None => self.teardown(idx),
                    }
                    spill = None;
                    stop = true;
                }
            }
            if self.conns[idx].phase != Phase::Open && self.conns[idx].phase != Phase::AwaitingClose
            {
                spill = None;
                stop = true;
            }
        }
        // Keep what could not be decoded yet (a split header or control frame).
        let keep_from = pos;
        if let Some(conn) = self.conns.get_mut(idx) {
            if matches!(conn.phase, Phase::Open | Phase::AwaitingClose) && keep_from < buf.len() {
                let s = spill.get_or_insert_with(Box::<Spill>::default);
                if use_spill {
                    pending.drain(..keep_from);
                    s.pending = pending;
                } else {
                    s.pending.clear();
                    s.pending.extend_from_slice(&buf[keep_from..]);
                }
            }
            if let Some(s) = spill {
                if !s.pending.is_empty() || s.message_op.is_some() {
                    conn.spill = Some(s);
                }
            }
        }
    }

    // ------------------------------------------------------------------ timers

    fn next_rand(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn on_tick(&mut self) {
        let tick = self.tick;
        // Handshake deadlines arrive in order.
        while let Some(&(idx, generation, deadline)) = self.handshakes.front() {
            if deadline > tick {
                break;
            }
            self.handshakes.pop_front();
            let idx = idx as usize;
            let expired = self
                .conns
                .get(idx)
                .is_some_and(|c| c.generation == generation && c.phase == Phase::Handshake);
            if expired {
                self.metrics.handshake_timeouts.inc();
                self.metrics.aborted.inc();
                self.conns[idx].spill = None;
                self.teardown(idx);
            }
        }
        while let Some(&(idx, generation, deadline)) = self.lingers.front() {
            if deadline > tick {
                break;
            }
            self.lingers.pop_front();
            let idx = idx as usize;
            if self
                .conns
                .get(idx)
                .is_some_and(|c| c.generation == generation && c.phase == Phase::Lingering)
            {
                self.teardown(idx);
            }
        }
        if self.accepting && self.drain.is_none() {
            self.arm_accept();
        }
        self.sweep();
        self.drain_step();
        if tick % 10 == 0 {
            // Once a second, one pass over the slab for both gauges.
            let (heap, queued) = self.conns.iter().fold((0, 0), |(h, q), (_, c)| {
                (h + c.heap_bytes(), q + c.queued())
            });
            self.metrics.conn_heap_bytes.set(heap as u64);
            self.metrics.outbound_bytes.set(queued as u64);
        }
    }

    fn sweep(&mut self) {
        let buckets = self.s.ping_ticks.max(1) as usize;
        let bucket = self.tick as usize % buckets;
        let cap = self.conns.capacity();
        let mut i = bucket;
        while i < cap {
            if let Some(conn) = self.conns.get(i) {
                let silent = self.tick.wrapping_sub(conn.last_seen);
                match conn.phase {
                    Phase::Open => {
                        if silent >= self.s.idle_ticks {
                            self.metrics.idle_timeouts.inc();
                            self.close_with(i, CloseCode::GOING_AWAY, "idle timeout", false);
                        } else if silent + 1 >= self.s.ping_ticks
                            && conn.out.is_none()
                            && conn.flags & SEND_INFLIGHT == 0
                        {
                            self.send_ping(i);
                        }
                    }
                    Phase::AwaitingClose | Phase::Finishing => {
                        if silent >= self.s.close_ticks {
                            self.teardown(i);
                        }
                    }
                    Phase::ShuttingDown => {
                        if silent >= self.s.close_ticks {
                            // A send the peer never acknowledges: stop waiting for it.
                            if conn.flags & SHUT_INFLIGHT == 0 {
                                self.push_shutdown(i, libc::SHUT_RDWR);
                            }
                        }
                    }
                    Phase::Handshake | Phase::Closing | Phase::Lingering => {}
                }
            }
            i += buckets;
        }
    }

    fn drain_step(&mut self) {
        if self.drain.is_none() {
            if !self.shared.draining.load(Ordering::Relaxed) {
                return;
            }
            let total = self.websockets;
            tracing::info!(
                worker = self.id,
                connections = total,
                window_s = self.s.drain_ticks as f64 * TICK.as_secs_f64(),
                "drain started"
            );
            self.accepting = false;
            for r in 0..self.rings.len() {
                self.cancel_accept(r);
            }
            self.drain = Some(Drain {
                start: self.tick,
                total,
                sent: 0,
                cursor: 0,
            });
        }
        let Some(d) = self.drain.as_ref() else { return };
        let elapsed = self.tick - d.start;
        let window = self.s.drain_ticks.max(1);
        let target = if elapsed >= window {
            usize::MAX
        } else {
            (d.total * elapsed as usize).div_ceil(window as usize)
        };
        let (mut sent, mut cursor, total) = (d.sent, d.cursor, d.total);
        let cap = self.conns.capacity();
        while sent < target && cursor < cap {
            let open = self
                .conns
                .get(cursor)
                .is_some_and(|c| c.phase == Phase::Open);
            if open {
                let hint = self.next_rand() % (u64::from(window) * TICK.as_millis() as u64);
                let reason = format!("{{\"reason\":\"draining\",\"reconnect_after_ms\":{hint}}}");
                self.close_with(cursor, CloseCode::SERVICE_RESTART, &reason, true);
                sent += 1;
            } else if self
                .conns
                .get(cursor)
                .is_some_and(|c| c.phase == Phase::Handshake)
            {
                self.teardown(cursor);
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
                self.teardown(i);
            }
        }
    }

    /// The drain is over: every connection is gone (no new one can arrive once accepts are
    /// cancelled: late accepts are closed unseen), or 2 s past window + grace.
    fn finished(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| {
            self.conns.is_empty()
                || self.tick - d.start > self.s.drain_ticks + self.s.grace_ticks + 20
        })
    }
}
