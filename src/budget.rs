//! The process-wide memory budget: one bound, in bytes, on what clients can make the server
//! hold beyond each connection's fixed state — partly received messages, outbound queues,
//! messages deferred for held subscribers (`--fanout-send-interval`) and replay windows —
//! with a defined shedding order (docs/security.md, "Memory"):
//!
//! 1. replay windows stay within their own share (`--replay-budget`), evicting the oldest
//!    message across all topics first (the hub does this on every publish);
//! 2. while the total is at or above 90% of the budget, new work is refused: upgrades get
//!    503 and publishes are refused (503 / an `overloaded` reply), before anything is
//!    numbered — so queues can drain before anyone is closed;
//! 3. when the total is over the budget nonetheless, a worker whose own holdings are above
//!    80% of its share of what replay leaves closes its largest holders — 1009 for one
//!    holding a partial message, 1013 for one holding an outbound queue — discarding what
//!    they held, until it is back under that mark. Deferred messages are no connection's
//!    (their frames are shared, and go within one interval): they count towards the total,
//!    so they make new work refused, but not towards a worker's holdings, so no connection
//!    is closed for them.
//!
//! Sans-IO: counters only. Each worker publishes its own totals (one writer per slot);
//! readers sum the slots, so no check takes a lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shared by the hub (replay) and every worker (partial messages, outbound queues).
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    replay: AtomicUsize,
    partial: Box<[AtomicUsize]>,
    outbound: Box<[AtomicUsize]>,
    deferred: Box<[AtomicUsize]>,
    /// Work refused because the budget was reached: upgrades, publishes.
    refused_upgrades: AtomicU64,
    refused_publishes: AtomicU64,
    /// Connections closed to shed memory: holding a partial message (1009), an outbound
    /// queue (1013).
    shed_partial: AtomicU64,
    shed_outbound: AtomicU64,
}

/// What the budget holds, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Replay windows' frame bytes.
    pub replay: usize,
    /// Partly received messages (buffer capacity).
    pub partial: usize,
    /// Outbound queues (bytes not yet sent).
    pub outbound: usize,
    /// Messages deferred for held subscribers (each run's frames once, and its recipient
    /// lists).
    pub deferred: usize,
}

impl Usage {
    /// All of it.
    pub fn total(&self) -> usize {
        self.replay + self.partial + self.outbound + self.deferred
    }
}

/// Why a connection was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// It held a partial message (closed 1009).
    Partial,
    /// It held an outbound queue (closed 1013).
    Outbound,
}

impl MemoryBudget {
    /// A budget of `limit` bytes for `workers` workers.
    pub fn new(limit: usize, workers: usize) -> Self {
        let slots = || (0..workers).map(|_| AtomicUsize::new(0)).collect();
        Self {
            limit,
            replay: AtomicUsize::new(0),
            partial: slots(),
            outbound: slots(),
            deferred: slots(),
            refused_upgrades: AtomicU64::new(0),
            refused_publishes: AtomicU64::new(0),
            shed_partial: AtomicU64::new(0),
            shed_outbound: AtomicU64::new(0),
        }
    }

    /// The budget, bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The replay windows hold `bytes` (the hub's total, set under its lock).
    pub fn set_replay(&self, bytes: usize) {
        self.replay.store(bytes, Ordering::Relaxed);
    }

    /// Worker `w` holds `partial` bytes of partial messages and `outbound` of queues.
    pub fn set_worker(&self, w: usize, partial: usize, outbound: usize) {
        self.partial[w].store(partial, Ordering::Relaxed);
        self.outbound[w].store(outbound, Ordering::Relaxed);
    }

    /// Worker `w`'s deferred messages hold `bytes`.
    pub fn set_deferred(&self, w: usize, bytes: usize) {
        self.deferred[w].store(bytes, Ordering::Relaxed);
    }

    /// What is held now.
    pub fn usage(&self) -> Usage {
        let sum = |v: &[AtomicUsize]| v.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        Usage {
            replay: self.replay.load(Ordering::Relaxed),
            partial: sum(&self.partial),
            outbound: sum(&self.outbound),
            deferred: sum(&self.deferred),
        }
    }

