//! One log line per closed connection, sampled: who it was, how long it lived, what it moved
//! each way and how it ended — the first thing an engineer asks in an incident.
//!
//! # What it costs
//! Nothing for a connection that is not traced beyond one bit (a bitset over slab indices,
//! checked where a session is called). A traced connection has a side [`Record`] (~150 B:
//! peer, accept time, tallies, the end) in a map; the 48-byte connection state does not
//! grow.
//!
//! # Sampling
//! Two stages, both stated in every line:
//! - **At accept**, 1 in `k` connections is traced, `k` = last second's accepts ÷ the
//!   worker's line rate (at least 1): at a quiet time every connection is traced, in a storm
//!   a uniform sample is. At most [`MAX_TRACED`] connections per worker are traced at once
//!   (long-lived populations accepted slowly would otherwise all be); past that, new ones
//!   are not traced and are counted (`close_log_untraced_total`). Field `sample_1_in`.
//! - **At close**, a token bucket of the line rate (one second of burst): a traced
//!   connection that closes when the bucket is empty — a drain of long-lived connections,
//!   say — is counted and not logged; the next line says how many were suppressed since the
//!   line before it. Field `suppressed`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::histograms::Hists;
use crate::metrics::{Side, WorkerMetrics};
use crate::session::{End, Trace};

/// Connections one worker traces at once.
pub const MAX_TRACED: usize = 16_384;

/// A traced connection's side record.
#[derive(Debug)]
pub struct Record {
    /// What the session reported and the socket moved.
    pub trace: Trace,
    peer: Option<SocketAddr>,
    accepted: Instant,
    /// `worker-n`: the worker and its n-th accept.
    id: u64,
    one_in: u32,
}

/// A worker's close log: the sampler, the traced connections and the line bucket.
#[derive(Debug)]
pub struct CloseLog {
    worker: usize,
    /// Lines per second this worker may write (0: off).
    rate: u32,
    /// Trace 1 in this many accepts.
    one_in: u32,
    accepts: u64,
    accepts_this_second: u64,
    tokens: u32,
    suppressed: u64,
    traced: Vec<u64>,
    records: HashMap<u32, Record>,
}

impl CloseLog {
    /// Worker `worker`'s log, writing at most `rate` lines per second (0: none).
    pub fn new(worker: usize, rate: u32) -> Self {
        Self {
            worker,
            rate,
            one_in: 1,
            accepts: 0,
            accepts_this_second: 0,
            tokens: rate,
            suppressed: 0,
            traced: Vec::new(),
            records: HashMap::new(),
        }
    }

    /// Connection `idx`'s trace, if it is traced.
    #[inline]
    pub fn trace(&self, idx: u32) -> Option<&Trace> {
        let word = self.traced.get(idx as usize / 64)?;
        if word & (1 << (idx % 64)) == 0 {
            return None;
        }
        self.records.get(&idx).map(|r| &r.trace)
    }

    /// A connection was accepted into slab entry `idx`: trace it if it is sampled.
    pub fn on_accept(&mut self, idx: u32, peer: Option<SocketAddr>, m: &WorkerMetrics) {
        self.accepts += 1;
        self.accepts_this_second += 1;
        if self.rate == 0 || self.accepts % u64::from(self.one_in) != 0 {
            return;
        }
        if self.records.len() >= MAX_TRACED {
            m.close_log_untraced.inc();
            return;
        }
        let word = idx as usize / 64;
        if self.traced.len() <= word {
            self.traced.resize(word + 1, 0);
        }
        self.traced[word] |= 1 << (idx % 64);
        self.records.insert(
            idx,
            Record {
                trace: Trace::default(),
                peer,
                accepted: Instant::now(),
                id: self.accepts,
                one_in: self.one_in,
            },
        );
    }

    /// Once a second: the next second's sampling factor and line allowance.
    pub fn on_second(&mut self) {
        if self.rate == 0 {
            return;
        }
        let rate = u64::from(self.rate);
        self.one_in = self
            .accepts_this_second
            .div_ceil(rate)
            .clamp(1, u32::MAX as u64) as u32;
        self.accepts_this_second = 0;
        self.tokens = self.rate;
    }

    /// Connection `idx` is released: write its line (if traced and the bucket allows) and
    /// record its lifetime (WebSockets only, weighted by the sampling factor).
    pub fn on_release(&mut self, idx: u32, upgraded: bool, m: &WorkerMetrics, hist: &mut Hists) {
        let Some(word) = self.traced.get_mut(idx as usize / 64) else {
            return;
        };
        if *word & (1 << (idx % 64)) == 0 {
            return;
        }
        *word &= !(1 << (idx % 64));
        let Some(r) = self.records.remove(&idx) else {
            return;
        };
        let lifetime = r.accepted.elapsed();
        if upgraded {
            let ms = lifetime.as_millis() as u64;
            hist.lifetime_ms
                .saturating_record_n(ms.max(1), u64::from(r.one_in));
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            m.close_log_suppressed.inc();
            return;
        }
        self.tokens -= 1;
        m.close_log_lines.inc();
        let suppressed = std::mem::take(&mut self.suppressed);
        let line = Line {
            conn: format!("{}-{}", self.worker, r.id),
            peer: r.peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            lifetime_ms: lifetime.as_millis() as u64,
            end: r.trace.ended().unwrap_or(End::Abort {
                side: Side::Server,
                reason: "reset by the server",
            }),
            trace: &r.trace,
            one_in: r.one_in,
            suppressed,
        };
        line.write();
    }

