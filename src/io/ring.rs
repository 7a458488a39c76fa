//! One io_uring instance together with everything its operations point into: the
//! provided-buffer pool, the buffers of sends in flight, the accept address slots and the
//! connect addresses. Owning them here is what makes every operation safe to request: no
//! caller can free or move memory the kernel still uses, on any path, because the caller
//! never holds it.
//!
//! # Submission
//! Every operation goes through [`Ring::push_chain`]. When the submission queue is full the
//! ring submits (which may move completions to an internal list if the completion queue is
//! full) and retries; whatever still does not fit waits in a backlog that the next
//! [`Ring::enter`] flushes in order. Nothing is ever dropped, and a linked chain is pushed
//! whole or not at all (splitting a chain across submissions would break its links).
//!
//! # The receive gate
//! A ring built with [`RingConfig::gate_receives`] submits a single-shot receive only while
//! the buffer pool has a free buffer for it and for every receive already submitted and not
//! yet reaped; the others wait, in order, and go with a later enter, once the handled
//! completions have returned their buffers. A burst of ready connections (heartbeat pongs
//! at 1M connections, an upgrade ramp) is thus read in rounds of the pool's size instead of
//! growing the pool to the burst, whose pages the ring order would then keep resident; the
//! pool grows only when the rounds cost many extra enters (see `bufring`). Other chains do
//! not wait for buffers — accepts, sends and poll removals overtake waiting receives —
//! except a chain that gives up a slot (a close, a descriptor installed for the hand-over),
//! which waits for every receive queued before it: once a slot is closed the next accept
//! may reuse it, and a receive submitted after that would read the new connection's bytes.
//! Multishot receives take buffers without asking: a ring that uses them is not gated.

//! # Completions
//! [`Ring::reap`] turns completion entries into [`Completion`]s: a received buffer comes as
//! a [`RecvBuf`] that returns to the kernel when dropped; a send comes back once all of its
//! bytes are sent (short sends are resubmitted here) or it failed, with its buffer; an
//! accept comes with the peer's address.
//!
//! # Teardown
//! The kernel finishes tearing a ring down after its fd is closed, asynchronously. A ring
//! dropped while operations are still in flight therefore leaks (never frees) the memory
//! they point into; a ring dropped idle frees everything. `uring` is the first field, so
//! it is always closed before anything it pointed into is freed.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use super::bufring::{BufPool, RecvBuf};
use super::token::{Op, Token};

/// What a ring is built with.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// Slots in the registered (sparse) file table: at most the RLIMIT_NOFILE soft limit.
    pub files: u32,
    /// Provided buffers (a power of two).
    pub buffers: u16,
    /// Buffers in circulation at the start, and the least the pool shrinks back to.
    pub initial_buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
    /// Register an eventfd that the kernel signals when completions arrive.
    pub eventfd: bool,
    /// Submit single-shot receives only while a provided buffer is free for each (see the
    /// module docs). Only for rings that never arm multishot receives.
    pub gate_receives: bool,
}

/// Bytes handed to a send. The ring owns them until the send completes.
#[derive(Debug)]
pub enum SendBuf {
    /// A buffer of the caller's, given back with the completion for reuse.
    Owned(Vec<u8>),
    /// A frame shared by many connections (sent from the shared allocation, never copied).
    Shared(Arc<[u8]>),
    /// Bytes that live forever (static ping, pong and close frames).
    Static(&'static [u8]),
}

impl SendBuf {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared(a) => a,
            Self::Static(s) => s,
        }
    }
}

/// The chains the receive gate holds back (see the module docs), built into SQEs only when
/// submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gated {
    /// A single-shot receive into a provided buffer.
    Recv,
    /// The close of a direct descriptor.
    Close,
    /// `shutdown(SHUT_RDWR)` hard-linked to the close.
    ShutdownClose,
    /// SO_LINGER {1, 0} hard-linked to the close.
    AbortClose,
    /// The direct descriptor installed as a regular one (the hand-over gives it away).
    Install,
}

/// A gated chain waiting, in 24 bytes (a mass disconnect queues one per connection).
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Its place in the submission order.
    seq: u32,
    slot: u32,
    user_data: u64,
    what: Gated,
}

/// Capacity a drained queue (or the table of sends in flight) may keep; a larger one is
/// freed once empty.
const SPARE_HELD: usize = 4096;

/// A send the kernel is working on.
#[derive(Debug)]
struct InflightSend {
    owner: Token,
    slot: u32,
    buf: SendBuf,
    offset: usize,
}

/// Where the kernel writes the peer address of one pooled accept. Boxed in a slice that is
/// never reallocated, so the pointers given to the kernel stay valid.
struct AddrSlot {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
    armed: bool,
}

/// A socket address registered with the ring for connect chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrId(u32);

/// What a completion carries besides its result.
#[derive(Debug)]
pub enum Extra {
    /// Nothing.
    None,
    /// The buffer a receive filled (returned to the kernel when dropped).
    Recv(RecvBuf),
    /// A finished send's buffer.
    Sent(SendBuf),
    /// An accept's peer address (when the kernel gave one).
    Peer(Option<SocketAddr>),
    /// Descriptors given to [`Ring::adopt_fds`]: those placed now hold their slot numbers
    /// (the completion's result says how many were placed, from the first).
    Adopted(Vec<RawFd>),
}

/// One completion, decoded.
#[derive(Debug)]
pub struct Completion {
    /// What it is about. For a send: the owner's token given to [`Ring::send`].
    pub token: Token,
    /// The kernel's result; for a send, every byte sent or the error that stopped it.
    pub res: i32,
    /// CQE flags (`cqueue::more` says whether a multishot stays armed).
    pub flags: u32,
    /// Its buffer or address.
    pub extra: Extra,
}

