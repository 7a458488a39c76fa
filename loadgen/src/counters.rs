//! Counters without sharing on the hot path. Each engine counts in plain integers
//! ([`Counts`]); once per loop turn a thread publishes its engines' sum to its own
//! [`Board`] (one relaxed store per counter), and the reporting thread adds the boards up.
//! The run control word and the measurement start go the other way ([`Control`]), read by
//! the engines once per turn.
//!
//! **Architecture Invariant:** no atomic read-modify-write and no lock on the per-message,
//! per-connect or per-close path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// ECONNREFUSED.
    Refused,
    /// No connect + upgrade within the handshake timeout (or ETIMEDOUT).
    Timeout,
    /// An HTTP status other than 101 (see the `http:` close keys).
    Http,
    /// Reset or EOF before the upgrade completed.
    Reset,
    /// A malformed or wrong (accept key) response.
    Protocol,
    /// No local port or address (EADDRNOTAVAIL / EADDRINUSE).
    Ports,
    /// Stopped before it completed (end of run).
    Aborted,
    /// Anything else.
    Other,
}

impl Failure {
    /// All, in report order.
    pub const ALL: [Self; 8] = [
        Self::Refused,
        Self::Timeout,
        Self::Http,
        Self::Reset,
        Self::Protocol,
        Self::Ports,
        Self::Aborted,
        Self::Other,
    ];
    /// Label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Http => "http_status",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::Ports => "ports",
            Self::Aborted => "aborted",
            Self::Other => "other",
        }
    }
}

/// A counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum C {
    /// Upgrades completed (initial and reconnects).
    Established,
    /// Open WebSockets now (a difference: opened minus closed).
    Open,
    /// Server pings answered.
    Pings,
    /// Data messages received.
    Messages,
    /// Our own pings sent (`--ping-interval`).
    PingsSent,
    /// Pongs received.
    Pongs,
    /// Echo: messages sent.
    EchoSent,
    /// Echo: replies that were not our message (wrong length or stamp).
    EchoMismatch,
    /// Echo (open loop): sends skipped because a connection's backlog was full.
    EchoSkipped,
    /// Storm: open connections lost after the ramp.
    Lost,
    /// Storm: lost connections not yet re-established nor given up on (a difference).
    Awaiting,
    /// Storm: connections re-established.
    Reconnected,
    /// Storm: reconnect attempts started.
    Attempts,
    /// Storm: clients that used up their attempts.
    GaveUp,
    /// Storm: first loss, ns since the epoch (the minimum; u64::MAX until one happens).
    FirstLossNs,
    /// Storm: latest re-establishment, ns since the epoch (the maximum).
    LastReconnectNs,
    /// Fanout: messages missing between two received sequence numbers.
    FanoutLost,
    /// Fanout: messages published and never received by the end.
    FanoutTailLost,
    /// Fanout: a sequence number received twice in a row.
    FanoutDuplicates,
    /// Fanout: a sequence number lower than one already received.
    FanoutReordered,
    /// Fanout: deliveries whose number was checked against the publisher's answer.
    FanoutChecked,
    /// Fanout: deliveries whose number differs from the publisher's answer (another
    /// node numbered the message differently).
    FanoutMisnumbered,
    /// Fanout: gap frames received.
    FanoutGaps,
    /// Fanout: messages named by gap frames.
    FanoutGapMessages,
    /// Long-poll: polls answered 200 (each followed by the next poll from its cursor).
    Polls,
    /// wss://: TLS handshakes completed in full.
    TlsFull,
    /// wss://: TLS handshakes resumed with a session ticket or ID.
    TlsResumed,
    /// Bytes read from the sockets (frames, heads and TLS records alike).
    BytesIn,
    /// Reads that returned bytes (one receive completion each): with `Messages`, how many
    /// deliveries a read carried, i.e. how the server batched its sends.
    Reads,
    /// Failed attempts; `Failure` `f` is at `FailFirst + f`.
    FailFirst,
}

/// Number of counter slots.
pub const N: usize = C::FailFirst as usize + Failure::ALL.len();

impl C {
    /// The slot of a failure reason.
    pub const fn failure(f: Failure) -> usize {
        Self::FailFirst as usize + f as usize
    }

    fn merge(i: usize) -> fn(u64, u64) -> u64 {
        if i == Self::FirstLossNs as usize {
            u64::min
        } else if i == Self::LastReconnectNs as usize {
            u64::max
        } else {
            u64::wrapping_add
        }
    }

    fn start(i: usize) -> u64 {
        if i == Self::FirstLossNs as usize {
            u64::MAX
        } else {
            0
        }
    }
}

/// One engine's (or a sum of engines') counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts([u64; N]);

impl Default for Counts {
    fn default() -> Self {
        Self(std::array::from_fn(C::start))
    }
}

