//! `holdfast`: the server, its tuning and planning commands.
use clap::{Parser, Subcommand};
use holdfast::config::ServeConfig;
use holdfast::say;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Holdfast: a high-density WebSocket connection server on io_uring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    #[command(
        after_help = "Durations take units (10s, 500ms, 2m, 1h; a bare number is \
        seconds), sizes take KiB/MiB/GiB (or KB/MB/GB), counts take k/M (1M = 1,000,000)."
    )]
    Serve(Box<ServeConfig>),
    /// Check, apply or revert a sysctl tuning profile (tuning/).
    #[command(subcommand)]
    Tune(Tune),
    /// Size memory, CPU, descriptors, ports and nodes for a connection target.
    Plan(holdfast::plan::PlanArgs),
    /// Upgrade a running server to the binary at its path without closing a connection:
    /// it starts the new binary and hands it its listeners and every connection.
    Upgrade(UpgradeArgs),
}

#[derive(Debug, clap::Args)]
struct UpgradeArgs {
    /// Send SIGUSR2 to this process (e.g. systemd's $MAINPID) instead of using the admin API.
    #[arg(long, conflicts_with = "admin")]
    pid: Option<u32>,
    /// The server's admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: std::net::SocketAddr,
    /// A file holding the admin bearer token (--admin-token-file of the server).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Seconds to wait for the upgrade to finish (with --admin).
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

#[derive(Debug, Subcommand)]
enum Tune {
    /// Compare the live node with a profile and a connection target; exits 1 when the node
    /// cannot reach the target, naming the limit that binds first.
    Check {
        /// Built-in profile (c100k, c1m, c10m) or a sysctl.d file.
        #[arg(long)]
        profile: Option<String>,
        /// Connection target.
        #[arg(long)]
        connections: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a profile through /proc/sys, saving the values it replaces first.
    Apply {
        /// Built-in profile (c100k, c1m, c10m) or a sysctl.d file.
        #[arg(long)]
        profile: String,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also lower values that are already beyond the profile's.
        #[arg(long)]
        force: bool,
        /// Where to save the replaced values (default: ./holdfast-tune-<unix time>.conf).
        #[arg(long)]
        snapshot: Option<std::path::PathBuf>,
    },
    /// Restore the values saved by `tune apply`.
    Revert {
        /// The snapshot file `tune apply` wrote.
        snapshot: std::path::PathBuf,
    },
}

fn fail(msg: &str, code: i32) -> ! {
    eprintln!("holdfast: {msg}");
    std::process::exit(code);
}

fn run_tune(t: Tune) {
    use holdfast::tune::{self, profile, Action};
    match t {
        Tune::Check {
            profile: name,
            connections,
            json,
        } => {
            let p = name.map(|n| profile::load(&n).unwrap_or_else(|e| fail(&e, 2)));
            let c = tune::check(p.as_ref(), connections);
            holdfast::stdout::emit(format_args!(
                "{}",
                if json {
                    tune::check_json(&c) + "\n"
                } else {
                    tune::render_check(&c)
                }
            ));
            if !c.reaches_target() {
                std::process::exit(1);
            }
        }
        Tune::Apply {
            profile: name,
            dry_run,
            force,
            snapshot,
        } => {
            let p = profile::load(&name).unwrap_or_else(|e| fail(&e, 2));
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let snap = snapshot.unwrap_or_else(|| format!("holdfast-tune-{secs}.conf").into());
            let plan = tune::apply(&p, dry_run, force, &snap).unwrap_or_else(|e| fail(&e, 1));
            for (k, want, a) in &plan {
                match a {
                    Action::Set { old } => {
                        let verb = if dry_run { "would set" } else { "set" };
                        say!("{verb:<10} {k} = {want}   (was {old})");
                    }
                    Action::Kept => say!("{:<10} {k} (already at or beyond {want})", "kept"),
                    Action::Absent => say!("{:<10} {k} (not on this kernel)", "absent"),
                }
            }
            if !dry_run {
                say!(
                    "\nsaved the replaced values to {}; undo with: holdfast tune revert {}",
                    snap.display(),
                    snap.display()
                );
            }
        }
        Tune::Revert { snapshot } => {
            let restored = tune::revert(&snapshot).unwrap_or_else(|e| fail(&e, 1));
            for (k, v) in restored {
                say!("restored {k} = {v}");
            }
        }
    }
}

fn run_plan(a: holdfast::plan::PlanArgs) {
    let mem = match &a.node_memory {
        Some(s) => holdfast::plan::parse_size(s).unwrap_or_else(|e| fail(&e, 2)),
        None => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024),
    };
    let cores = a
        .node_cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    match holdfast::plan::compute(&a, mem, cores) {
        Ok(p) => say!("{}", holdfast::plan::render(&a, &p, mem, cores)),
        Err(e) => fail(&e, 2),
    }
}

/// One admin request; returns (status, body).
fn admin_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

fn run_upgrade(a: UpgradeArgs) {
    if let Some(pid) = a.pid {
        match holdfast::io::sys::kill(pid, libc::SIGUSR2) {
            Ok(()) => {
                say!("sent SIGUSR2 to {pid}: the upgrade's progress is in its log and metrics")
            }
            Err(e) => fail(&format!("cannot signal {pid}: {e}"), 1),
        }
        return;
    }
    let token = a.token_file.as_ref().map(|p| {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| fail(&format!("{}: {e}", p.display()), 2))
            .trim()
            .to_string()
    });
    let call = |m: &str| {
        admin_call(a.admin, m, "/upgrade", token.as_deref())
            .unwrap_or_else(|e| fail(&format!("admin API at {}: {e}", a.admin), 1))
    };
    let (status, body) = call("POST");
    if status != 202 {
        fail(&format!("upgrade refused ({status}): {}", body.trim()), 1);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(a.timeout);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
        // The old process answers until it exits; the new one answers on the same port.
        let Ok((200, body)) = admin_call(a.admin, "GET", "/upgrade", token.as_deref()) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let state = v["state"].as_str().unwrap_or("?").to_string();
        if body != last {
            say!("{}", body.trim());
            last = body.clone();
        }
        match state.as_str() {
            "done" => return,
            "failed" => fail(&format!("upgrade failed: {}", v["error"]), 1),
            // The new process answers `idle` (it has run no upgrade itself): the old one
            // is gone, so the hand-over completed.
            "idle" => return say!("the new process answers; the old one has left"),
            _ => {}
        }
    }
    fail(
        "the upgrade did not finish in time (see the server's log)",
        1,
    );
}

fn main() {
    let args = match holdfast::config::merge_config_file(std::env::args().collect()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("holdfast: {msg}");
            std::process::exit(2);
        }
    };
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Tune(t) => run_tune(t),
        Command::Plan(a) => run_plan(a),
        Command::Upgrade(a) => run_upgrade(a),
        Command::Serve(cfg) => {
            holdfast::logging::init(cfg.log_format);
            if let Err(msg) = holdfast::server::serve(*cfg) {
                tracing::error!("{msg}");
                holdfast::logging::flush();
                eprintln!("holdfast: {msg}");
                std::process::exit(1);
            }
        }
    }
}
