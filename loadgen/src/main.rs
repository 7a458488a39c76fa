//! `holdfast-loadgen`: the bundled io_uring WebSocket load generator.
//!
//! Scenarios: `hold` (ramp to N connections, hold them answering pings, close cleanly).
//! `echo`, `storm` and `fanout` are not implemented yet (see the issue tracker).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use mimalloc::MiMalloc;
use serde_json::json;

use holdfast_loadgen::{engine, stats, target};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about = "io_uring WebSocket load generator")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Ramp to N connections, hold them for a duration answering pings, then close cleanly.
    Hold(HoldArgs),
}

#[derive(Debug, Clone, Args)]
struct HoldArgs {
    /// Target, e.g. ws://127.0.0.1:8080/echo.
    #[arg(long)]
    url: String,
    /// Connections to open.
    #[arg(long)]
    connections: usize,
    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Connect + upgrade attempts in flight at once.
    #[arg(long, default_value_t = 2048)]
    concurrency: usize,
    /// Seconds to hold once the ramp is done.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds after which the run ends whatever happened (default: ramp time × 2 +
    /// duration + 60).
    #[arg(long)]
    hard_timeout: Option<f64>,
    /// Engines (threads, one io_uring ring each); default: enough rings for N, at least one
    /// per CPU.
    #[arg(long)]
    workers: Option<usize>,
    /// Source addresses: a.b.c.d, ranges a.b.c.d-a.b.c.e, comma-separated (default for a
    /// loopback target: 127.0.0.2-127.0.0.254).
    #[arg(long)]
    sources: Option<String>,
    /// Seconds allowed for connect + upgrade.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds the closing handshakes may take at the end before sockets are dropped.
    #[arg(long, default_value_t = 30.0)]
    close_timeout: f64,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn nofile_soft() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

fn machine() -> serde_json::Value {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .replace('\t', " ")
    };
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": mem,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "rlimit_nofile_soft": nofile_soft(),
        "sysctl": {
            "net.ipv4.ip_local_port_range": read("/proc/sys/net/ipv4/ip_local_port_range"),
            "net.core.somaxconn": read("/proc/sys/net/core/somaxconn"),
            "net.ipv4.tcp_mem": read("/proc/sys/net/ipv4/tcp_mem"),
            "fs.file-max": read("/proc/sys/fs/file-max"),
        }
    })
}

fn hold(a: HoldArgs) -> Result<bool, String> {
    let target = Arc::new(target::parse_url(&a.url)?);
    let sources = match &a.sources {
        Some(s) => target::parse_sources(s)?,
        None => target::default_sources(&target.addr),
    };
    let table = nofile_soft().min(1 << 20) as usize;
    let per_ring = table.saturating_sub(64).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let engines = a
        .workers
        .unwrap_or(cpus)
        .max(a.connections.div_ceil(per_ring))
        .max(1);
    let stats = Arc::new(stats::Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for id in 0..engines {
        let quota = a.connections / engines + usize::from(id < a.connections % engines);
        let mine: Vec<_> = sources
            .iter()
            .copied()
            .skip(id % sources.len())
            .step_by(engines.min(sources.len()))
            .collect();
        let spec = engine::EngineSpec {
            id,
            target: target.clone(),
            sources: if mine.is_empty() {
                sources.clone()
            } else {
                mine
            },
            quota,
            rate: a.rate / engines as f64,
            concurrency: (a.concurrency / engines).max(1),
            table: table as u32,
            stats: stats.clone(),
            stop: stop.clone(),
            handshake_timeout: Duration::from_secs_f64(a.handshake_timeout),
            close_timeout: Duration::from_secs_f64(a.close_timeout),
            cpu: Some(id % cpus),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{id}"))
                .spawn(move || engine::run(spec))
                .map_err(|e| e.to_string())?,
        );
    }
    let started = Instant::now();
    let ramp_estimate = a.connections as f64 / a.rate.max(1.0);
    let hard = a
        .hard_timeout
        .unwrap_or(ramp_estimate * 2.0 + a.duration + 60.0);
    let mut series = Vec::new();
    let mut ramp_done: Option<f64> = None;
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let t = started.elapsed().as_secs_f64();
        let est = stats.established.load(Ordering::Relaxed);
        let failed = stats.failed();
        let open = stats.open.load(Ordering::Relaxed);
        series.push(json!({"t": t.round(), "established": est, "open": open, "failed": failed}));
        println!(
            "t={t:>5.0}s established={est} open={open} failed={failed} pings={}",
            stats.pings.load(Ordering::Relaxed)
        );
        if ramp_done.is_none() && (est + failed) as usize >= a.connections {
            ramp_done = Some(t);
        }
        if ramp_done.is_some_and(|r| t - r >= a.duration) || t >= hard {
            break;
        }
    }
    let held = stats.open.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    for h in handles {
        match h.join() {
            Ok(Ok(part)) => hist.add(part).map_err(|e| e.to_string())?,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("an engine panicked".into()),
        }
    }
    let q = |p: f64| hist.value_at_quantile(p);
    let established = stats.established.load(Ordering::Relaxed);
    let report = json!({
        "scenario": "hold",
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": machine(),
        "target": a.url,
        "connections_wanted": a.connections,
        "established": established,
        "held_at_end": held,
        "engines": engines,
        "ramp_seconds": ramp_done,
        "connect_upgrade_latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99.9": q(0.999), "max": hist.max()},
        "failures": stats.failures(),
        "closes_and_statuses": stats.keyed(),
        "pings_answered": stats.pings.load(Ordering::Relaxed),
        "messages_received": stats.messages.load(Ordering::Relaxed),
        "series": series,
    });
    println!(
        "\nhold: {established} of {} established, {held} held at the end, {} failed {:?}\n\
         connect+upgrade latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}\n\
         ramp {:.1} s, closes/statuses {:?}",
        a.connections,
        stats.failed(),
        stats
            .failures()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect::<Vec<_>>(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        hist.max(),
        ramp_done.unwrap_or(f64::NAN),
        stats.keyed()
    );
    if let Some(path) = &a.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(established as usize == a.connections)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Hold(a) => hold(a),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("holdfast-loadgen: {e}");
            std::process::exit(2);
        }
    }
}
