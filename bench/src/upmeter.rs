//! An independent upgrade and close client, to check the loadgen's server CPU per upgrade
//! and per close: plain TCP sockets on a single-threaded tokio runtime (epoll, one task per
//! connection), a hand-written upgrade request and Close frame. It shares no code with the
//! loadgen's io_uring engine (which connects with linked socket/bind/connect chains and
//! reads provided buffers); only the CPU meter and its "at rest" rule are the loadgen's, so
//! that both read the server alike.
//!
//! A run: connections are opened at the given rate (connect, the upgrade request, the 101),
//! held, then each sends a Close (1000), waits for the server's Close and its FIN, and
//! closes. The server's CPU over the ramp per connection upgraded, and over the teardown
//! (read once the server is at rest) per connection closed, are the figures.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::fanmeter::upgraded;

/// `holdfast-bench upgrade-client` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct UpMeterArgs {
    /// ws://HOST:PORT/PATH of a WebSocket endpoint that takes a Close (an echo endpoint).
    #[arg(long)]
    pub url: String,
    /// Connections to open, hold and close.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connections opened per second (the ramp's pace).
    #[arg(long, default_value_t = 40_000.0)]
    pub rate: f64,
    /// Seconds every connection is held before the teardown.
    #[arg(long, default_value_t = 0.5)]
    pub hold: f64,
    /// Source addresses the connections come from, taken in turn (127.0.5.x, x = 1..=count).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    /// The server's PID, for its CPU time over the ramp and the teardown.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// The masked Close (1000, no reason) every connection sends (mask 0: the payload is as
/// written).
const CLOSE: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];

/// How long any one step of a connection may take (connect, the 101, the server's Close
/// and FIN) before it counts as failed.
const STEP: Duration = Duration::from_secs(10);

fn target(url: &str) -> Result<(SocketAddr, String, String), String> {
    let (host, path) = crate::meter::ws_url(url, "upgrade client")?;
    let addr = host
        .parse::<SocketAddr>()
        .map_err(|e| format!("{host}: {e} (an IP address and port)"))?;
    Ok((addr, host, path))
}

/// Whether `after` (what the server sent after its 101, up to its FIN) is exactly one
/// unmasked Close frame (with any status and reason, as RFC 6455 lets a server answer).
fn closed_cleanly(after: &[u8]) -> bool {
    match after {
        [0x88, len, rest @ ..] => usize::from(*len) == rest.len() && rest.len() != 1,
        _ => false,
    }
}

