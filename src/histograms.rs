//! Latency and size histograms (HdrHistogram), kept per worker without shared atomics: a
//! worker records into its own [`Hists`], and once a tick adds them into its shared copy
//! (a mutex only the scrape also takes, briefly); the scrape merges every worker's copy and
//! renders Prometheus histograms with fixed buckets.
//!
//! What is recorded (docs/operations.md, "Histograms"):
//! - publish → delivery: from the publish call to the end of the turn in which the worker
//!   queued the message for its local recipients (time to the socket's queue, not to the
//!   wire), weighted by recipients — one clock read per message per turn, not per delivery;
//! - handshake: from the accepted socket to the `101` queued;
//! - send queue depth: bytes a connection had queued each time a send was submitted;
//! - connection lifetime: accept to release of a WebSocket, from the connections the close
//!   log traces (a uniform sample when accepts outrun its rate), each weighted by its
//!   sampling factor;
//! - resumes: messages a resume replayed, and messages in the gap it could not replay.
//!   Recorded straight into the worker's shared copy (one lock per resuming subscribe, not
//!   per message).

use std::fmt::Write as _;
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// One set of histograms.
#[derive(Debug, Clone)]
pub struct Hists {
    /// Publish → queued for delivery, µs.
    pub publish_delivery_us: Histogram<u64>,
    /// Accept → 101 queued, µs.
    pub handshake_us: Histogram<u64>,
    /// Bytes queued at each send.
    pub send_queue_bytes: Histogram<u64>,
    /// Accept → release of a WebSocket, ms (sampled, weighted).
    pub lifetime_ms: Histogram<u64>,
    /// Messages a resume replayed (0 included).
    pub resume_replayed: Histogram<u64>,
    /// Messages in the gap a resume could not replay (gaps only).
    pub resume_gap: Histogram<u64>,
}

impl Default for Hists {
    fn default() -> Self {
        let h = |high| Histogram::new_with_bounds(1, high, 2).expect("valid bounds");
        Self {
            publish_delivery_us: h(3_600_000_000),
            handshake_us: h(3_600_000_000),
            send_queue_bytes: h(1 << 40),
            lifetime_ms: h(1 << 40),
            resume_replayed: h(1 << 40),
            resume_gap: h(1 << 62),
        }
    }
}

impl Hists {
    /// Add `other` into these and clear it.
    pub fn take_from(&mut self, other: &mut Self) {
        for (a, b) in [
            (
                &mut self.publish_delivery_us,
                &mut other.publish_delivery_us,
            ),
            (&mut self.handshake_us, &mut other.handshake_us),
            (&mut self.send_queue_bytes, &mut other.send_queue_bytes),
            (&mut self.lifetime_ms, &mut other.lifetime_ms),
            (&mut self.resume_replayed, &mut other.resume_replayed),
            (&mut self.resume_gap, &mut other.resume_gap),
        ] {
            // Same bounds on both sides: addition cannot fail.
            let _ = a.add(&*b);
            b.reset();
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.publish_delivery_us.is_empty()
            && self.handshake_us.is_empty()
            && self.send_queue_bytes.is_empty()
            && self.lifetime_ms.is_empty()
            && self.resume_replayed.is_empty()
            && self.resume_gap.is_empty()
    }
}

/// A worker's histograms as the scrape sees them.
#[derive(Debug, Default)]
pub struct Shared(Mutex<Hists>);

impl Shared {
    /// Move what a worker recorded locally into the shared copy.
    pub fn publish(&self, local: &mut Hists) {
        if local.is_empty() {
            return;
        }
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.take_from(local);
    }

    /// A resume replayed `replayed` messages and could not replay `gap` (when it left a
    /// gap). Value 0 is recorded as 0 (the histograms' lowest bucket).
    pub fn record_resume(&self, replayed: u64, gap: Option<u64>) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.resume_replayed.saturating_record(replayed);
        if let Some(g) = gap {
            s.resume_gap.saturating_record(g);
        }
    }

