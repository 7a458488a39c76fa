//! The live hand-over (a binary upgrade without a reconnect): the old process passes its
//! listening sockets and then its established connections, each with its state, to a new
//! process over a Unix socket. See docs/operations.md, "Upgrading without a reconnect".
//!
//! # Who does what
//! - [`format`] (sans-IO): the versioned frames both processes exchange.
//! - The workers (`reactor::worker::moving`): in the old process they stop accepting, stop
//!   reading their open connections, turn each one's direct descriptor into a regular one
//!   (IORING_OP_FIXED_FD_INSTALL), write its state out and pass it here; they close their
//!   copy once the new process has acknowledged the batch, or take the connection back if
//!   it did not. In the new process they place received descriptors into their file tables
//!   and take the state up.
//! - [`parent`] and [`child`]: one thread each side moving frames and descriptors, so no
//!   worker ever waits on the other process.
//!
//! **Architecture Invariant:** `format` imports nothing of the server; the reactor sees
//! only [`Link`] (channels and counters), never the socket to the other process.

pub mod child;
pub mod format;
pub mod parent;

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender};

use crate::io::waker::Waker;
use format::ConnSnap;

/// Serving normally.
pub const IDLE: u8 = 0;
/// Old process: the new one is starting; workers stop accepting and reading open
/// connections (still serving handshakes, closes and sends).
pub const FREEZE: u8 = 1;
/// Old process: the new one runs; workers move their connections in batches.
pub const MOVE: u8 = 2;
/// Old process: everything movable moved; what is left is drained.
pub const DONE: u8 = 3;

/// A batch leaving a worker of the old process.
#[derive(Debug)]
pub struct Outgoing {
    /// The worker's number.
    pub worker: usize,
    /// The worker's own number for the batch.
    pub local: u64,
    /// Each connection's state.
    pub conns: Vec<ConnSnap>,
    /// Each connection's descriptor, in the same order (regular descriptors of this
    /// process; the worker still holds the socket in its file table).
    pub fds: Vec<OwnedFd>,
}

/// What became of a batch.
#[derive(Debug)]
pub enum Verdict {
    /// The new process has it: close the file-table copies.
    Acked(u64),
    /// It did not get there (the hand-over failed): take these connections back.
    Returned(u64, Vec<ConnSnap>),
}

/// Connections arriving at a worker of the new process, with their descriptors and peers.
pub type Incoming = Vec<(ConnSnap, OwnedFd, Option<IpAddr>)>;

/// One worker's end of the hand-over.
#[derive(Debug)]
pub struct Link {
    /// The process's shared state.
    pub shared: Arc<Shared>,
    /// Batches to the coordinator.
    pub out: Sender<Outgoing>,
    /// Verdicts from it.
    pub verdicts: Receiver<Verdict>,
    verdicts_tx: Sender<Verdict>,
    /// Connections handed to this worker (new process).
    pub incoming: Receiver<Incoming>,
    incoming_tx: Sender<Incoming>,
    /// Connections this worker still holds that could move (old process).
    pub remaining: AtomicUsize,
    /// Connections whose state was handed over and whose batch is unanswered.
    pub in_flight: AtomicUsize,
    /// The last phase this worker acted on (stored after `remaining`): the counts mean
    /// something only once every worker has seen the current phase.
    pub seen: AtomicU8,
    /// Wakes the worker (its pub/sub eventfd: ring 0 polls it).
    pub waker: Arc<Waker>,
}

/// What every worker and both coordinators share.
#[derive(Debug, Default)]
pub struct Shared {
    /// [`IDLE`], [`FREEZE`], [`MOVE`] or [`DONE`].
    pub phase: AtomicU8,
    /// Connections handed to a new process (old process), all upgrades together.
    pub moved: AtomicU64,
    /// Connections taken over from the previous process (new process).
    pub adopted: AtomicU64,
    /// Connections that arrived but could not be placed (a full file table).
    pub lost: AtomicU64,
    /// Connections taken back after a failed upgrade.
    pub taken_back: AtomicU64,
    /// Upgrades that failed (the old process serves on).
    pub failures: AtomicU64,
    /// Upgrades that completed.
    pub completed: AtomicU64,
    /// Descriptors received and not yet placed by a worker (new process): the receiving
    /// thread waits while it is high, so `ulimit -n` bounds a batch, not the total.
    pub unplaced: Mutex<usize>,
    /// Signalled when `unplaced` drops.
    pub placed: Condvar,
    /// Batch frames sent (old process).
    pub batches: AtomicU64,
    /// Held by a worker while it hands out a batch and by the coordinator while it leaves
    /// the moving phase: no batch is handed out once the coordinator stopped taking them.
    pub gate: Arc<Mutex<()>>,
}

impl Shared {
    /// The current phase.
    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Set the phase.
    pub fn set_phase(&self, p: u8) {
        self.phase.store(p, Ordering::Release);
    }

    /// A worker placed (or gave up on) `n` received descriptors.
    pub fn placed(&self, n: usize) {
        let mut u = self.unplaced.lock().unwrap_or_else(|p| p.into_inner());
        *u = u.saturating_sub(n);
        self.placed.notify_all();
    }
}

/// Every worker's link, and the coordinator's side of the channels.
#[derive(Debug)]
pub struct Links {
    /// The process's shared state.
    pub shared: Arc<Shared>,
    /// Per worker.
    pub workers: Vec<Arc<Link>>,
    /// Batches from every worker.
    pub out: Receiver<Outgoing>,
}

impl Links {
    /// Links for workers woken by `wakers`.
    pub fn new(wakers: &[Arc<Waker>]) -> Self {
        let shared = Arc::new(Shared::default());
        let (out_tx, out) = crossbeam_channel::unbounded();
        let workers = wakers
            .iter()
            .map(|w| {
                let (verdicts_tx, verdicts) = crossbeam_channel::unbounded();
                let (incoming_tx, incoming) = crossbeam_channel::unbounded();
                Arc::new(Link {
                    shared: shared.clone(),
                    out: out_tx.clone(),
                    verdicts,
                    verdicts_tx,
                    incoming,
                    incoming_tx,
                    remaining: AtomicUsize::new(0),
                    in_flight: AtomicUsize::new(0),
                    seen: AtomicU8::new(IDLE),
                    waker: w.clone(),
                })
            })
            .collect();
        Self {
            shared,
            workers,
            out,
        }
    }

    /// Tell worker `w` what became of its batch.
    pub fn verdict(&self, w: usize, v: Verdict) {
        if let Some(l) = self.workers.get(w) {
            let _ = l.verdicts_tx.send(v);
            l.waker.wake();
        }
    }

    /// Hand connections to worker `w`.
    pub fn hand(&self, w: usize, batch: Incoming) {
        if let Some(l) = self.workers.get(w) {
            let _ = l.incoming_tx.send(batch);
            l.waker.wake();
        }
    }

    /// Wake every worker (a phase changed).
    pub fn wake_all(&self) {
        for l in &self.workers {
            l.waker.wake();
        }
    }

    /// Whether every worker has acted on phase `p` (and published its counts under it).
    pub fn all_seen(&self, p: u8) -> bool {
        self.workers
            .iter()
            .all(|l| l.seen.load(Ordering::Acquire) == p)
    }

    /// Connections the workers still hold that could move.
    pub fn remaining(&self) -> usize {
        self.workers
            .iter()
            .map(|l| l.remaining.load(Ordering::Relaxed) + l.in_flight.load(Ordering::Relaxed))
            .sum()
    }
}
