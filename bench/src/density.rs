//! `density`: bytes per idle connection, userspace and kernel, at several N.
//!
//! For each N: start the server, take a baseline, open N connections from
//! `ceil(N / per_process)` hold-client processes (each from its own 127.0.x.y source
//! address), wait until the server reports N WebSockets, hold them through at least one ping
//! interval (heartbeats running), then measure the server's RSS and the kernel's slab caches.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{meminfo, rss_bytes, slab_caches};
use crate::server::{default_server_bin, ServerProcess};

/// Options of `holdfast-bench density`.
#[derive(Debug, Clone, clap::Args)]
pub struct DensityArgs {
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub connections: Vec<usize>,
    /// Connections per client process (each process stays under `ulimit -n`).
    #[arg(long, default_value_t = 15000)]
    pub per_process: usize,
    /// Server ping interval in seconds during the hold.
    #[arg(long, default_value_t = 5.0)]
    pub ping_interval: f64,
    /// Seconds to hold once every connection is up (at least one ping interval).
    #[arg(long, default_value_t = 8.0)]
    pub hold: f64,
    /// Server worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Server binary (default: target/release/holdfast next to this program).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Stop a step when MemFree falls below this many GiB.
    #[arg(long, default_value_t = 3.0)]
    pub min_free_gib: f64,
    /// Where to write `<date>-density[-<label>].json` (not written if absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A label for the result file name (e.g. the server flags being compared).
    #[arg(long)]
    pub label: Option<String>,
    /// Extra flags for `holdfast serve`, e.g. `--server-args=--read-mode=recv`.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    pub server_args: Vec<String>,
}

// How the slab growth of a loopback run is split between the ends (both on this machine):
/// Caches holding one object per socket on *each* end: the server's share is half.
const SOCKET_CACHES: &[&str] = &[
    "TCP",
    "sock_inode_cache",
    "filp",
    "lsm_file_cache",
    "lsm_inode_cache",
];
/// Caches only the fd-based, epoll-driven client process grows: its epoll items, the
/// /proc/PID/fd inodes a host agent creates by walking its fds (IO_URING_FACTS.md), and its
/// own address space. The server holds sockets as direct descriptors: none of these.
const CLIENT_CACHES: &[&str] = &[
    "eventpoll_epi",
    "eventpoll_pwq",
    "proc_inode_cache",
    "anon_vma_chain",
    "anon_vma",
    "vm_area_struct",
];
/// `dentry` grows by one socket dentry per end plus the client's /proc fd dentries; the
/// server's share is exactly one object per connection.
const DENTRY: &str = "dentry";

struct Clients(Vec<Child>);