    /// A copy of what has been recorded.
    pub fn snapshot(&self) -> Hists {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

const SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const LONG_SECONDS: [f64; 6] = [5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];
const LIFETIME_SECONDS: [f64; 12] = [
    0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0, 86400.0, 604800.0,
];
const MESSAGES: [f64; 10] = [
    0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1e6, 1e7, 1e8,
];
const BYTES: [f64; 10] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Render one histogram: `scale` converts recorded units to the exposed unit.
fn render_one(o: &mut String, name: &str, help: &str, h: &Histogram<u64>, le: &[f64], scale: f64) {
    let _ = writeln!(
        o,
        "# HELP holdfast_{name} {help}\n# TYPE holdfast_{name} histogram"
    );
    for &b in le {
        // Recorded values ≤ b (in recorded units; HDR's 2 significant digits).
        let top = (b / scale).floor() as u64;
        let n = if top == 0 && b > 0.0 {
            0
        } else {
            h.count_between(0, top)
        };
        let _ = writeln!(o, "holdfast_{name}_bucket{{le=\"{b}\"}} {n}");
    }
    let count = h.len();
    let _ = writeln!(o, "holdfast_{name}_bucket{{le=\"+Inf\"}} {count}");
    let sum = h.mean() * count as f64 * scale;
    let _ = writeln!(o, "holdfast_{name}_sum {sum}");
    let _ = writeln!(o, "holdfast_{name}_count {count}");
}

/// Render every worker's histograms, merged.
pub fn render(o: &mut String, workers: &[&Shared]) {
    let mut all = Hists::default();
    for w in workers {
        let mut s = w.snapshot();
        all.take_from(&mut s);
    }
    let seconds: Vec<f64> = SECONDS.iter().chain(LONG_SECONDS.iter()).copied().collect();
    render_one(
        o,
        "publish_delivery_seconds",
        "Publish to queued for delivery on a worker, weighted by recipients (time to the socket's queue, not the wire).",
        &all.publish_delivery_us,
        &seconds,
        1e-6,
    );
    render_one(
        o,
        "handshake_seconds",
        "Accepted socket to 101 queued.",
        &all.handshake_us,
        &seconds,
        1e-6,
    );
    render_one(
        o,
        "send_queue_bytes",
        "Bytes a connection had queued when a send was submitted.",
        &all.send_queue_bytes,
        &BYTES,
        1.0,
    );
    render_one(
        o,
        "connection_lifetime_seconds",
        "Accept to close of a WebSocket: the close log's traced sample, each weighted by its sampling factor.",
        &all.lifetime_ms,
        &LIFETIME_SECONDS,
        1e-3,
    );
    render_one(
        o,
        "pubsub_resume_replayed_messages",
        "Messages replayed to a subscribe with a resume point (0 when nothing was missed).",
        &all.resume_replayed,
        &MESSAGES,
        1.0,
    );
    render_one(
        o,
        "pubsub_resume_gap_messages",
        "Messages a resume could not replay (sent as a gap): resumes that left a gap only.",
        &all.resume_gap,
        &MESSAGES,
        1.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_record_locally_and_the_scrape_merges_them_into_cumulative_buckets() {
        let (a, b) = (Shared::default(), Shared::default());
        let mut local = Hists::default();
        local.publish_delivery_us.record_n(2_000, 10).unwrap(); // 2 ms × 10
        a.publish(&mut local);
        assert!(local.is_empty(), "published and cleared");
        local.publish_delivery_us.record(700_000).unwrap(); // 0.7 s
        b.publish(&mut local);
        let mut o = String::new();
        render(&mut o, &[&a, &b]);
        let bucket = |le: &str| {
            let key = format!("holdfast_publish_delivery_seconds_bucket{{le=\"{le}\"}} ");
            o.lines()
                .find_map(|l| l.strip_prefix(&key))
                .map(|v| v.parse::<u64>().unwrap())
                .unwrap()
        };
        assert_eq!(bucket("0.001"), 0);
        assert_eq!(bucket("0.0025"), 10);
        assert_eq!(bucket("0.5"), 10);
        assert_eq!(bucket("1"), 11);
        assert_eq!(bucket("+Inf"), 11);
        assert!(o.contains("holdfast_publish_delivery_seconds_count 11"));
        assert!(o.contains("# TYPE holdfast_handshake_seconds histogram"));
        assert!(o.contains("holdfast_send_queue_bytes_count 0"));
    }
}
