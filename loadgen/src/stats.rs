//! Counters shared by the engines and read by the main thread once a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

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

/// Run-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Upgrades completed.
    pub established: AtomicU64,
    /// Open WebSockets now.
    pub open: AtomicU64,
    /// Pings answered.
    pub pings: AtomicU64,
    /// Data messages received.
    pub messages: AtomicU64,
    failures: [AtomicU64; 8],
    by_key: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
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