impl Completion {
    /// Whether a multishot operation stays armed after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

static ONE: libc::c_int = 1;
/// SO_LINGER on with a zero timeout: close(2) resets the connection and discards what is
/// unsent, instead of leaving an orphaned socket sending to a peer that does not read.
static LINGER_ZERO: libc::linger = libc::linger {
    l_onoff: 1,
    l_linger: 0,
};

/// One ring and what its operations use. See the module docs for the rules it keeps.
#[allow(missing_debug_implementations)] // IoUring has no Debug
pub struct Ring {
    uring: IoUring,
    pool: BufPool,
    sends: Slab<InflightSend>,
    /// Descriptor lists the kernel writes slot numbers into, until their update completes.
    adoptions: Slab<(Token, Vec<RawFd>)>,
    accepts: Box<[AddrSlot]>,
    /// Pool indices of `accepts` not armed (the probe's slot is never listed), so that
    /// re-arming after each accept does not walk the whole pool.
    accepts_idle: Vec<u32>,
    /// How many of `accepts` are armed.
    accepts_armed: usize,
    // Boxed on purpose: connect chains point into each address while the Vec grows.
    #[allow(clippy::vec_box)]
    addrs: Vec<Box<(libc::sockaddr_storage, libc::socklen_t)>>,
    /// Chains waiting for room in the queue, in submission order (with the gate: those that
    /// are neither a single-shot receive nor a hand-off of a slot).
    backlog: VecDeque<Box<[squeue::Entry]>>,
    /// Gate only: single-shot receives waiting for a free buffer, in order.
    recv_wait: VecDeque<Held>,
    /// Gate only: chains that give up a slot (a close, a descriptor installed for the
    /// hand-over), in order: one waits until every receive queued before it is submitted.
    handoffs: VecDeque<Held>,
    /// The last place in the submission order handed to a [`Held`] chain.
    queued: u32,
    gate: bool,
    /// Single-shot receives submitted whose completion has not been reaped: each may hold
    /// one of the pool's buffers.
    recvs_pending: usize,
    deferred: VecDeque<cqueue::Entry>,
    /// The accepts were cancelled: free their address slots once none is armed.
    accepts_retired: bool,
    eventfd: Option<OwnedFd>,
    /// Operations submitted whose final completion has not been reaped.
    in_flight: usize,
    /// Poll removals that met their poll mid-wake-up and were retried as a cancel, since
    /// the owner last took the count.
    unpoll_retries: u64,
    files: u32,
    /// Set-up flags the kernel refused, each with its reason.
    fallbacks: Vec<String>,
}

impl Ring {
    /// Build a ring with its file table, buffer pool and (optionally) eventfd.
    pub fn new(cfg: RingConfig) -> io::Result<Self> {
        let (uring, fallbacks) = super::setup(cfg.sq_entries, cfg.cq_entries)?;
        uring.submitter().register_files_sparse(cfg.files)?;
        let pool = BufPool::new(
            &uring,
            cfg.buffers,
            cfg.buffer_size,
            cfg.initial_buffers,
            cfg.gate_receives,
        )?;
        let eventfd = if cfg.eventfd {
            let efd = super::sys::eventfd()?;
            uring.submitter().register_eventfd(efd.as_raw_fd())?;
            Some(efd)
        } else {
            None
        };
        Ok(Self {
            uring,
            pool,
            sends: Slab::new(),
            adoptions: Slab::new(),
            accepts: Box::new([]),
            accepts_idle: Vec::new(),
            accepts_armed: 0,
            addrs: Vec::new(),
            backlog: VecDeque::new(),
            recv_wait: VecDeque::new(),
            handoffs: VecDeque::new(),
            queued: 0,
            gate: cfg.gate_receives,
            recvs_pending: 0,
            unpoll_retries: 0,
            deferred: VecDeque::new(),
            accepts_retired: false,
            eventfd,
            in_flight: 0,
            files: cfg.files,
            fallbacks,
        })
    }

    /// Set-up flags the kernel refused (each with the kernel's reason).
    pub fn fallbacks(&self) -> &[String] {
        &self.fallbacks
    }

    /// Slots in the file table.
    pub fn files(&self) -> u32 {
        self.files
    }

    /// The eventfd the kernel signals, when one was asked for.
    pub fn eventfd(&self) -> Option<RawFd> {
        self.eventfd.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Reset the eventfd's counter after a wake-up.
    pub fn clear_eventfd(&self) {
        if let Some(fd) = self.eventfd.as_ref() {
            super::sys::drain_eventfd(fd);
        }
    }

    /// Operations whose final completion is still to come.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Poll removals that met their poll in the middle of a wake-up (EALREADY) and were
    /// retried as an async cancel (see [`Ring::poll_remove`]) since the last call.
    pub fn take_unpoll_retries(&mut self) -> u64 {
        std::mem::take(&mut self.unpoll_retries)
    }

    /// Bytes per provided buffer.
    pub fn buffer_size(&self) -> u32 {
        self.pool.buffer_size()
    }

    /// Whether submissions wait (in the queue or the backlog).
    pub fn has_pending(&mut self) -> bool {
        !self.backlog.is_empty()
            || !self.recv_wait.is_empty()
            || !self.handoffs.is_empty()
            || !self.uring.submission().is_empty()
    }

    /// Whether completions wait to be reaped without entering the kernel.
    pub fn has_completions(&mut self) -> bool {
        !self.deferred.is_empty() || !self.uring.completion().is_empty()
    }

    /// Whether the kernel holds task work for this ring (a socket's readiness, say) that only
    /// an enter runs: IORING_SQ_TASKRUN, set when the first item is queued (false on a ring
    /// built without TASKRUN_FLAG). A read of shared memory, no system call.
    pub fn task_work_pending(&mut self) -> bool {
        self.uring.submission().taskrun()
    }

    // ------------------------------------------------------------------ submission

    /// Queue a chain of SQEs (one SQE is a chain of one). Each must reference only memory
    /// this ring owns (see the SAFETY comment): every public operation below builds its
    /// entries that way, and this stays private.
    fn push_chain(&mut self, sqes: &[squeue::Entry]) {
        self.in_flight += sqes.len();
        // Plain chains overtake held ones (see `flush_backlog`): only their own backlog
        // keeps them waiting.
        if self.backlog.is_empty() && self.try_push(sqes) {
            return;
        }
        self.backlog.push_back(sqes.into());
        self.flush_backlog();
    }

    fn queues_empty(&self) -> bool {
        self.backlog.is_empty() && self.recv_wait.is_empty() && self.handoffs.is_empty()
    }

    /// Queue a receive or a hand-off of `slot`: through the receive gate if the ring has
    /// one (see the module docs), else as any other chain.
    fn queue_gated(&mut self, what: Gated, slot: u32, user_data: u64) {
        let (sqes, n) = self.build(what, slot, user_data);
        if !self.gate {
            return self.push_chain(&sqes[..n]);
        }
        self.in_flight += n;
        let recv = what == Gated::Recv;
        if self.queues_empty() && (!recv || self.buffer_free()) && self.try_push(&sqes[..n]) {
            self.recvs_pending += usize::from(recv);
            return;
        }
        self.queued = self.queued.wrapping_add(1);
        let held = Held {
            seq: self.queued,
            slot,
            user_data,
            what,
        };
        if recv {
            self.pool.note_waiting();
            self.recv_wait.push_back(held);
        } else {
            self.handoffs.push_back(held);
        }
        self.flush_backlog();
    }

    /// The SQEs of a held chain: the first `n` of the array (a no-op fills the rest and is
    /// never pushed).
    fn build(&self, what: Gated, slot: u32, user_data: u64) -> ([squeue::Entry; 2], usize) {
        let fixed = types::Fixed(slot);
        let close = |ud: u64| opcode::Close::new(fixed).build().user_data(ud);
        let linked = |first: squeue::Entry| {
            let token = Token::decode(user_data).expect("a hand-off's token");
            let first = first
                .flags(squeue::Flags::IO_HARDLINK)
                .user_data(token.with_op(Op::Shutdown).encode());
            ([first, close(token.with_op(Op::Close).encode())], 2)
        };
        match what {
            Gated::Recv => {
                let sqe = opcode::Recv::new(fixed, std::ptr::null_mut(), self.pool.buffer_size())
                    .buf_group(0)
                    .flags(libc::MSG_DONTWAIT)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
                    .user_data(user_data);
                ([sqe, opcode::Nop::new().build()], 1)
            }
            Gated::Close => ([close(user_data), opcode::Nop::new().build()], 1),
            Gated::Install => {
                let sqe = opcode::FixedFdInstall::new(fixed, 0)
                    .build()
                    .user_data(user_data);
                ([sqe, opcode::Nop::new().build()], 1)
            }
            Gated::ShutdownClose => linked(opcode::Shutdown::new(fixed, libc::SHUT_RDWR).build()),
            Gated::AbortClose => linked(
                opcode::SetSockOpt::new(
                    fixed,
                    libc::SOL_SOCKET as u32,
                    libc::SO_LINGER as u32,
                    (&LINGER_ZERO as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as u32,
                )
                .build(),
            ),
        }
    }

    /// Whether a buffer is free for one more single-shot receive: every one submitted and
    /// not yet reaped may hold one.
    fn buffer_free(&self) -> bool {
        usize::from(self.pool.available()) > self.recvs_pending
    }

    /// Push a whole chain if the queue has room for it, submitting first if it has not.
    fn try_push(&mut self, sqes: &[squeue::Entry]) -> bool {
        for _ in 0..2 {
            {
                let mut sq = self.uring.submission();
                if sq.capacity() - sq.len() >= sqes.len() {
                    // SAFETY: every entry was built by a method of this ring and points only
                    // at memory the ring owns and keeps until the operation's final
                    // completion: an in-flight send's buffer (`sends`, removed only when its
                    // completion is reaped), an accept's address slot (`accepts`, a boxed
                    // slice never reallocated while a slot is armed), a registered connect
                    // address (`addrs`, boxes never freed before the ring), or statics
                    // (`ONE`, `LINGER_ZERO`).
                    // Receives use provided buffers (`pool`, unmapped only after `uring` is
                    // closed, or leaked if operations are in flight then).
                    let pushed = unsafe { sq.push_multiple(sqes) };
                    return pushed.is_ok();
                }
            }
            if self.submit_now().is_err() {
                return false;
            }
        }
        false
    }

    /// Hand the queue to the kernel without waiting. A full completion queue (EBUSY) is
    /// emptied into `deferred` first, so submission never stalls on unreaped completions.
    fn submit_now(&mut self) -> io::Result<()> {
        for _ in 0..2 {
            match super::enter_nonblocking(&mut self.uring) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    self.deferred.extend(self.uring.completion());
                }
                r => return r,
            }
        }
        Ok(()) // still busy: what is queued stays queued for the next enter
    }