/// One connection: open and upgrade (reported on `ready`), wait for the teardown, then the
/// closing handshake. `Ok(true)` when the server answered the Close and then closed.
async fn connection(
    to: SocketAddr,
    from: SocketAddr,
    request: std::sync::Arc<String>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    mut teardown: watch::Receiver<bool>,
) -> Result<bool, String> {
    let opened = async {
        let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        sock.bind(from).map_err(|e| format!("bind {from}: {e}"))?;
        let mut s = sock.connect(to).await.map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(256);
        loop {
            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("the upgrade was not answered".to_string());
            }
            // The bench clients' one reading of a 101 (16 KiB of head at most).
            if let Some(end) = upgraded(&buf).map_err(|e| format!("upgrade {e}"))? {
                buf.drain(..end);
                return Ok::<(TcpStream, Vec<u8>), String>((s, buf));
            }
        }
    };
    let opened = match tokio::time::timeout(STEP, opened).await {
        Ok(r) => r,
        Err(_) => Err(format!("no 101 in {} s", STEP.as_secs())),
    };
    let (mut s, mut after) = match opened {
        Ok(o) => {
            let _ = ready.send(Ok(()));
            o
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    drop(ready);
    // The teardown comes once every connection is open and held (or the run gave up).
    let _ = teardown.wait_for(|&go| go).await;
    s.write_all(&CLOSE).await.map_err(|e| e.to_string())?;
    // The server's Close, then its FIN (RFC 6455 7.1.1: the server closes TCP first).
    let fin = tokio::time::timeout(STEP, async {
        loop {
            after.reserve(64);
            if s.read_buf(&mut after).await? == 0 {
                return Ok::<(), std::io::Error>(());
            }
            if after.len() > 4096 {
                return Err(std::io::Error::other(
                    "more than a Close after the teardown",
                ));
            }
        }
    })
    .await;
    match fin {
        Ok(Ok(())) => Ok(closed_cleanly(&after)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no FIN in {} s after the Close", STEP.as_secs())),
    }
}

/// Run the client; prints a JSON summary on stdout.
pub fn run(a: &UpMeterArgs) -> Result<(), String> {
    let paced = a.rate.is_finite() && a.rate > 0.0 && a.hold.is_finite() && a.hold >= 0.0;
    if a.connections == 0 || a.sources == 0 || !paced {
        return Err(
            "--connections, --sources and --rate must be positive, --hold not negative".into(),
        );
    }
    let (to, host, path) = target(&a.url)?;
    let request = std::sync::Arc::new(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cpu = |pid: Option<u32>| pid.and_then(crate::proc::cpu_seconds);
    let me = Some(std::process::id());
    let v = rt.block_on(async {
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let (teardown_tx, teardown_rx) = watch::channel(false);
        let (s0, m0) = (cpu(a.server_pid), cpu(me));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(a.connections);
        for i in 0..a.connections {
            let due = start + Duration::from_secs_f64(i as f64 / a.rate);
            if tokio::time::Instant::now() < due {
                tokio::time::sleep_until(due).await;
            }
            let from = SocketAddr::from(([127, 0, 5, 1 + (i % usize::from(a.sources)) as u8], 0));
            tasks.push(tokio::spawn(connection(
                to,
                from,
                request.clone(),
                ready_tx.clone(),
                teardown_rx.clone(),
            )));
        }
        drop(ready_tx);
        // Every connection upgraded or failed: each has STEP to do it, so this ends.
        let (mut upgraded, mut failed, mut first_error) = (0u64, 0u64, None);
        while let Some(r) = ready_rx.recv().await {
            match r {
                Ok(()) => upgraded += 1,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if upgraded == 0 {
            let why = first_error.unwrap_or_default();
            return Err(format!("no connection upgraded: {why}"));
        }
        let ramp = start.elapsed().as_secs_f64();
        let (s_ramp, m_ramp) = (cpu(a.server_pid), cpu(me));
        tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
        let s_hold = cpu(a.server_pid);
        let _ = teardown_tx.send(true);
        let (mut clean, mut unclean, mut close_failed) = (0u64, 0u64, 0u64);
        for t in tasks {
            // Bounded: each task's steps time out.
            match t.await {
                Ok(Ok(true)) => clean += 1,
                Ok(Ok(false)) => unclean += 1,
                Ok(Err(e)) => {
                    close_failed += 1;
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    close_failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        // Failed opens are counted once (above), not again as failed closes.
        let close_failed = close_failed.saturating_sub(failed);
        let m_end = cpu(me);
        let s_closed = tokio::task::spawn_blocking({
            let pid = a.server_pid;
            move || holdfast_loadgen::report::settled_cpu(pid)
        })
        .await
        .ok()
        .flatten();
        let per = |from: Option<f64>, to: Option<f64>, n: u64| match (from, to) {
            (Some(a), Some(b)) if n > 0 => Some((b - a) * 1e6 / n as f64),
            _ => None,
        };
        Ok::<_, String>(json!({
            "client": "holdfast-bench upgrade-client (tokio current-thread: epoll, one task per connection; connect, upgrade, Close, wait for the server's Close and FIN)",
            "connections_wanted": a.connections,
            "established": upgraded,
            "failed_to_open": failed,
            "closed_cleanly": clean,
            "closed_without_close_frame": unclean,
            "failed_to_close": close_failed,
            "first_error": first_error,
            "ramp_seconds": ramp,
            "upgrades_per_s": upgraded as f64 / ramp.max(1e-9),
            "server_cpu_us_per_upgrade": per(s0, s_ramp, upgraded),
            "server_cpu_us_per_close": per(s_hold, s_closed, clean + unclean),
            "server_cpu_seconds_ramp": s0.zip(s_ramp).map(|(a, b)| b - a),
            "client_cpu_seconds_ramp": m0.zip(m_ramp).map(|(a, b)| b - a),
            "client_cpu_seconds": m0.zip(m_end).map(|(a, b)| b - a),
        }))
    })?;
    println!("{v}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_an_address_and_a_path() {
        let (addr, host, path) = target("ws://127.0.0.1:9/echo").unwrap();
        assert_eq!(
            (addr.port(), host.as_str(), path.as_str()),
            (9, "127.0.0.1:9", "/echo")
        );
        assert!(target("wss://127.0.0.1:9/").is_err());
        assert!(
            target("ws://localhost:9/").is_err(),
            "an address, not a name"
        );
    }

    #[test]
    fn a_clean_close_is_one_close_frame() {
        assert!(closed_cleanly(&[0x88, 0x02, 0x03, 0xe8]));
        assert!(closed_cleanly(&[0x88, 0x00]));
        assert!(closed_cleanly(b"\x88\x04\x03\xe8ok"));
        assert!(!closed_cleanly(&[]), "a FIN without a Close");
        assert!(
            !closed_cleanly(&[0x88, 0x01, 0x03]),
            "a 1-byte close body is invalid"
        );
        assert!(
            !closed_cleanly(&[0x88, 0x02, 0x03, 0xe8, 0x81, 0x00]),
            "more after the Close"
        );
        assert!(!closed_cleanly(&[0x81, 0x00]));
    }
}
