//! A worker's rings: ring 0, which the worker waits on, and the rings added as file tables
//! fill (each registers an eventfd that ring 0 polls, so one wait covers them all); which
//! ring accepts, and the headroom that keeps every table from filling.

use std::io;
use std::os::fd::RawFd;

use crate::io::{Op, Ring, RingConfig, Token};

/// Connection slots kept free in each file table. An accept into a full table fails with
/// ENFILE after the kernel has taken the connection off the listen queue, so the client is
/// reset. Accepts are single-shot and at most `ACCEPT_POOL` + 1 (the probe) are in flight,
/// and the worker replaces those a batch of completions brought only once it has handled
/// the whole batch (counting each), so at most that many slots are taken and not yet
/// counted at any moment: a headroom of at least that keeps every table from filling. (A multishot accept can land a whole listen backlog in one batch,
/// which is why it is not used.)
pub const TABLE_HEADROOM: usize = 192;
/// Single-shot accepts kept in flight on the accepting ring, each with an address buffer
/// (the per-IP cap needs peer addresses; multishot accept into a direct descriptor has none).
pub const ACCEPT_POOL: usize = 128;
const _: () = assert!(TABLE_HEADROOM > ACCEPT_POOL);

/// File-table slots per ring when `--ring-files` is automatic (0): the RLIMIT_NOFILE soft
/// limit, but at most this. A ring's connections are its armed polls, and ending one (every
/// close in poll read mode) walks the ring's cancel hash bucket past each poll armed after
/// it: at most 256 buckets (128 on a later ring's 4,096-entry completion queue) whatever the
/// ring holds. Measured (`bench/benches/poll_removal.rs`): removing a poll armed before the
/// others costs 0.7 µs in a ring of 9k polls, 3.9 µs at 25k, 13 µs at 74k, 87 µs at 270k — so
/// a table as large as a production limit (1,048,576 in the shipped unit) would put half a
/// million connections behind one hash and make each close cost ~100 µs. 16,384 keeps a
/// bucket under ~128 polls; at 1M connections that is ~62 rings (~150 KiB each).
pub const AUTO_RING_FILES: usize = 16_384;

/// Slots per file table: `ring_files` when given (at most the soft limit `soft`, which the
/// kernel enforces on registration), else the soft limit capped at [`AUTO_RING_FILES`].
pub fn table_slots(ring_files: u32, soft: usize) -> Result<usize, String> {
    match ring_files as usize {
        0 => Ok(soft.min(AUTO_RING_FILES)),
        n if n > soft => Err(format!(
            "--ring-files {n} exceeds the RLIMIT_NOFILE soft limit {soft}, which caps a \
             ring's file table; raise the limit (LimitNOFILE, ulimit -n) or lower it"
        )),
        n => Ok(n),
    }
}

/// Provided buffers a ring after the first keeps in circulation at rest.
pub const LATER_RING_BUFFERS: u16 = 16;

/// The `Op::Wake` index that means "the hub queued deliveries" (ring numbers are small).
pub const HUB_WAKE: u32 = u32::MAX;

/// One ring and its bookkeeping.
#[allow(missing_debug_implementations)] // Ring has no Debug
pub struct RingSlot {
    /// The ring.
    pub ring: Ring,
    /// Connections whose socket sits in its table.
    pub live: usize,
    /// Has completions to reap.
    pub dirty: bool,
}

/// How a worker's rings are sized.
#[derive(Debug, Clone, Copy)]
pub struct RingPlan {
    /// Ring 0's queues.
    pub sq_entries: u32,
    /// Ring 0's completion queue.
    pub cq_entries: u32,
    /// Slots per file table.
    pub table: u32,
    /// Provided buffers on ring 0 (later rings get a sixteenth, 64–256).
    pub buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
    /// Rings this worker may create (its connection target over the table size).
    pub max_rings: usize,
    /// Gate single-shot receives on free buffers (poll mode; see `io::ring`).
    pub gate_receives: bool,
}

/// The rings, and where accepting happens.
#[allow(missing_debug_implementations)]
pub struct Rings {
    /// Ring 0 first.
    pub list: Vec<RingSlot>,
    /// The ring new connections are accepted into.
    pub accept_ring: usize,
    /// Accepts are armed (false while every table is nearly full, or draining).
    pub accepting: bool,
    plan: RingPlan,
    listener: RawFd,
}

impl Rings {
    /// Ring 0 for a worker accepting on `listener`.
    pub fn new(plan: RingPlan, listener: RawFd) -> io::Result<Self> {
        let mut me = Self {
            list: Vec::with_capacity(plan.max_rings),
            accept_ring: 0,
            accepting: true,
            plan,
            listener,
        };
        me.add()?;
        Ok(me)
    }

    /// Create one more ring; a ring after the first is polled by ring 0 through its eventfd.
    pub fn add(&mut self) -> io::Result<usize> {
        let r = self.list.len();
        let first = r == 0;
        let p = self.plan;
        let cfg = RingConfig {
            // A later ring exists because a file table is capped (RLIMIT_NOFILE): 52 of them
            // at 1M connections on a 20,000-descriptor host. Their queues are resident kernel
            // pages (SQEs 64 B, CQEs 16 B each): 256 + 4,096 entries is ~80 KiB a ring, where
            // 1,024 + 8,192 held 11 B per connection at 1M. A fan-out to a ring's ~20k
            // connections submits in rounds of 256 and may overflow its completion queue,
            // which the kernel keeps (no drop) until the worker reaps.
            sq_entries: if first { p.sq_entries } else { 256 },
            cq_entries: if first { p.cq_entries } else { 4096 },
            files: p.table,
            buffers: if first {
                p.buffers
            } else {
                (p.buffers / 16).clamp(64.min(p.buffers), 256)
            },
            // Ring 0 takes the first accepts; a later ring starts (and idles) at 16 buffers
            // and grows under use: at 1M connections through 20,000-slot tables that is 52
            // rings, whose 64-buffer floors held 13 B per connection at rest.
            initial_buffers: if first {
                crate::io::bufring::INITIAL_BUFFERS
            } else {
                LATER_RING_BUFFERS
            },
            buffer_size: p.buffer_size,
            eventfd: !first,
            gate_receives: p.gate_receives,
        };
        let ring = Ring::new(cfg)?;
        for f in ring.fallbacks() {
            tracing::warn!(ring = r, "io_uring setup flag unavailable, fell back: {f}");
        }
        self.list.push(RingSlot {
            ring,
            live: 0,
            dirty: false,
        });
        if !first {
            self.arm_wake(r);
        }
        Ok(r)
    }