    /// Connections traced now.
    pub fn traced(&self) -> usize {
        self.records.len()
    }
}

/// One line's fields.
struct Line<'a> {
    conn: String,
    peer: String,
    lifetime_ms: u64,
    end: End,
    trace: &'a Trace,
    one_in: u32,
    suppressed: u64,
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Server => "server",
        Side::Client => "client",
    }
}

impl Line<'_> {
    fn write(self) {
        let t = self.trace;
        let (bytes_in, bytes_out) = (t.bytes_in.get(), t.bytes_out.get());
        let (messages_in, messages_out) = (t.messages_in.get(), t.messages_out.get());
        let (conn, peer, lifetime_ms) = (self.conn.as_str(), self.peer.as_str(), self.lifetime_ms);
        let (sample_1_in, suppressed) = (self.one_in, self.suppressed);
        match self.end {
            End::Refused {
                status,
                limit,
                reason,
            } => tracing::info!(
                target: "holdfast::close",
                conn,
                peer,
                transport = "websocket",
                status,
                limit = limit.map_or("-", |l| l.label()),
                reason = reason.as_str(),
                lifetime_ms,
                bytes_in,
                bytes_out,
                sample_1_in,
                suppressed,
                "connection refused"
            ),
            End::Close {
                side: s,
                code,
                reason,
            } => tracing::info!(
                target: "holdfast::close",
                conn,
                peer,
                transport = "websocket",
                code,
                reason = reason.as_str(),
                side = side(s),
                lifetime_ms,
                bytes_in,
                bytes_out,
                messages_in,
                messages_out,
                sample_1_in,
                suppressed,
                "connection closed"
            ),
            End::Abort { side: s, reason } => tracing::info!(
                target: "holdfast::close",
                conn,
                peer,
                transport = "websocket",
                code = 1006u16,
                reason,
                side = side(s),
                lifetime_ms,
                bytes_in,
                bytes_out,
                messages_in,
                messages_out,
                sample_1_in,
                suppressed,
                "connection closed"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_n(log: &mut CloseLog, from: u32, n: u32, m: &WorkerMetrics) -> usize {
        (from..from + n)
            .filter(|&i| {
                log.on_accept(i, None, m);
                log.trace(i).is_some()
            })
            .count()
    }

    #[test]
    fn a_quiet_second_traces_every_connection_a_storm_a_uniform_sample() {
        let m = WorkerMetrics::default();
        let mut log = CloseLog::new(0, 10);
        assert_eq!(accept_n(&mut log, 0, 5, &m), 5, "k = 1 before any storm");
        log.on_second();
        // 5 accepts last second at 10 lines/s: still every one.
        assert_eq!(accept_n(&mut log, 5, 1000, &m), 1000);
        log.on_second();
        // 1,000 accepts last second: 1 in 100.
        assert_eq!(accept_n(&mut log, 2000, 1000, &m), 10);
    }

    #[test]
    fn the_bucket_suppresses_lines_past_the_rate_and_counts_them() {
        let m = WorkerMetrics::default();
        let mut log = CloseLog::new(0, 3);
        let mut h = Hists::default();
        accept_n(&mut log, 0, 5, &m);
        for i in 0..5 {
            log.on_release(i, true, &m, &mut h);
        }
        assert_eq!(m.close_log_lines.get(), 3);
        assert_eq!(m.close_log_suppressed.get(), 2);
        assert_eq!(log.suppressed, 2, "stated in the next line");
        assert_eq!(h.lifetime_ms.len(), 5, "every traced WebSocket's lifetime");
        assert_eq!(log.traced(), 0);
        assert!(log.trace(3).is_none());
    }

    #[test]
    fn tracing_stops_at_the_cap_and_says_so() {
        let m = WorkerMetrics::default();
        let mut log = CloseLog::new(0, u32::MAX);
        let n = MAX_TRACED as u32 + 10;
        assert_eq!(accept_n(&mut log, 0, n, &m), MAX_TRACED);
        assert_eq!(m.close_log_untraced.get(), 10);
    }

    #[test]
    fn a_rate_of_zero_traces_nothing() {
        let m = WorkerMetrics::default();
        let mut log = CloseLog::new(0, 0);
        assert_eq!(accept_n(&mut log, 0, 100, &m), 0);
    }
}