    /// Push what waits, as far as room, buffers and order allow: first the plain chains, in
    /// order (a send or poll removal queued before a close of its slot thus goes before
    /// it); then gated receives, in order, while a buffer is free for each; then hand-offs
    /// of slots, in order, each only once no receive queued before it still waits (a slot
    /// given up before a receive on it ran could be reused by the next accept, and the
    /// receive would read the new connection's bytes).
    fn flush_backlog(&mut self) {
        while let Some(chain) = self.backlog.pop_front() {
            if !self.try_push(&chain) {
                self.backlog.push_front(chain);
                return;
            }
        }
        while let Some(&h) = self.recv_wait.front() {
            if !self.buffer_free() {
                break;
            }
            let (sqes, n) = self.build(h.what, h.slot, h.user_data);
            if !self.try_push(&sqes[..n]) {
                break;
            }
            self.recv_wait.pop_front();
            self.recvs_pending += 1;
        }
        let first_waiting = self.recv_wait.front().map(|h| h.seq);
        while let Some(&h) = self.handoffs.front() {
            // Places wrap at 2^32; fewer than 2^31 chains are ever held at once (one per
            // connection).
            let after_a_waiting_receive =
                first_waiting.is_some_and(|w| h.seq.wrapping_sub(w) as i32 > 0);
            let (sqes, n) = self.build(h.what, h.slot, h.user_data);
            if after_a_waiting_receive || !self.try_push(&sqes[..n]) {
                break;
            }
            self.handoffs.pop_front();
        }
        // A burst (a mass disconnect) can queue one chain per connection: do not keep the
        // queues' memory once they are drained.
        for q in [&mut self.recv_wait, &mut self.handoffs] {
            if q.is_empty() && q.capacity() > SPARE_HELD {
                *q = VecDeque::new();
            }
        }
        if self.backlog.is_empty() && self.backlog.capacity() > SPARE_HELD {
            self.backlog = VecDeque::new();
        }
    }

    /// Submit what is queued and run deferred task work without waiting, so completions
    /// become visible (a DEFER_TASKRUN ring needs GETEVENTS for that).
    pub fn enter(&mut self) -> io::Result<()> {
        self.flush_backlog();
        self.submit_now()?;
        self.flush_backlog();
        Ok(())
    }

    /// Like [`Ring::enter`] but runs every pending deferred item at once (see
    /// [`super::enter_run_all`]): for bursts of linked connect chains.
    pub fn enter_all(&mut self) -> io::Result<()> {
        self.flush_backlog();
        super::enter_run_all(&mut self.uring)?;
        self.flush_backlog();
        Ok(())
    }

    /// Submit and wait up to `timeout` for at least one completion.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.wait_for(1, timeout)
    }

    /// Submit what is queued and wait out `pause`, unless a whole completion queue's worth
    /// arrives first: the worker's pause between fan-out turns (`reactor::pace`).
    pub fn pause(&mut self, pause: Duration) -> io::Result<()> {
        let cq = self.uring.params().cq_entries() as usize;
        self.wait_for(cq, pause)
    }