    /// Ring 0 polls ring `r`'s eventfd (again, when its multishot poll ended).
    pub fn arm_wake(&mut self, r: usize) {
        if let Some(fd) = self.list[r].ring.eventfd() {
            self.list[0]
                .ring
                .poll_fd(fd, Token::new(Op::Wake, r as u32, 0));
        }
    }

    /// Mark dirty every later ring whose task-work flag is up (the kernel queued work for it,
    /// a socket's readiness say, that only an enter runs). Its eventfd signal, which would
    /// wake ring 0's poll, can come late: through an RCU callback, 5–20 ms on this kernel
    /// (docs/architecture.md, "A worker's rings"). One read of shared memory per ring.
    pub fn mark_task_work(&mut self) {
        for slot in self.list.iter_mut().skip(1) {
            if slot.ring.task_work_pending() {
                slot.dirty = true;
            }
        }
    }

    /// Whether ring `r` can take another connection without nearing a full table.
    pub fn has_room(&self, r: usize) -> bool {
        self.list[r].live + TABLE_HEADROOM < self.plan.table as usize
    }

    /// Keep the accept pool armed on the accepting ring.
    pub fn arm_accept(&mut self) {
        if self.accepting {
            let listener = self.listener;
            self.list[self.accept_ring]
                .ring
                .arm_accepts(listener, ACCEPT_POOL);
        }
    }

    /// Try the listen queue at once on the accepting ring (see [`Ring::probe_accept`]): for
    /// a connection whose wake-up an accept took and then lost to its cancellation.
    pub fn probe_accept(&mut self) {
        if self.accepting {
            let listener = self.listener;
            self.list[self.accept_ring].ring.probe_accept(listener);
        }
    }

    /// Whether the listener has connections waiting to be accepted.
    pub fn backlog_waiting(&self) -> bool {
        crate::io::sys::readable(self.listener)
    }

    /// Stop accepting everywhere (drain).
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
        for s in &mut self.list {
            s.ring.cancel_accepts();
        }
    }

    /// The accepting ring is nearly full: move accepting to a ring with room, adding a ring
    /// if the connection target allows, or pause accepting until connections leave.
    pub fn move_accept(&mut self, worker: usize) {
        let old = self.accept_ring;
        self.list[old].ring.cancel_accepts();
        let target = match (0..self.list.len()).find(|&r| self.has_room(r)) {
            Some(r) => Some(r),
            None if self.list.len() < self.plan.max_rings => match self.add() {
                Ok(r) => {
                    tracing::info!(worker, ring = r, table = self.plan.table, "added a ring");
                    Some(r)
                }
                Err(e) => {
                    tracing::error!(worker, "cannot add a ring: {e}");
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
                    worker,
                    rings = self.list.len(),
                    "every file table is nearly full; pausing accept"
                );
            }
        }
    }

    /// A ring whose table can take `n` more connections (adding one if the connection
    /// target allows), for connections handed over from the previous process.
    pub fn room_for(&mut self, n: usize, worker: usize) -> Option<usize> {
        let table = self.plan.table as usize;
        if let Some(r) =
            (0..self.list.len()).find(|&r| self.list[r].live + n + TABLE_HEADROOM < table)
        {
            return Some(r);
        }
        if self.list.len() >= self.plan.max_rings || n + TABLE_HEADROOM >= table {
            return None;
        }
        match self.add() {
            Ok(r) => {
                tracing::info!(worker, ring = r, table, "added a ring");
                Some(r)
            }
            Err(e) => {
                tracing::error!(worker, "cannot add a ring: {e}");
                None
            }
        }
    }

    /// A connection left ring `r`: resume accepting there if accepting was paused.
    pub fn on_release(&mut self, r: usize, draining: bool) {
        self.list[r].live -= 1;
        if !self.accepting && !draining && self.has_room(r) {
            self.accepting = true;
            self.accept_ring = r;
            self.arm_accept();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_automatic_table_is_the_soft_limit_but_never_a_huge_one() {
        // A small limit sizes the table (more rings).
        assert_eq!(table_slots(0, 20_000), Ok(AUTO_RING_FILES));
        assert_eq!(table_slots(0, 4_096), Ok(4_096));
        // A production limit does not put every connection behind one cancel hash.
        assert_eq!(table_slots(0, 1_048_576), Ok(AUTO_RING_FILES));
        // An explicit size is taken as given, within the limit the kernel enforces.
        assert_eq!(table_slots(100_000, 1_048_576), Ok(100_000));
        assert_eq!(table_slots(4_096, 20_000), Ok(4_096));
        let e = table_slots(30_000, 20_000).unwrap_err();
        assert!(
            e.contains("--ring-files 30000") && e.contains("20000"),
            "{e}"
        );
    }
}
