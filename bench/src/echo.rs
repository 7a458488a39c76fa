//! `echo`: closed-loop echo round trips against a server this command starts, with HDR
//! latency percentiles and the server's CPU time per message (the client shares the cores,
//! so throughput alone would measure the client as much as the server).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use holdfast::ws::assembler::{Assembler, Message};
use holdfast::ws::frame::encode_frame;
use holdfast::ws::{Decoder, OpCode, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hold::{handshake, HoldArgs};
use crate::proc::cpu_seconds;
use crate::server::{default_server_bin, ServerProcess};

/// Options of `holdfast-bench echo`.
#[derive(Debug, Clone, clap::Args)]
pub struct EchoArgs {
    /// Concurrent connections, each sending one message and waiting for its echo.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Round trips per connection.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Extra flags for `holdfast serve`, e.g. `--server-args=--read-mode=recv`.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    pub server_args: Vec<String>,
    /// Server binary (default: target/release/holdfast next to this program).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}

async fn one(
    args: HoldArgs,
    i: usize,
    messages: usize,
    size: usize,
) -> std::io::Result<Histogram<u64>> {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(std::io::Error::other)?;
    let (mut s, first) = handshake(&args, i).await?;
    s.set_nodelay(true)?;
    let mut asm = Assembler::new(Decoder::new(Role::Client));
    let payload = vec![b'x'; size];
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        true,
        OpCode::Binary,
        Some([7, 7, 7, 7]),
        &payload,
    );
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = first;
    for _ in 0..messages {
        let t = Instant::now();
        s.write_all(&frame).await?;
        let mut got = false;
        while !got {
            if pending.is_empty() {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                pending.extend_from_slice(&buf[..n]);
            }
            asm.feed(&pending, u32::MAX, |m| {
                got |= matches!(m, Message::Binary(_))
            })
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            pending.clear();
        }
        hist.record(t.elapsed().as_micros().max(1) as u64)
            .map_err(std::io::Error::other)?;
    }
    Ok(hist)
}

/// Run and report.
pub fn run(args: EchoArgs) -> Result<serde_json::Value, String> {
    let bin = args.server_bin.clone().unwrap_or_else(default_server_bin);
    let server = ServerProcess::start(&bin, &args.server_args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cpu0 = cpu_seconds(server.pid()).unwrap_or(0.0);
    let started = Instant::now();
    let hist = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..args.connections {
            let source: IpAddr = format!("127.0.{}.{}", 10 + i / 5000, 2 + (i / 5000) % 200)
                .parse()
                .expect("address");
            let hold = HoldArgs {
                addr: server.addr,
                connections: 1,
                source: vec![source],
                concurrency: 1,
                path: "/echo".into(),
            };
            tasks.push(tokio::spawn(one(hold, i, args.messages, args.size)));
        }
        let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(300), t).await {
                Ok(Ok(Ok(h))) => total.add(h).expect("same bounds"),
                other => return Err(format!("a connection failed: {other:?}")),
            }
        }
        Ok(total)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid()).unwrap_or(0.0) - cpu0;
    let msgs = (args.connections * args.messages) as f64;
    let q = |p: f64| hist.value_at_quantile(p);
    Ok(serde_json::json!({
        "benchmark": "echo",
        "server_args": args.server_args,
        "connections": args.connections,
        "messages": msgs,
        "payload_bytes": args.size,
        "seconds": secs,
        "messages_per_second": msgs / secs,
        "server_cpu_seconds": cpu,
        "messages_per_server_cpu_second": if cpu > 0.0 { msgs / cpu } else { 0.0 },
        "rtt_us": { "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99.9": q(0.999), "max": hist.max() },
        "machine": crate::proc::machine(),
    }))
}