    /// Whether new work is refused: the total is at or above 90% of the budget.
    pub fn exhausted(&self) -> bool {
        self.usage().total() >= self.limit / 10 * 9
    }

    /// The bytes worker `w` should shed to get back under 80% of its share of what the
    /// replay windows leave, when the total is over the budget (0 otherwise). Its deferred
    /// messages are not among its holdings: closing a connection would not free them.
    pub fn excess(&self, w: usize) -> usize {
        let u = self.usage();
        if u.total() <= self.limit {
            return 0;
        }
        let workers = self.partial.len().max(1);
        let share = self.limit.saturating_sub(u.replay) / workers / 10 * 8;
        let mine =
            self.partial[w].load(Ordering::Relaxed) + self.outbound[w].load(Ordering::Relaxed);
        mine.saturating_sub(share)
    }

    /// Count a refusal of an upgrade (`true`) or of a publish.
    pub fn refused(&self, upgrade: bool) {
        let c = if upgrade {
            &self.refused_upgrades
        } else {
            &self.refused_publishes
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a connection shed.
    pub fn shed(&self, why: Shed) {
        let c = match why {
            Shed::Partial => &self.shed_partial,
            Shed::Outbound => &self.shed_outbound,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far: (upgrades, publishes).
    pub fn refusals(&self) -> (u64, u64) {
        (
            self.refused_upgrades.load(Ordering::Relaxed),
            self.refused_publishes.load(Ordering::Relaxed),
        )
    }

    /// Connections shed so far: (partial message, outbound queue).
    pub fn sheds(&self) -> (u64, u64) {
        (
            self.shed_partial.load(Ordering::Relaxed),
            self.shed_outbound.load(Ordering::Relaxed),
        )
    }
}

/// The default budget: a quarter of the machine's memory (`MemTotal` in `meminfo`, the
/// text of /proc/meminfo), or 1 GiB when it cannot be read.
pub fn default_limit(meminfo: Option<&str>) -> usize {
    match meminfo.and_then(|text| crate::units::kb_field(text, "MemTotal")) {
        Some(b) => usize::try_from(b).unwrap_or(usize::MAX) / 4,
        None => 1 << 30,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sums_the_kinds_and_excess_is_each_workers_part_over_its_share() {
        let b = MemoryBudget::new(1000, 2);
        b.set_replay(200);
        b.set_worker(0, 100, 50);
        b.set_worker(1, 0, 300);
        assert_eq!(b.usage().total(), 650);
        assert!(!b.exhausted());
        assert_eq!(
            (b.excess(0), b.excess(1)),
            (0, 0),
            "under the budget: nothing"
        );
        b.set_worker(1, 0, 560); // 200 + 150 + 560 = 910: new work refused, nobody closed
        assert!(b.exhausted());
        assert_eq!((b.excess(0), b.excess(1)), (0, 0));
        b.set_worker(1, 0, 700); // 200 + 150 + 700 = 1050 > 1000
                                 // Share: (1000 - 200) / 2 = 400, 80% = 320.
        assert_eq!((b.excess(0), b.excess(1)), (0, 700 - 320));
        // Deferred messages count towards the total (new work is refused) but are no
        // worker's holdings to shed.
        b.set_worker(1, 0, 100);
        b.set_deferred(0, 600);
        assert_eq!(b.usage().deferred, 600);
        assert_eq!(b.usage().total(), 200 + 150 + 100 + 600);
        assert!(b.exhausted());
        assert_eq!((b.excess(0), b.excess(1)), (0, 0));
    }

    #[test]
    fn the_default_is_a_quarter_of_memtotal() {
        let text = "MemTotal:       24592000 kB\nMemFree:  1 kB\n";
        assert_eq!(default_limit(Some(text)), 24_592_000 * 1024 / 4);
        assert_eq!(default_limit(Some("garbage")), 1 << 30);
        assert_eq!(default_limit(None), 1 << 30);
    }
}
