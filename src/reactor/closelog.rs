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
//! - **At accept**, 1 in `k` connections is traced, `k` = the last tick's (100 ms) accepts
//!   per second ÷ the worker's line rate (at least 1): at a quiet time every connection is
//!   traced, in a storm a uniform sample is, within a tick of its start. Field
//!   `sample_1_in`. Tracing is also bounded by a token bucket of the line rate (one second
//!   of burst), so a storm's first tick cannot trace thousands, and by [`MAX_TRACED`]
//!   connections per worker at once (long-lived populations accepted slowly would
//!   otherwise all be); a connection sampled but not traced for either bound is counted
//!   (`close_log_untraced_total`).
//! - **At close**, a token bucket of the line rate (one second of burst): a traced
//!   connection that closes when the bucket is empty — a drain of long-lived connections,
//!   say — is counted and not logged; the next line says how many were suppressed since the
//!   line before it. Field `suppressed`.

use std::net::SocketAddr;
use std::time::Instant;

use crate::histograms::Hists;
use crate::metrics::{Side, WorkerMetrics};
use crate::session::{End, Trace};
use crate::slabmap::SlabMap;

/// Slab indices hash with one multiply: no SipHash on the lookup a traced connection pays
/// per session call.
type Records = SlabMap<Record>;

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

/// A token bucket in tenths of a token: `rate` per second, refilled per 100 ms tick, one
/// second of burst.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tenths: u64,
    rate: u64,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = u64::from(rate);
        Self {
            tenths: rate * 10,
            rate,
        }
    }
    fn tick(&mut self) {
        self.tenths = (self.tenths + self.rate).min(self.rate * 10);
    }
    fn take(&mut self) -> bool {
        let ok = self.tenths >= 10;
        if ok {
            self.tenths -= 10;
        }
        ok
    }
}

/// A worker's close log: the sampler, the traced connections and the two buckets.
#[derive(Debug)]
pub struct CloseLog {
    worker: usize,
    /// Lines per second this worker may write (0: off).
    rate: u32,
    /// Trace 1 in this many accepts.
    one_in: u32,
    accepts: u64,
    accepts_this_tick: u64,
    traces: Bucket,
    lines: Bucket,
    suppressed: u64,
    traced: Vec<u64>,
    records: Records,
}

