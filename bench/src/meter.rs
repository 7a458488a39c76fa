//! An independent echo client, to check the loadgen's figures: plain TCP sockets on a
//! single-threaded tokio runtime (epoll, edge-triggered readiness, one task per
//! connection), hand-written WebSocket framing, one message in flight per connection. It
//! shares no code with the loadgen's io_uring engine, so when both drive the same server the
//! server's CPU per message tells whether the loadgen's client behaviour (batching, when it
//! sleeps) moves the server's cost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `holdfast-bench echo-client` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MeterArgs {
    /// ws://HOST:PORT/PATH of an echo endpoint.
    #[arg(long)]
    pub url: String,
    /// Connections, each with one message in flight.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Payload bytes per message (at most 125).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The server's PID, for its CPU time over the measurement.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

fn parse(url: &str) -> Result<(String, String), String> {
    ws_url(url, "echo client")
}

/// A `ws://HOST:PORT[/PATH]` URL's host and path (`/` when none); `client` names the
/// bench client that refuses another scheme.
pub(crate) fn ws_url(url: &str, client: &str) -> Result<(String, String), String> {
    match url_parts(url) {
        Some((false, host, path)) => Ok((host, path)),
        _ => Err(format!("the {client} speaks ws:// only")),
    }
}

/// A `ws://` or `wss://` URL's parts: whether it is wss://, its host and its path (`/`
/// when none). None for another scheme.
pub(crate) fn url_parts(url: &str) -> Option<(bool, String, String)> {
    let (tls, rest) = match url.strip_prefix("wss://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("ws://")?),
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((tls, host.to_string(), format!("/{path}")))
}

/// A masked client text frame of `size` bytes (mask 0: payload unchanged on the wire).
fn frame(size: usize) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | size as u8, 0, 0, 0, 0];
    f.extend(std::iter::repeat_n(b'x', size));
    f
}

async fn open(host: &str, path: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    // Byte by byte up to the blank line: nothing of the first frame is read past it.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 4096 || s.read(&mut b).await.map_err(|e| e.to_string())? == 0 {
            return Err("the upgrade was not answered".into());
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&head[..head.len().min(40)])
        ));
    }
    Ok(s)
}

/// One connection: send, read the whole echo, again, until `stop`.
async fn run_conn(
    mut s: TcpStream,
    msg: Arc<Vec<u8>>,
    reply: usize,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut buf = vec![0u8; reply];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(&msg).await.map_err(|e| e.to_string())?;
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if buf[0] & 0x0f != 0x1 || usize::from(buf[1] & 0x7f) != reply - 2 {
            return Err("the echo was not the frame sent".into());
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Run the client; prints a JSON summary on stdout.
pub fn run(a: &MeterArgs) -> Result<(), String> {
    if a.size > 125 {
        return Err("--size is at most 125".into());
    }
    let (host, path) = parse(&a.url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let v = rt.block_on(async {
        let msg = Arc::new(frame(a.size));
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..a.connections {
            let s = open(&host, &path).await?;
            tasks.push(tokio::spawn(run_conn(
                s,
                msg.clone(),
                2 + a.size,
                count.clone(),
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
        let cpu = |pid: Option<u32>| pid.and_then(crate::proc::cpu_seconds);
        let me = Some(std::process::id());
        let (c0, s0, m0, t0) = (
            count.load(Ordering::Relaxed),
            cpu(a.server_pid),
            cpu(me),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
        let (c1, s1, m1, secs) = (
            count.load(Ordering::Relaxed),
            cpu(a.server_pid),
            cpu(me),
            t0.elapsed().as_secs_f64(),
        );
        stop.store(true, Ordering::Relaxed);
        let mut failed = 0;
        for t in tasks {
            // Bounded: each task ends after its current round trip.
            match tokio::time::timeout(Duration::from_secs(5), t).await {
                Ok(Ok(Ok(()))) => {}
                _ => failed += 1,
            }
        }
        let msgs = (c1 - c0) as f64;
        let server_cpu = s0.zip(s1).map(|(a, b)| b - a);
        Ok::<_, String>(json!({
            "client": "holdfast-bench echo-client (tokio current-thread: epoll, one task per connection, one message in flight each)",
            "connections": a.connections,
            "round_trips": c1 - c0,
            "messages_per_s": msgs / secs,
            "server_cpu_seconds": server_cpu,
            "messages_per_server_cpu_s": server_cpu.filter(|c| *c > 0.0).map(|c| msgs / c),
            "client_cpu_seconds": m0.zip(m1).map(|(a, b)| b - a),
            "measure_seconds": secs,
            "failed_total": failed,
        }))
    })?;
    holdfast::say!("{v}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_frames() {
        assert_eq!(
            parse("ws://127.0.0.1:9/echo").unwrap(),
            ("127.0.0.1:9".to_string(), "/echo".to_string())
        );
        assert!(parse("wss://x/").is_err());
        let f = frame(32);
        assert_eq!((f[0], f[1], f.len()), (0x81, 0x80 | 32, 38));
    }
}
