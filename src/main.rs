//! `holdfast`: the server, its tuning and planning commands.
use clap::{Parser, Subcommand};
use holdfast::config::ServeConfig;
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
            print!(
                "{}",
                if json {
                    tune::check_json(&c) + "\n"
                } else {
                    tune::render_check(&c)
                }
            );
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
                        println!("{verb:<10} {k} = {want}   (was {old})");
                    }
                    Action::Kept => println!("{:<10} {k} (already at or beyond {want})", "kept"),
                    Action::Absent => println!("{:<10} {k} (not on this kernel)", "absent"),
                }
            }
            if !dry_run {
                println!(
                    "\nsaved the replaced values to {}; undo with: holdfast tune revert {}",
                    snap.display(),
                    snap.display()
                );
            }
        }
        Tune::Revert { snapshot } => {
            let restored = tune::revert(&snapshot).unwrap_or_else(|e| fail(&e, 1));
            for (k, v) in restored {
                println!("restored {k} = {v}");
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
        Ok(p) => println!("{}", holdfast::plan::render(&a, &p, mem, cores)),
        Err(e) => fail(&e, 2),
    }
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
