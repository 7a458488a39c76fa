//! Counters shared by the engines and read by the main thread, and the run control word the
//! main thread writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// ECONNREFUSED.
    Refused,
    /// No connect + upgrade within the handshake timeout (or ETIMEDOUT).
    Timeout,
    /// An HTTP status other than 101 (see `http_statuses`).
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

/// `Stats::control`: the initial ramp is running.
pub const RAMP: u8 = 0;
/// `Stats::control`: past the ramp. Echo: connections send (warm-up). Storm: lost
/// connections reconnect with backoff.
pub const STEADY: u8 = 1;
/// `Stats::control` (echo): round trips are recorded.
pub const MEASURE: u8 = 2;
/// `Stats::control` (storm): every engine cuts all its connections at once, then reconnects.
pub const CUT: u8 = 3;

/// Run-wide counters.
#[derive(Debug)]
pub struct Stats {
    /// The run's time origin: timestamps below are nanoseconds since it.
    pub epoch: Instant,
    /// What the engines should be doing (`RAMP`, `STEADY`, `MEASURE`, `CUT`).
    pub control: AtomicU8,
    /// Echo: stamps at or after this (ns since `epoch`) count in the measurement.
    pub measure_from_ns: AtomicU64,
    /// Upgrades completed (initial and reconnects).
    pub established: AtomicU64,
    /// Open WebSockets now.
    pub open: AtomicU64,
    /// Pings answered.
    pub pings: AtomicU64,
    /// Data messages received.
    pub messages: AtomicU64,
    /// Our own Pings sent (`--ping-interval`).
    pub pings_sent: AtomicU64,
    /// Pongs received.
    pub pongs: AtomicU64,
    /// Echo: messages sent.
    pub echo_sent: AtomicU64,
    /// Echo: replies that were not our message (wrong length or no stamp).
    pub echo_mismatch: AtomicU64,
    /// Echo (open loop): sends skipped because a connection's unsent backlog was full (each
    /// is an omitted sample: the server or client is not keeping up with the target rate).
    pub echo_skipped: AtomicU64,
    /// Storm: open connections lost after the ramp.
    pub lost: AtomicU64,
    /// Storm: lost connections not yet re-established (nor given up on).
    pub awaiting: AtomicI64,
    /// Storm: connections re-established.
    pub reconnected: AtomicU64,
    /// Storm: reconnect attempts started.
    pub attempts: AtomicU64,
    /// Storm: clients that used up their attempts.
    pub gave_up: AtomicU64,
    /// Storm: first loss, ns since `epoch` (u64::MAX until one happens).
    pub first_loss_ns: AtomicU64,
    /// Storm: latest re-establishment, ns since `epoch`.
    pub last_reconnect_ns: AtomicU64,
    /// Fanout: messages missing between two received sequence numbers.
    pub fanout_lost: AtomicU64,
    /// Fanout: messages missing at the end (published, never received).
    pub fanout_tail_lost: AtomicU64,
    /// Fanout: a sequence number received twice in a row.
    pub fanout_duplicates: AtomicU64,
    /// Fanout: a sequence number lower than one already received.
    pub fanout_reordered: AtomicU64,
    /// Fanout: gap frames received, and the messages they name.
    pub fanout_gaps: AtomicU64,
    /// Fanout: messages named by gap frames.
    pub fanout_gap_messages: AtomicU64,
    failures: [AtomicU64; 8],
    by_key: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Fresh counters with the epoch now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            control: AtomicU8::new(RAMP),
            measure_from_ns: AtomicU64::new(u64::MAX),
            established: AtomicU64::new(0),
            open: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            echo_sent: AtomicU64::new(0),
            echo_mismatch: AtomicU64::new(0),
            echo_skipped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            awaiting: AtomicI64::new(0),
            reconnected: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            first_loss_ns: AtomicU64::new(u64::MAX),
            last_reconnect_ns: AtomicU64::new(0),
            fanout_lost: AtomicU64::new(0),
            fanout_tail_lost: AtomicU64::new(0),
            fanout_duplicates: AtomicU64::new(0),
            fanout_reordered: AtomicU64::new(0),
            fanout_gaps: AtomicU64::new(0),
            fanout_gap_messages: AtomicU64::new(0),
            failures: Default::default(),
            by_key: Mutex::new(BTreeMap::new()),
        }
    }
    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    /// Count a failed attempt.
    pub fn fail(&self, f: Failure) {
        self.failures[f as usize].fetch_add(1, Relaxed);
    }
    /// Failures by reason.
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        Failure::ALL
            .iter()
            .map(|f| (f.label(), self.failures[*f as usize].load(Relaxed)))
            .collect()
    }
    /// Total failures.
    pub fn failed(&self) -> u64 {
        self.failures.iter().map(|f| f.load(Relaxed)).sum()
    }
    fn bump(&self, key: String) {
        let mut m = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_insert(0) += 1;
    }
    /// Count a Close received from the server, by code.
    pub fn close_code(&self, code: u16) {
        self.bump(format!("close:{code}"));
    }
    /// Count a connection that ended without a Close frame.
    pub fn close_reason(&self, why: &str) {
        self.bump(format!("close:{why}"));
    }
    /// Count a non-101 answer.
    pub fn http_status(&self, status: u16) {
        self.bump(format!("http:{status}"));
    }
    /// Closes by code or reason, and HTTP statuses.
    pub fn keyed(&self) -> BTreeMap<String, u64> {
        self.by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
