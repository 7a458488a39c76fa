//! `holdfast-bench`: density and performance reports.

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about = "Holdfast benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bytes per idle connection (server userspace and kernel) at several N.
    Density(holdfast_bench::density::DensityArgs),
    /// Closed-loop echo: round-trip percentiles and server CPU per message.
    Echo(holdfast_bench::echo::EchoArgs),
    /// Run a peer server (tokio-tungstenite, ...) for side-by-side runs with the loadgen.
    Peer(holdfast_bench::peers::PeerArgs),
    /// (internal) hold N connections from one source address; used by `density`.
    #[command(hide = true)]
    HoldClient(holdfast_bench::hold::HoldArgs),
}

fn main() {
    match Cli::parse().command {
        Cmd::Peer(args) => {
            if let Err(e) = holdfast_bench::peers::run(args) {
                eprintln!("holdfast-bench peer: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Density(args) => {
            let out = args.out.clone();
            let label = args.label.clone();
            match holdfast_bench::density::run(args) {
                Ok(report) => {
                    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                    println!("{text}");
                    if let Some(dir) = out {
                        let date = holdfast_bench::today();
                        let path = match &label {
                            Some(l) => dir.join(format!("{date}-density-{l}.json")),
                            None => dir.join(format!("{date}-density.json")),
                        };
                        if let Err(e) = std::fs::write(&path, text) {
                            eprintln!("cannot write {}: {e}", path.display());
                            std::process::exit(1);
                        }
                        eprintln!("wrote {}", path.display());
                    }
                }
                Err(e) => {
                    eprintln!("density: {e}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::HoldClient(args) => holdfast_bench::hold::run(args),
        Cmd::Echo(args) => match holdfast_bench::echo::run(args) {
            Ok(report) => println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            ),
            Err(e) => {
                eprintln!("echo: {e}");
                std::process::exit(1);
            }
        },
    }
}