impl Drop for Clients {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// Connections per source address: see `HoldArgs::source`.
const PER_SOURCE: usize = 5000;

/// The source addresses of client process `p` (its own, never shared with another).
fn sources_for(p: usize, count: usize) -> String {
    let k = count.div_ceil(PER_SOURCE).max(1);
    (0..k)
        .map(|j| source_ip(p * 8 + j))
        .collect::<Vec<_>>()
        .join(",")
}

fn source_ip(i: usize) -> String {
    // 127.0.0.2 .. 127.0.0.254, then 127.0.1.x, ...
    let n = i + 2;
    format!("127.0.{}.{}", n / 253, 2 + (n % 253))
}

/// One measured step.
pub fn step(args: &DensityArgs, n: usize) -> Result<serde_json::Value, String> {
    let bin = args.server_bin.clone().unwrap_or_else(default_server_bin);
    let mut extra = vec![
        "--max-connections".to_string(),
        (n + n / 10 + 1000).to_string(),
        "--ping-interval".into(),
        args.ping_interval.to_string(),
        "--idle-timeout".into(),
        (args.ping_interval * 3.0).to_string(),
        "--backlog".into(),
        "4096".into(),
    ];
    if let Some(w) = args.workers {
        extra.extend(["--workers".into(), w.to_string()]);
    }
    extra.extend(args.server_args.iter().filter(|a| !a.is_empty()).cloned());
    let server = ServerProcess::start(&bin, &extra)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss0 = rss_bytes(server.pid()).unwrap_or(0);
    let slab0 = meminfo("Slab").unwrap_or(0);
    let caches0 = slab_caches();

    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let procs = n.div_ceil(args.per_process.max(1));
    let mut clients = Clients(Vec::with_capacity(procs));
    let started = Instant::now();
    for p in 0..procs {
        let count = args.per_process.min(n - p * args.per_process);
        let child = Command::new(&me)
            .args(["hold-client", "--addr", &server.addr.to_string()])
            .args([
                "--connections",
                &count.to_string(),
                "--source",
                &sources_for(p, count),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start hold-client: {e}"))?;
        clients.0.push(child);
    }
    // Drain client stdout so they never block on it; keep the last line of each.
    for c in &mut clients.0 {
        if let Some(out) = c.stdout.take() {
            std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    // Clients do not retry a failed handshake: on a saturated machine a few fail, so the
    // ramp ends at N, or at 99% of N once it has stopped growing for 20 s.
    let (mut best, mut since) = (0usize, Instant::now());
    loop {
        let up = server.metric("holdfast_websockets")? as usize;
        if up >= n {
            break;
        }
        if up > best {
            (best, since) = (up, Instant::now());
        } else if up * 100 >= n * 99 && since.elapsed() > Duration::from_secs(20) {
            break;
        }
        let free = meminfo("MemFree").unwrap_or(u64::MAX) as f64 / (1u64 << 30) as f64;
        if free < args.min_free_gib {
            return Err(format!(
                "stopped at {up} connections: MemFree {free:.1} GiB"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("only {up} of {n} connections after 600 s"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let ramp = started.elapsed().as_secs_f64();
    let pings0 = server.metric("holdfast_pings_sent_total")?;
    std::thread::sleep(Duration::from_secs_f64(
        args.hold.max(args.ping_interval + 1.0),
    ));
    let held = server.metric("holdfast_websockets")? as usize;
    let pings = server.metric("holdfast_pings_sent_total")? - pings0;
    let rss1 = rss_bytes(server.pid()).unwrap_or(0);
    let slab1 = meminfo("Slab").unwrap_or(0);
    let caches1 = slab_caches();
    let rings = server.metric("holdfast_rings")?;

    let mut grew: Vec<(String, i64)> = caches1
        .iter()
        .map(|(k, (v, _))| {
            (
                k.clone(),
                *v as i64 - caches0.get(k).map_or(0, |c| c.0) as i64,
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    grew.sort_by_key(|(_, d)| -d);
    let per = |b: i64| b as f64 / held.max(1) as f64;
    let delta = |names: &[&str]| -> i64 {
        grew.iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, d)| d)
            .sum()
    };
    let slab_total = slab1 as i64 - slab0 as i64;
    let shared = delta(SOCKET_CACHES);
    let client_only = delta(CLIENT_CACHES);
    let dentry = delta(&[DENTRY]);
    let dentry_obj = caches1.get(DENTRY).map_or(0, |c| c.1) as i64;
    let server_dentry = (dentry_obj * held as i64).min(dentry);
    // Everything else (io_kiocb for the armed read, kmalloc, io_uring's own caches) is
    // counted as the server's: an upper bound, since a little of it may be the client's.
    let objects: i64 = grew.iter().map(|(_, d)| d).sum();
    let rest = objects - shared - client_only - dentry;
    let server_kernel = shared / 2 + server_dentry + rest;
    drop(clients);
    drop(server);
    let top: BTreeMap<String, f64> = grew
        .iter()
        .take(12)
        .map(|(k, d)| (k.clone(), per(*d)))
        .collect();
    Ok(serde_json::json!({
        "connections": n,
        "held": held,
        "client_processes": procs,
        "ramp_seconds": ramp,
        "upgrades_per_second_during_ramp": n as f64 / ramp,
        "pings_sent_during_hold": pings,
        "server_rings": rings,
        "server_userspace_bytes_per_connection": per(rss1 as i64 - rss0 as i64),
        "kernel_slab_bytes_per_connection_both_ends": per(slab_total),
        "kernel_slab_object_bytes_per_connection_both_ends": per(objects),
        "server_kernel_bytes_per_connection": per(server_kernel),
        "slab_growth_bytes_per_connection_by_cache": top,
    }))
}

/// Wait until the kernel has released the previous step's sockets.
fn settle() {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let inuse = std::fs::read_to_string("/proc/net/sockstat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("TCP: inuse "))
                    .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        if inuse < 1000 {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Run every step and report.
pub fn run(args: DensityArgs) -> Result<serde_json::Value, String> {
    let mut steps = Vec::new();
    for &n in &args.connections {
        settle();
        eprintln!("density: {n} connections ...");
        let r = step(&args, n)?;
        eprintln!("density: {r}");
        steps.push(r);
    }
    Ok(serde_json::json!({
        "benchmark": "density",
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": crate::proc::machine(),
        "steps": steps,
    }))
}
