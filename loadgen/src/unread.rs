//! How far behind a client on this host reads: the bytes the kernel holds delivered but not
//! yet read in the receive queues of the connections to a server, summed, as `ss` (the
//! kernel's sock_diag) reports them, sampled every 3 s over a measurement.
//!
//! A fan-out latency is the server's part (publish to send) plus the client's (data waiting
//! in its sockets until it reads them). On a box the server shares with its clients the
//! second part can dominate — a client short of CPU reads late, in bigger pieces — and it
//! belongs to the client, not the server. Both fan-out clients (the loadgen and
//! `holdfast-bench fanout-client`) report it beside their latency. `/proc/net/tcp` is no
//! substitute: at 36k sockets one read of it took over a second of kernel time on the
//! cores being measured. A sample costs ~0.12 CPU-s at 18k connections (`ss` formats a line
//! for each): every 3 s, ~4% of one CPU taken from the server and client alike.

use std::net::SocketAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use serde_json::{json, Value};

/// Seconds between samples.
pub const EVERY: Duration = Duration::from_secs(3);

/// The bytes waiting unread in the connections to `server`, now; None when `ss` cannot be
/// run or fails.
pub fn sample(server: SocketAddr) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args(["-tnH", "state", "established", "dst", &server.to_string()])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| unread_to(&String::from_utf8_lossy(&out.stdout), server))
}

/// The receive-queue bytes of the sockets in `table` (`ss -tnH state established`: Recv-Q,
/// Send-Q, local, peer) whose peer is `server`.
pub fn unread_to(table: &str, server: SocketAddr) -> u64 {
    let peer = server.to_string();
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&peer.as_str())).then(|| f[0].parse::<u64>().ok())?
        })
        .sum()
}

/// A sampler on its own thread: every [`EVERY`] until stopped, the bytes unread in the
/// connections to `servers` (summed over them).
#[derive(Debug)]
pub struct Sampler {
    /// Dropped to stop the thread (its wait ends at once).
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl Sampler {
    /// Start sampling (nothing is sampled without a server address).
    pub fn start(servers: Vec<SocketAddr>) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            // Each wait ends at the next sample or as soon as the sender is dropped.
            while !servers.is_empty()
                && stopped.recv_timeout(EVERY) == Err(RecvTimeoutError::Timeout)
            {
                match servers.iter().map(|s| sample(*s)).sum::<Option<u64>>() {
                    Some(b) => out.push(b),
                    None => break,
                }
            }
            out
        });
        Self { stop, thread }
    }

    /// Stop, and the samples taken.
    pub fn stop(self) -> Vec<u64> {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}

/// The samples' median and maximum, in bytes and in ms of reading at `bytes_per_s` (the
/// client's read rate over the same window); null without samples.
pub fn summary(samples: &[u64], bytes_per_s: f64) -> Value {
    let mut v = samples.to_vec();
    v.sort_unstable();
    let (Some(&median), Some(&max)) = (v.get(v.len() / 2), v.last()) else {
        return Value::Null;
    };
    let ms = |b: u64| (bytes_per_s > 0.0).then(|| b as f64 * 1000.0 / bytes_per_s);
    json!({
        "samples": v.len(),
        "median_bytes": median,
        "max_bytes": max,
        "median_ms": ms(median),
        "max_ms": ms(max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_bytes_are_summed_over_the_sockets_to_the_server_only() {
        let table = "0      0      127.0.0.1:20120 127.0.4.1:40000
256    0      127.0.4.1:40000 127.0.0.1:20120
16     0      127.0.4.2:40001 127.0.0.1:20120
1      0      127.0.4.2:40002 127.0.0.1:8080
garbage";
        let t: SocketAddr = "127.0.0.1:20120".parse().unwrap();
        assert_eq!(
            unread_to(table, t),
            272,
            "the rows whose peer is the server only"
        );
        let s = summary(&[30, 10, 20], 1000.0);
        assert_eq!(s["median_bytes"], 20);
        assert_eq!(s["max_bytes"], 30);
        assert_eq!(s["max_ms"], 30.0, "30 B at 1,000 B/s");
        assert!(summary(&[], 1.0).is_null());
        assert!(
            summary(&[5], 0.0)["median_ms"].is_null(),
            "no read rate, no ms"
        );
    }

    #[test]
    fn a_sampler_stops_when_asked_and_keeps_nothing_without_servers() {
        let s = Sampler::start(Vec::new());
        assert!(s.stop().is_empty());
        // A real sample of a port nobody connects to: `ss` answers with no rows.
        if let Some(b) = sample("127.0.0.1:9".parse().unwrap()) {
            assert_eq!(b, 0);
        }
    }
}