impl Counts {
    /// Add one.
    pub fn inc(&mut self, c: C) {
        self.add(c, 1);
    }
    /// Add `n`.
    pub fn add(&mut self, c: C, n: u64) {
        let v = &mut self.0[c as usize];
        *v = v.wrapping_add(n);
    }
    /// Take one away (the difference counters `Open`, `Awaiting`).
    pub fn dec(&mut self, c: C) {
        let v = &mut self.0[c as usize];
        *v = v.wrapping_sub(1);
    }
    /// Keep the smaller (`FirstLossNs`) or larger (`LastReconnectNs`) value.
    pub fn record(&mut self, c: C, v: u64) {
        let i = c as usize;
        self.0[i] = C::merge(i)(self.0[i], v);
    }
    /// Count a failed attempt.
    pub fn fail(&mut self, f: Failure) {
        self.0[C::failure(f)] += 1;
    }
    /// A counter's value (difference counters read as i64 where they may dip).
    pub fn get(&self, c: C) -> u64 {
        self.0[c as usize]
    }
    /// A difference counter's value.
    pub fn signed(&self, c: C) -> i64 {
        self.0[c as usize] as i64
    }
    /// Failures by reason.
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        Failure::ALL
            .iter()
            .map(|f| (f.label(), self.0[C::failure(*f)]))
            .collect()
    }
    /// Total failures.
    pub fn failed(&self) -> u64 {
        self.0[C::FailFirst as usize..].iter().sum()
    }
    /// Merge another engine's counts in.
    pub fn merge(&mut self, o: &Self) {
        for i in 0..N {
            self.0[i] = C::merge(i)(self.0[i], o.0[i]);
        }
    }
}

/// A thread's published counters.
#[derive(Debug)]
pub struct Board([AtomicU64; N]);

impl Default for Board {
    fn default() -> Self {
        Self(std::array::from_fn(|i| AtomicU64::new(C::start(i))))
    }
}

impl Board {
    /// Publish a thread's current counts (one store per counter).
    pub fn publish(&self, c: &Counts) {
        for (slot, v) in self.0.iter().zip(c.0.iter()) {
            slot.store(*v, Relaxed);
        }
    }

    /// What the thread last published.
    pub fn read(&self) -> Counts {
        Counts(std::array::from_fn(|i| self.0[i].load(Relaxed)))
    }
}

/// The sum of every thread's board.
pub fn totals(boards: &[std::sync::Arc<Board>]) -> Counts {
    let mut t = Counts::default();
    for b in boards {
        t.merge(&b.read());
    }
    t
}

/// Why a connection ended, or what status refused it: the keys of the close report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseKey {
    /// A Close frame from the server, by code.
    Code(u16),
    /// Ended without a Close frame, for this reason.
    Reason(&'static str),
    /// A non-101 answer.
    Http(u16),
    /// A shutdown that failed with this errno.
    ShutdownErrno(i32),
}

impl std::fmt::Display for CloseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "close:{c}"),
            Self::Reason(r) => write!(f, "close:{r}"),
            Self::Http(s) => write!(f, "http:{s}"),
            Self::ShutdownErrno(e) => write!(f, "close:shutdown_error_{e}"),
        }
    }
}

/// Closes by key, counted by one engine and merged at the end.
pub type Keyed = BTreeMap<CloseKey, u64>;

/// Closes and statuses as the report shows them.
pub fn keyed_report(k: &Keyed) -> BTreeMap<String, u64> {
    k.iter().map(|(key, n)| (key.to_string(), *n)).collect()
}

/// `Control::phase`: the initial ramp is running.
pub const RAMP: u8 = 0;
/// Past the ramp. Echo: connections send (warm-up). Storm: lost connections reconnect.
pub const STEADY: u8 = 1;
/// Echo and fanout: round trips are recorded.
pub const MEASURE: u8 = 2;
/// Storm: every engine cuts all its connections at once, then reconnects.
pub const CUT: u8 = 3;

/// What the reporting thread tells the engines.
#[derive(Debug)]
pub struct Control {
    /// The run's time origin: timestamps are nanoseconds since it.
    pub epoch: Instant,
    phase: AtomicU8,
    measure_from_ns: AtomicU64,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(RAMP),
            measure_from_ns: AtomicU64::new(u64::MAX),
        }
    }
}

impl Control {
    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    /// The phase (`RAMP`, `STEADY`, `MEASURE`, `CUT`).
    pub fn phase(&self) -> u8 {
        self.phase.load(Relaxed)
    }
    /// Move the run on.
    pub fn set_phase(&self, p: u8) {
        self.phase.store(p, Relaxed);
    }
    /// Start measuring: stamps from now on count.
    pub fn start_measuring(&self) {
        self.measure_from_ns.store(self.now_ns(), Relaxed);
        self.set_phase(MEASURE);
    }
    /// Stamps at or after this count in the measurement.
    pub fn measure_from_ns(&self) -> u64 {
        self.measure_from_ns.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_by_kind_and_boards_carry_them() {
        let mut a = Counts::default();
        a.inc(C::Established);
        a.inc(C::Open);
        a.dec(C::Open);
        a.dec(C::Open);
        a.record(C::FirstLossNs, 50);
        a.record(C::LastReconnectNs, 70);
        a.fail(Failure::Refused);
        let mut b = Counts::default();
        b.add(C::Established, 2);
        b.add(C::Open, 3);
        b.record(C::FirstLossNs, 20);
        b.record(C::LastReconnectNs, 90);
        let boards: Vec<_> = [a, b]
            .iter()
            .map(|c| {
                let board = std::sync::Arc::new(Board::default());
                board.publish(c);
                board
            })
            .collect();
        let t = totals(&boards);
        assert_eq!(t.get(C::Established), 3);
        assert_eq!(t.signed(C::Open), 2);
        assert_eq!(t.get(C::FirstLossNs), 20);
        assert_eq!(t.get(C::LastReconnectNs), 90);
        assert_eq!(t.failed(), 1);
        assert_eq!(Counts::default().get(C::FirstLossNs), u64::MAX);
    }
}