impl CloseLog {
    /// Worker `worker`'s log, writing at most `rate` lines per second (0: none).
    pub fn new(worker: usize, rate: u32) -> Self {
        Self {
            worker,
            rate,
            one_in: 1,
            accepts: 0,
            accepts_this_tick: 0,
            traces: Bucket::new(rate),
            lines: Bucket::new(rate),
            suppressed: 0,
            traced: Vec::new(),
            records: Records::default(),
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
        self.accepts_this_tick += 1;
        if self.rate == 0 || self.accepts % u64::from(self.one_in) != 0 {
            return;
        }
        if self.records.len() >= MAX_TRACED || !self.traces.take() {
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

    /// Once a tick (100 ms): the next tick's sampling factor; the buckets refill.
    pub fn on_tick(&mut self) {
        if self.rate == 0 {
            return;
        }
        // Accepts per second at the last tick's pace, over lines per second.
        let pace = self.accepts_this_tick * 10;
        let k = pace
            .div_ceil(u64::from(self.rate))
            .clamp(1, u64::from(u32::MAX));
        self.one_in = k as u32;
        self.accepts_this_tick = 0;
        self.traces.tick();
        self.lines.tick();
    }

    /// Connection `idx` left for another process (a hand-over): not a close, no line.
    pub fn forget(&mut self, idx: u32) {
        if let Some(word) = self.traced.get_mut(idx as usize / 64) {
            *word &= !(1 << (idx % 64));
        }
        self.records.remove(&idx);
    }

    /// Connection `idx` is released: write its line (if traced and the bucket allows) and
    /// record its lifetime (WebSockets only, weighted by the sampling factor).
    pub fn on_release(
        &mut self,
        idx: u32,
        upgraded: bool,
        (user, transport): (Option<std::sync::Arc<str>>, &'static str),
        m: &WorkerMetrics,
        hist: &mut Hists,
    ) {
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
        if !self.lines.take() {
            self.suppressed += 1;
            m.close_log_suppressed.inc();
            return;
        }
        m.close_log_lines.inc();
        let suppressed = std::mem::take(&mut self.suppressed);
        let line = Line {
            conn: format!("{}-{}", self.worker, r.id),
            peer: r.peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            user,
            transport,
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
    user: Option<std::sync::Arc<str>>,
    /// `websocket`, `sse` or `poll`.
    transport: &'static str,
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
    fn write(&self) {
        match &self.end {
            End::Refused {
                status,
                limit,
                reason,
            } => tracing::info!(
                target: "holdfast::close",
                conn = self.conn.as_str(),
                peer = self.peer.as_str(),
                user = self.user.as_deref().unwrap_or("-"),
                transport = self.transport,
                status,
                limit = limit.map_or("-", |l| l.label()),
                reason = reason.as_str(),
                lifetime_ms = self.lifetime_ms,
                bytes_in = self.trace.bytes_in.get(),
                bytes_out = self.trace.bytes_out.get(),
                sample_1_in = self.one_in,
                suppressed = self.suppressed,
                "connection refused"
            ),
            End::Close { side, code, reason } => self.closed(*side, *code, reason),
            End::Abort { side, reason } => self.closed(*side, 1006, reason),
        }
    }

    /// A closed connection's line: the first Close's code, or 1006 with the cause.
    fn closed(&self, s: Side, code: u16, reason: &str) {
        let t = self.trace;
        tracing::info!(
            target: "holdfast::close",
            conn = self.conn.as_str(),
            peer = self.peer.as_str(),
            user = self.user.as_deref().unwrap_or("-"),
            transport = self.transport,
            code,
            reason,
            side = side(s),
            lifetime_ms = self.lifetime_ms,
            bytes_in = t.bytes_in.get(),
            bytes_out = t.bytes_out.get(),
            messages_in = t.messages_in.get(),
            messages_out = t.messages_out.get(),
            sample_1_in = self.one_in,
            suppressed = self.suppressed,
            "connection closed"
        );
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
    fn a_quiet_time_traces_every_connection_a_storm_a_uniform_sample() {
        let m = WorkerMetrics::default();
        let mut log = CloseLog::new(0, 100);
        assert_eq!(accept_n(&mut log, 0, 5, &m), 5, "k = 1 before any storm");
        log.on_tick();
        assert_eq!(log.one_in, 1, "5 in a tick is 50/s, under 100 lines/s");
        // A storm's first tick: k is still 1, but the bucket (one second of the rate, 95
        // left after the 5 and a tick's refill of 10) bounds what it traces.
        assert_eq!(accept_n(&mut log, 5, 1000, &m), 100);
        assert_eq!(m.close_log_untraced.get(), 900);
        log.on_tick();
        // 1,000 accepts in the last tick is 10,000/s: 1 in 100, from the next tick on.
        assert_eq!(log.one_in, 100);
        for _ in 0..10 {
            log.accepts_this_tick = 1000; // the storm goes on at that pace; buckets refill
            log.on_tick();
        }
        assert_eq!(accept_n(&mut log, 5000, 1000, &m), 10);
    }

    #[test]
    fn the_bucket_suppresses_lines_past_the_rate_and_counts_them() {
        let m = WorkerMetrics::default();
        let mut log = CloseLog::new(0, 3);
        let mut h = Hists::default();
        accept_n(&mut log, 0, 3, &m);
        for _ in 0..10 {
            log.on_tick(); // the trace bucket refills (and so does the line bucket, to 3)
        }
        accept_n(&mut log, 3, 2, &m);
        assert_eq!(log.traced(), 5);
        for i in 0..5 {
            log.on_release(i, true, (None, "websocket"), &m, &mut h);
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
        let mut log = CloseLog::new(0, 1_000_000);
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