    fn wait_for(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        self.flush_backlog();
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        let r = match self.uring.submitter().submit_with_args(want, &args) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                self.deferred.extend(self.uring.completion());
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            r => r.map(drop),
        };
        self.flush_backlog();
        r
    }

    // ------------------------------------------------------------------ completions

    /// Move every available completion into `out`, decoded. Returns how many.
    pub fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        let start = out.len();
        while let Some(cqe) = self.deferred.pop_front() {
            if let Some(c) = self.translate(&cqe) {
                out.push(c);
            }
        }
        // Taken in batches through a stack array: `translate` may submit (a short send's
        // rest), which needs the ring, so the completion queue is not borrowed across it; and
        // no per-ring buffer is kept (a node at 1M connections has ~50 rings).
        let mut batch = [const { std::mem::MaybeUninit::<cqueue::Entry>::uninit() }; 128];
        loop {
            let n = {
                let got = self.uring.completion().fill(&mut batch);
                got.len()
            };
            if n == 0 {
                break;
            }
            for slot in &batch[..n] {
                // SAFETY: `fill` initialised the first `n` entries just above (it returns
                // them as a slice; only its length is kept so the ring can be borrowed
                // again), and cqueue::Entry is plain data (Copy), so reading it twice is
                // harmless.
                let cqe = unsafe { slot.assume_init_ref() }.clone();
                if let Some(c) = self.translate(&cqe) {
                    out.push(c);
                }
            }
        }
        out.len() - start
    }

    fn translate(&mut self, cqe: &cqueue::Entry) -> Option<Completion> {
        let flags = cqe.flags();
        let res = cqe.result();
        if !cqueue::more(flags) {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let buf = cqueue::buffer_select(flags).map(|bid| self.pool.take(bid, res.max(0) as usize));
        if res == -libc::ENOBUFS {
            self.pool.starved();
        }
        let Some(token) = Token::decode(cqe.user_data()) else {
            return None; // not ours; a buffer it carried is recycled as `buf` drops
        };
        if token.op == Op::Recv && !cqueue::more(flags) {
            // Gated rings only issue single-shot receives: this one's buffer (if it took
            // one) is now lent, and it no longer holds one back.
            self.recvs_pending = self.recvs_pending.saturating_sub(1);
        }
        let extra = match token.op {
            Op::Send => return self.on_send(token.index as usize, res),
            Op::Unpoll => {
                if res == -libc::EALREADY {
                    self.unpoll_retries += 1;
                    self.cancel(token.with_op(Op::Poll));
                }
                return None;
            }
            Op::Adopt => {
                let key = token.index as usize;
                if !self.adoptions.contains(key) {
                    return None;
                }
                let (owner, fds) = self.adoptions.remove(key);
                return Some(Completion {
                    token: owner,
                    res,
                    flags,
                    extra: Extra::Adopted(fds),
                });
            }
            Op::Accept => {
                // Never drop an accept's completion: a socket it installed must reach the
                // owner even if the address slots are gone (then without a peer address).
                let k = token.index as usize;
                let probe = self.accepts.len().saturating_sub(1);
                let peer = match self.accepts.get_mut(k) {
                    Some(slot) => {
                        if slot.armed {
                            self.accepts_armed -= 1;
                            if k != probe {
                                self.accepts_idle.push(k as u32);
                            }
                        }
                        slot.armed = false;
                        (res >= 0)
                            .then(|| super::listener::peer_addr(&slot.storage))
                            .flatten()
                    }
                    None => None,
                };
                if self.accepts_retired && !self.accepting() {
                    // Accepting moved to another ring: its address slots are not kept.
                    self.accepts = Box::new([]);
                    self.accepts_idle.clear();
                }
                Extra::Peer(peer)
            }
            _ => buf.map_or(Extra::None, Extra::Recv),
        };
        Some(Completion {
            token,
            res,
            flags,
            extra,
        })
    }

    /// A send completed: resubmit the rest after a short send, else hand the buffer back.
    fn on_send(&mut self, key: usize, res: i32) -> Option<Completion> {
        let s = self.sends.get_mut(key)?;
        if res > 0 {
            s.offset += res as usize;
            if s.offset < s.buf.bytes().len() {
                let sqe = self.send_sqe(key);
                self.push_chain(&[sqe]);
                return None;
            }
        }
        let s = self.sends.remove(key);
        if self.sends.is_empty() && self.sends.capacity() > SPARE_HELD {
            // A burst (a tick's pings to a ring's ~20k connections, a mass close) grew the
            // table; nothing refers into it now.
            self.sends = Slab::new();
        }
        let res = if res < 0 { res } else { s.offset as i32 };
        Some(Completion {
            token: s.owner,
            res,
            flags: 0,
            extra: Extra::Sent(s.buf),
        })
    }

    // ------------------------------------------------------------------ operations

    /// Send `buf` on the socket in `slot`; the completion carries `owner` (its op set to
    /// `Send`), the total sent and the buffer back.
    pub fn send(&mut self, slot: u32, buf: SendBuf, owner: Token) {
        let key = self.sends.insert(InflightSend {
            owner: owner.with_op(Op::Send),
            slot,
            buf,
            offset: 0,
        });
        let sqe = self.send_sqe(key);
        self.push_chain(&[sqe]);
    }

    fn send_sqe(&self, key: usize) -> squeue::Entry {
        let s = &self.sends[key];
        let rest = &s.buf.bytes()[s.offset..];
        opcode::Send::new(types::Fixed(s.slot), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(Token::new(Op::Send, key as u32, 0).encode())
    }

    /// Multishot POLLIN|POLLRDHUP on the socket in `slot`.
    pub fn poll_socket(&mut self, slot: u32, token: Token) {
        let sqe = opcode::PollAdd::new(types::Fixed(slot), (libc::POLLIN | libc::POLLRDHUP) as u32)
            .multi(true)
            .build()
            .user_data(token.encode());
        self.push_chain(&[sqe]);
    }

    /// Single-shot POLLIN|POLLRDHUP on the socket in `slot`.
    pub fn poll_socket_once(&mut self, slot: u32, token: Token) {
        let sqe = opcode::PollAdd::new(types::Fixed(slot), (libc::POLLIN | libc::POLLRDHUP) as u32)
            .build()
            .user_data(token.encode());
        self.push_chain(&[sqe]);
    }

    /// Multishot POLLIN on a plain fd (an eventfd), completions tagged `token`.
    pub fn poll_fd(&mut self, fd: RawFd, token: Token) {
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(token.encode());
        self.push_chain(&[sqe]);
    }

    /// Remove the multishot poll submitted with `target` (its last completion comes with
    /// ECANCELED). IORING_OP_POLL_REMOVE fails with EALREADY, leaving the poll armed, when
    /// it meets the poll in the middle of a wake-up (the kernel's poll task work owns it
    /// then); an armed poll holds its socket open even after the socket's slot is closed,
    /// so that removal is retried as an IORING_OP_ASYNC_CANCEL, which marks the poll
    /// cancelled for whoever owns it and cannot miss. The async cancel is not the first
    /// choice: it first walks the task's io-wq for the target, which a poll never is in.
    pub fn poll_remove(&mut self, target: Token) {
        let sqe = opcode::PollRemove::new(target.encode())
            .build()
            .user_data(target.with_op(Op::Unpoll).encode());
        self.push_chain(&[sqe]);
    }

    /// Multishot receive into provided buffers.
    pub fn recv_multi(&mut self, slot: u32, token: Token) {
        let sqe = opcode::RecvMulti::new(types::Fixed(slot), 0)
            .build()
            .user_data(token.encode());
        self.push_chain(&[sqe]);
    }

    /// One non-blocking receive into a provided buffer (EAGAIN when there is nothing).
    pub fn recv_once(&mut self, slot: u32, token: Token) {
        self.queue_gated(Gated::Recv, slot, token.encode());
    }

    /// shutdown(2) the socket in `slot`.
    pub fn shutdown(&mut self, slot: u32, how: libc::c_int, token: Token) {
        let sqe = opcode::Shutdown::new(types::Fixed(slot), how)
            .build()
            .user_data(token.encode());
        self.push_chain(&[sqe]);
    }

    /// Close the direct descriptor in `slot`.
    pub fn close(&mut self, slot: u32, token: Token) {
        self.queue_gated(Gated::Close, slot, token.encode());
    }

    /// Install the direct descriptor in `slot` as a regular descriptor of this process
    /// (close-on-exec), for passing it to another process: the completion's result is the
    /// new descriptor (IORING_OP_FIXED_FD_INSTALL, Linux 6.8). The slot keeps its socket.
    pub fn install_fd(&mut self, slot: u32, token: Token) {
        self.queue_gated(Gated::Install, slot, token.with_op(Op::Install).encode());
    }

    /// Place regular descriptors `fds` into free slots of the file table (the kernel picks
    /// them, IORING_FILE_INDEX_ALLOC). The completion carries `owner` and
    /// [`Extra::Adopted`] with each placed descriptor replaced by its slot; the result is
    /// how many were placed (from the first) or an error. The caller still owns (and
    /// closes) the regular descriptors: the table holds its own reference.
    pub fn adopt_fds(&mut self, fds: Vec<RawFd>, owner: Token) {
        let key = self.adoptions.insert((owner, fds));
        let list = &self.adoptions[key].1;
        // The list's heap buffer does not move while it sits in the slab (the Vec is never
        // touched until its completion removes it), so the kernel may write into it.
        let sqe = opcode::FilesUpdate::new(list.as_ptr(), list.len() as u32)
            .offset(libc::c_int::from(-1i8)) // IORING_FILE_INDEX_ALLOC (~0U)
            .build()
            .user_data(Token::new(Op::Adopt, key as u32, 0).encode());
        self.push_chain(&[sqe]);
    }

    /// Cancel the operation submitted with `target` (its completion comes back with
    /// ECANCELED, or as it would anyway if it already finished).
    pub fn cancel(&mut self, target: Token) {
        let sqe = opcode::AsyncCancel::new(target.encode())
            .build()
            .user_data(target.with_op(Op::Ignore).encode());
        self.push_chain(&[sqe]);
    }

    /// `shutdown(SHUT_RDWR)` hard-linked to the close of `slot`: the close runs after the
    /// shutdown whatever its result (a socket never connected fails it with ENOTCONN).
    /// Completions: `Op::Shutdown`, then `Op::Close`.
    pub fn shutdown_close(&mut self, slot: u32, token: Token) {
        self.queue_gated(Gated::ShutdownClose, slot, token.encode());
    }

    /// Abort the connection in `slot`: SO_LINGER {1, 0} hard-linked to the close, so the
    /// close sends a reset and frees the socket with whatever it had unsent. Completions:
    /// `Op::Shutdown` (the setsockopt), then `Op::Close`.
    pub fn abort_close(&mut self, slot: u32, token: Token) {
        self.queue_gated(Gated::AbortClose, slot, token.encode());
    }

    // ------------------------------------------------------------------ accepting

    /// Keep `pool` single-shot accepts armed on `listener`, each into a free slot of the
    /// file table and with a buffer for the peer's address. Completions carry
    /// `Op::Accept` with the pool index and [`Extra::Peer`]. One more address slot (index
    /// `pool`) is kept for [`Ring::probe_accept`].
    pub fn arm_accepts(&mut self, listener: RawFd, pool: usize) {
        self.accepts_retired = false;
        if self.accepts.len() < pool + 1 {
            if self.accepting() {
                return; // never reallocate under armed accepts
            }
            self.accepts = (0..=pool)
                .map(|_| AddrSlot {
                    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
                    storage: unsafe { std::mem::zeroed() },
                    len: 0,
                    armed: false,
                })
                .collect();
            self.accepts_idle = (0..pool as u32).rev().collect();
        }
        while let Some(k) = self.accepts_idle.pop() {
            self.arm_accept_slot(listener, k as usize);
        }
    }

    /// Submit one more accept now, beside the armed ones (which wait for a wake-up): it
    /// tries the listen queue at once. Accepts wait on the listener *exclusively* (one
    /// wake-up per arriving connection), so a wake-up taken by an accept that is then
    /// cancelled is lost and its connection waits in the queue until the next arrives; the
    /// probe takes it. Does nothing unless accepts were armed here, or if the probe is
    /// already in flight.
    pub fn probe_accept(&mut self, listener: RawFd) {
        if self.accepts_retired || self.accepts.is_empty() {
            return;
        }
        let k = self.accepts.len() - 1;
        self.arm_accept_slot(listener, k);
    }

    fn arm_accept_slot(&mut self, listener: RawFd, k: usize) {
        let Some(slot) = self.accepts.get_mut(k) else {
            return;
        };
        if slot.armed {
            return;
        }
        slot.armed = true;
        self.accepts_armed += 1;
        slot.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let sqe = opcode::Accept::new(
            types::Fd(listener),
            (&mut slot.storage as *mut libc::sockaddr_storage).cast(),
            &mut slot.len,
        )
        .file_index(Some(types::DestinationSlot::auto_target()))
        .build()
        .user_data(Token::new(Op::Accept, k as u32, 0).encode());
        self.push_chain(&[sqe]);
    }

    /// Cancel every armed accept (their completions come back with ECANCELED); the address
    /// slots are freed once the last of them has completed.
    pub fn cancel_accepts(&mut self) {
        self.accepts_retired = true;
        for k in 0..self.accepts.len() {
            if self.accepts[k].armed {
                let target = Token::new(Op::Accept, k as u32, 0);
                let sqe = opcode::AsyncCancel::new(target.encode())
                    .build()
                    .user_data(target.with_op(Op::Ignore).encode());
                self.push_chain(&[sqe]);
            }
        }
    }

    /// About once a second: let the receive-buffer pool shrink if it was mostly idle, or
    /// (gated) grow if receives waited for buffers too often. Returns how many receives
    /// waited for a buffer since the last call.
    pub fn adjust_buffers(&self) -> u32 {
        self.pool.adjust()
    }

    /// Bytes of receive buffers in circulation.
    pub fn buffer_bytes(&self) -> u64 {
        u64::from(self.pool.active()) * u64::from(self.pool.buffer_size())
    }

    /// Whether any accept is armed.
    pub fn accepting(&self) -> bool {
        self.accepts_armed > 0
    }

    // ------------------------------------------------------------------ connecting

    /// Keep a socket address for connect chains.
    pub fn register_addr(&mut self, addr: SocketAddr) -> AddrId {
        self.addrs.push(Box::new(super::listener::sockaddr(addr)));
        AddrId(self.addrs.len() as u32 - 1)
    }

    /// Open a TCP socket into `slot` and connect it from `src` (port chosen at connect) to
    /// `dst`, as one linked chain: SOCKET → SETSOCKOPT(IP_BIND_ADDRESS_NO_PORT) →
    /// SETSOCKOPT(TCP_NODELAY) → BIND → CONNECT. The first four complete with `Op::Step`,
    /// the connect with `Op::Connect`; a failed step cancels the rest (they complete with
    /// ECANCELED). TCP_NODELAY as every WebSocket client sets it (browsers do): without it
    /// Nagle's algorithm and autocorking hold a small frame back until an ACK arrives, and
    /// the peer's receive path then pushes it out — which moved the *server's* CPU per
    /// echo by ~40% (docs/benchmarks.md, "The loadgen as an honest client").
    pub fn connect(&mut self, slot: u32, src: AddrId, dst: AddrId, owner: Token) {
        let Ok(dest) = types::DestinationSlot::try_from_slot_target(slot) else {
            return;
        };
        let (s, d) = (&self.addrs[src.0 as usize], &self.addrs[dst.0 as usize]);
        let domain = libc::c_int::from(d.0.ss_family);
        let link = squeue::Flags::IO_LINK;
        let step = owner.with_op(Op::Step).encode();
        let chain = [
            opcode::Socket::new(domain, libc::SOCK_STREAM, 0)
                .file_index(Some(dest))
                .build()
                .flags(link)
                .user_data(step),
            set_one(slot, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT)
                .flags(link)
                .user_data(step),
            set_one(slot, libc::IPPROTO_TCP, libc::TCP_NODELAY)
                .flags(link)
                .user_data(step),
            opcode::Bind::new(
                types::Fixed(slot),
                (&s.0 as *const libc::sockaddr_storage).cast(),
                s.1,
            )
            .build()
            .flags(link)
            .user_data(step),
            opcode::Connect::new(
                types::Fixed(slot),
                (&d.0 as *const libc::sockaddr_storage).cast(),
                d.1,
            )
            .build()
            .user_data(owner.with_op(Op::Connect).encode()),
        ];
        self.push_chain(&chain);
    }
}

/// SETSOCKOPT `level`/`name` = 1 on the socket in `slot` (the value is a static).
fn set_one(slot: u32, level: libc::c_int, name: libc::c_int) -> squeue::Entry {
    opcode::SetSockOpt::new(
        types::Fixed(slot),
        level as u32,
        name as u32,
        (&ONE as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as u32,
    )
    .build()
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            // The kernel may still touch what in-flight operations point into after the
            // ring's fd is closed: keep it all mapped and allocated for the process's life.
            self.pool.leak();
            std::mem::forget(std::mem::take(&mut self.sends));
            std::mem::forget(std::mem::take(&mut self.accepts));
            std::mem::forget(std::mem::take(&mut self.addrs));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    use super::*;

    /// A small ring that gates receives on free buffers (a pool of 16, 4 at first).
    fn gated_ring() -> Ring {
        Ring::new(RingConfig {
            sq_entries: 64,
            cq_entries: 256,
            files: 64,
            buffers: 16,
            initial_buffers: 4,
            buffer_size: 4096,
            eventfd: false,
            gate_receives: true,
        })
        .expect("io_uring")
    }

    /// Place `fds` (this test's own descriptors) into free slots of the ring's file table,
    /// close them (the table holds its own references) and return the slots.
    fn place(ring: &mut Ring, fds: Vec<RawFd>) -> Vec<u32> {
        let n = fds.len() as i32;
        ring.adopt_fds(fds.clone(), Token::new(Op::Adopt, 0, 0));
        let placed = reap_n(ring, 1);
        let Some(Completion {
            res,
            extra: Extra::Adopted(slots),
            ..
        }) = placed.into_iter().next()
        else {
            panic!("the descriptors were not placed");
        };
        assert_eq!(res, n, "every descriptor placed");
        for fd in fds {
            // SAFETY: each is a descriptor this test owns; the table holds its own reference.
            unsafe { libc::close(fd) };
        }
        slots.iter().map(|s| *s as u32).collect()
    }

    /// What a worker's hub wake relies on ([`crate::io::waker::Waker::taken`]): a multishot
    /// poll on the eventfd completes once for every write, though the counter is never read
    /// back, and not again until the next write.
    #[test]
    fn a_multishot_poll_completes_for_every_wake_without_a_read() {
        let w = crate::io::waker::Waker::new().unwrap();
        let mut ring = gated_ring();
        ring.poll_fd(w.raw_fd(), Token::new(Op::Wake, 7, 0));
        for round in 0..3 {
            w.wake();
            w.wake(); // pending: no second write
            let got = reap_n(&mut ring, 1);
            assert_eq!(got.len(), 1, "round {round}: one completion for the wake");
            assert!(got[0].more(), "round {round}: the poll stays armed");
            w.taken();
            ring.wait(Duration::from_millis(20)).unwrap();
            let mut more = Vec::new();
            ring.reap(&mut more);
            assert!(
                more.is_empty(),
                "round {round}: no completion without a write"
            );
        }
    }

    /// Reap until `want` completions came (bounded: each wait is at most 100 ms).
    fn reap_n(ring: &mut Ring, want: usize) -> Vec<Completion> {
        let mut out = Vec::new();
        for _ in 0..50 {
            ring.reap(&mut out);
            if out.len() >= want {
                break;
            }
            ring.wait(Duration::from_millis(100)).expect("wait");
        }
        ring.reap(&mut out);
        out
    }

    #[test]
    fn a_pause_submits_what_is_queued_first_then_waits_it_out() {
        let mut ring = gated_ring();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ring.adopt_fds(vec![ours.into_raw_fd()], Token::new(Op::Adopt, 0, 0));
        let placed = reap_n(&mut ring, 1);
        let Some(Completion {
            extra: Extra::Adopted(slots),
            ..
        }) = placed.into_iter().next()
        else {
            panic!("the descriptor was not placed");
        };
        let slot = slots[0] as u32;
        // The peer notes when the send arrives; a blocking read, bounded by a timeout.
        theirs
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 8];
            let n = std::io::Read::read(&mut theirs, &mut b).expect("the send arrives");
            (Instant::now(), b[..n].to_vec())
        });
        ring.send(slot, SendBuf::Static(b"paced"), Token::new(Op::Send, 0, 0));
        let pause = Duration::from_millis(300);
        let start = Instant::now();
        ring.pause(pause).expect("pause");
        let ended = Instant::now();
        let (arrived, got) = reader.join().unwrap();
        assert_eq!(got, b"paced");
        assert!(ended - start >= pause, "waited out: {:?}", ended - start);
        assert!(
            arrived < start + pause / 2,
            "submitted when the pause began, not after it: {:?}",
            arrived - start
        );
        let done = reap_n(&mut ring, 1);
        assert!(
            done.iter().any(|c| c.token.op == Op::Send && c.res == 5),
            "the send's completion is there after the pause: {done:?}"
        );
    }

    #[test]
    fn the_gate_reads_a_burst_in_rounds_of_the_pool_and_holds_a_close_behind_its_receive() {
        let mut ring = gated_ring();
        // Eight connections with input waiting, placed in the ring's file table.
        let mut peers = Vec::new();
        let mut fds = Vec::new();
        for i in 0..8u8 {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            theirs.write_all(&[b'a' + i; 100]).unwrap();
            peers.push(theirs);
            fds.push(ours.into_raw_fd());
        }
        let slots = place(&mut ring, fds);
        // Eight receives on a pool of four: four go, four wait. The close of the last
        // connection waits behind its receive; a send overtakes the waiting receives.
        for (i, slot) in slots.iter().enumerate() {
            ring.recv_once(*slot, Token::new(Op::Recv, i as u32, 0));
        }
        ring.close(slots[7], Token::new(Op::Close, 7, 0));
        ring.send(slots[0], SendBuf::Static(b"x"), Token::new(Op::Send, 0, 0));
        let first = reap_n(&mut ring, 5);
        let recvs: Vec<u32> = first
            .iter()
            .filter(|c| c.token.op == Op::Recv)
            .map(|c| c.token.index)
            .collect();
        assert_eq!(recvs, [0, 1, 2, 3], "the first round is the pool's size");
        assert!(first.iter().all(
            |c| c.token.op == Op::Recv && c.res == 100 || c.token.op == Op::Send && c.res == 1
        ));
        assert!(ring.has_pending(), "four receives and the close still wait");
        drop(first); // the buffers go back to the kernel
        let second = reap_n(&mut ring, 5);
        let order: Vec<(Op, u32)> = second.iter().map(|c| (c.token.op, c.token.index)).collect();
        assert_eq!(
            order,
            [
                (Op::Recv, 4),
                (Op::Recv, 5),
                (Op::Recv, 6),
                (Op::Recv, 7),
                (Op::Close, 7)
            ],
            "the rest in order, the close after its connection's receive"
        );
        for c in &second[..4] {
            let Extra::Recv(buf) = &c.extra else {
                panic!("a receive without its buffer: {}", c.res);
            };
            assert_eq!(buf.len(), 100);
        }
        assert_eq!(second[4].res, 0, "the close succeeded");
        assert!(!ring.has_pending());
        drop(second);
        assert_eq!(ring.buffer_bytes(), 4 * 4096, "the pool never grew");
    }

    #[test]
    fn a_poll_removal_that_meets_its_poll_mid_wake_up_still_ends_the_poll() {
        let mut ring = gated_ring();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let slots = place(&mut ring, vec![ours.into_raw_fd()]);
        let poll = Token::new(Op::Poll, 0, 1);
        ring.poll_socket(slots[0], poll);
        // Armed, with nothing to report yet.
        ring.enter().unwrap();
        // The wake-up takes the poll and queues its task work; on a DEFER_TASKRUN ring that
        // runs only when the ring is next entered for completions, after that entry's
        // submissions: the removal below meets the poll mid-wake-up (EALREADY) — the race
        // a worker's removal of a poll on a socket with input arriving can lose.
        theirs.write_all(b"x").unwrap();
        ring.poll_remove(poll);
        let mut got = Vec::new();
        for _ in 0..50 {
            ring.reap(&mut got);
            if got.iter().any(|c| c.token == poll && !c.more()) {
                break;
            }
            ring.wait(Duration::from_millis(100)).expect("wait");
        }
        assert!(
            got.iter()
                .any(|c| c.token == poll && !c.more() && c.res == -libc::ECANCELED),
            "the poll ended: {got:?}"
        );
        if ring.fallbacks().is_empty() {
            assert_eq!(
                ring.take_unpoll_retries(),
                1,
                "the removal met the wake-up: {got:?}"
            );
        }
        drop(theirs);
    }

    #[test]
    fn a_paused_poll_mode_socket_keeps_its_poll_and_receives_what_came_meanwhile_on_resume() {
        use crate::io::{Read, ReadMode};
        let mode = ReadMode::Poll;
        let (mut ring, mut theirs, mut sock) = armed_socket(mode);
        sock.pause(&mut ring, mode, 0);
        assert!(!sock.receiving(mode), "nothing that takes input is armed");
        let poll = sock.armed_poll(mode, 0).expect("the poll stays armed");
        // Input while paused: the poll reports it, nothing receives it.
        theirs.write_all(b"hello").unwrap();
        let event = reap_n(&mut ring, 1);
        assert!(
            event.iter().all(|c| c.token.op == Op::Poll && c.more()),
            "one report of the multishot poll: {event:?}"
        );
        for c in &event {
            sock.on_poll(&mut ring, mode, c, 0, false);
        }
        assert!(!sock.receiving(mode), "paused: no receive was submitted");
        // Resumed: the input the poll reported is received, with no further event.
        sock.resume(&mut ring, mode, 0, true);
        assert!(sock.receiving(mode));
        let mut got = reap_n(&mut ring, 1);
        assert_eq!(got.len(), 1, "{got:?}");
        match sock.on_recv(mode, got.remove(0)) {
            Read::Data(mut buf) => assert_eq!(buf.bytes_mut(), b"hello"),
            other => panic!("expected the input, got {other:?}"),
        }
        // The poll is removed by its token (how a hand-over's old process removes those
        // it left on sockets it passed on).
        ring.poll_remove(poll);
        let end = reap_n(&mut ring, 2);
        assert!(
            end.iter()
                .any(|c| c.token.op == Op::Poll && !c.more() && c.res == -libc::ECANCELED),
            "the poll ended: {end:?}"
        );
        drop(theirs);
    }

    /// A gated ring holding one end of a socket pair, and a [`crate::io::Socket`] on it armed
    /// in `mode`; the other end.
    fn armed_socket(mode: crate::io::ReadMode) -> (Ring, UnixStream, crate::io::Socket) {
        let mut ring = gated_ring();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let slots = place(&mut ring, vec![ours.into_raw_fd()]);
        let mut sock = crate::io::Socket::new(0, slots[0], 1);
        sock.arm(&mut ring, mode, 0);
        (ring, theirs, sock)
    }

    #[test]
    fn a_single_shot_poll_is_armed_again_after_each_read_and_a_close_after_eof_removes_nothing() {
        use crate::io::{Read, ReadMode};
        let mode = ReadMode::Poll.arming(false);
        assert_eq!(mode, ReadMode::PollOnce);
        let (mut ring, mut theirs, mut sock) = armed_socket(mode);
        for word in [&b"one"[..], b"two"] {
            theirs.write_all(word).unwrap();
            let event = reap_n(&mut ring, 1);
            assert!(
                event.iter().all(|c| c.token.op == Op::Poll && !c.more()),
                "a single-shot poll ends with its report: {event:?}"
            );
            sock.on_poll(&mut ring, mode, &event[0], 0, true);
            assert!(sock.receiving(mode));
            assert_eq!(
                sock.armed_poll(mode, 0),
                None,
                "nothing armed while it reads"
            );
            let mut got = reap_n(&mut ring, 1);
            match sock.on_recv(mode, got.remove(0)) {
                Read::Data(mut buf) => assert_eq!(buf.bytes_mut(), word),
                other => panic!("expected the input, got {other:?}"),
            }
            sock.resume(&mut ring, mode, 0, true);
            assert!(
                sock.armed_poll(mode, 0).is_some(),
                "read and handled: armed again for the next input"
            );
        }
        // The peer leaves: the poll reports it and ends; the receive finds EOF.
        drop(theirs);
        let event = reap_n(&mut ring, 1);
        sock.on_poll(&mut ring, mode, &event[0], 0, true);
        let mut got = reap_n(&mut ring, 1);
        assert!(matches!(sock.on_recv(mode, got.remove(0)), Read::End(0)));
        // The owner closes without resuming: no poll is armed, so the close is the only
        // operation submitted (a removal would go in the same submission, complete at once
        // and come before the close's completion).
        assert_eq!(sock.armed_poll(mode, 0), None);
        sock.close(&mut ring, mode, 0);
        let end = reap_n(&mut ring, 1);
        assert_eq!(end.len(), 1, "only the close: {end:?}");
        assert_eq!(end[0].token.op, Op::Close, "{end:?}");
        assert!(end[0].res >= 0, "{end:?}");
    }

    /// A connection from a deferring listener comes with its first bytes: the first read is
    /// a receive, with no poll before it; one that came without them (its deferral ran out)
    /// finds nothing, and its owner's resume arms the poll as an armed start would have.
    #[test]
    fn a_first_read_receives_what_is_there_without_a_poll_and_arms_the_poll_when_nothing_is() {
        use crate::io::{Read, ReadMode};
        let mode = ReadMode::Poll.arming(false);
        let mut ring = gated_ring();
        let (a, mut with_bytes) = UnixStream::pair().unwrap();
        let (b, silent) = UnixStream::pair().unwrap();
        let slots = place(&mut ring, vec![a.into_raw_fd(), b.into_raw_fd()]);
        with_bytes.write_all(b"GET / HTTP/1.1").unwrap();
        let mut first = crate::io::Socket::new(0, slots[0], 1);
        let mut second = crate::io::Socket::new(0, slots[1], 1);
        first.read_first(&mut ring, mode, 0);
        second.read_first(&mut ring, mode, 1);
        for (s, idx) in [(&first, 0), (&second, 1)] {
            assert!(s.receiving(mode), "a receive is in flight");
            assert_eq!(s.armed_poll(mode, idx), None, "and no poll");
        }
        let got = reap_n(&mut ring, 2);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|c| c.token.op == Op::Recv), "{got:?}");
        for c in got {
            let (sock, idx) = if c.token.index == 0 {
                (&mut first, 0)
            } else {
                (&mut second, 1)
            };
            match (idx, sock.on_recv(mode, c)) {
                (0, Read::Data(mut buf)) => assert_eq!(buf.bytes_mut(), b"GET / HTTP/1.1"),
                (1, Read::Nothing) => {}
                other => panic!("unexpected first read {other:?}"),
            }
            sock.resume(&mut ring, mode, idx, true);
            assert!(
                sock.armed_poll(mode, idx).is_some(),
                "read (or found empty): the poll is armed for the next input"
            );
        }
        // The silent one's poll reports its bytes when they come.
        (&silent).write_all(b"late").unwrap();
        let event = reap_n(&mut ring, 1);
        assert!(
            event
                .iter()
                .all(|c| c.token.op == Op::Poll && c.token.index == 1),
            "{event:?}"
        );
        drop((with_bytes, silent));
    }

    #[test]
    fn a_multishot_poll_stays_armed_through_reads() {
        use crate::io::{Read, ReadMode};
        let mode = ReadMode::Poll.arming(true);
        assert_eq!(mode, ReadMode::Poll);
        let (mut ring, mut theirs, mut sock) = armed_socket(mode);
        let poll = sock.armed_poll(mode, 0).expect("armed");
        theirs.write_all(b"one").unwrap();
        let event = reap_n(&mut ring, 1);
        assert!(
            event.iter().all(|c| c.token == poll && c.more()),
            "{event:?}"
        );
        sock.on_poll(&mut ring, mode, &event[0], 0, true);
        let mut got = reap_n(&mut ring, 1);
        assert!(matches!(sock.on_recv(mode, got.remove(0)), Read::Data(_)));
        sock.resume(&mut ring, mode, 0, true);
        assert_eq!(sock.armed_poll(mode, 0), Some(poll), "still the one poll");
        // Closing removes it: its last completion is ECANCELED, then the close.
        sock.close(&mut ring, mode, 0);
        let end = reap_n(&mut ring, 3);
        assert!(
            end.iter()
                .any(|c| c.token == poll && !c.more() && c.res == -libc::ECANCELED),
            "{end:?}"
        );
        assert!(end.iter().any(|c| c.token.op == Op::Close), "{end:?}");
        drop(theirs);
    }
}
