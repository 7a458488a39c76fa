//! `holdfast-bench`: the one-command density and performance report, and the peer servers it
//! compares holdfast with.

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

use holdfast_bench::report::{self, ReportArgs, Section};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Holdfast benchmarks: density and performance reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bytes per idle connection (server userspace and kernel) at several N, with each
    /// ramp's upgrades/s and server CPU per upgrade, holdfast beside the peers.
    Density(ReportArgs),
    /// Echo messages per server-CPU-second (100 and 1,000 connections) and server CPU per
    /// upgrade, each server pinned to its own core, beside the peers.
    Echo(ReportArgs),
    /// Pub/sub fan-out: deliveries/s and publish → delivery latency, beside the
    /// tokio-tungstenite broadcast peer.
    Fanout(ReportArgs),
    /// Reconnect storm: time to full recovery.
    Storm(ReportArgs),
    /// TLS: server CPU per connection set up with full and with resumed handshakes (and
    /// plain beside them), one pinned worker.
    Tls(ReportArgs),
    /// Three nodes on a Redis backplane (a redis-server the report starts): fan-out rates
    /// stepped up until delivery falls behind, one node beside them, and the time a drained
    /// node's clients take to resume on another node.
    Backplane(ReportArgs),
    /// The transport ladder: bytes per idle subscriber and fan-out cost on WebSocket,
    /// server-sent events and long-poll, each on a fresh holdfast.
    Transports(ReportArgs),
    /// A live upgrade (every connection handed to a new process) beside the same node
    /// restarted with a drain: time, connections and messages lost, memory, reconnects.
    Handover(ReportArgs),
    /// Every section above but the backplane, one report.
    All(ReportArgs),
    /// Run a peer server (tokio-tungstenite, fastwebsockets, broadcast) by hand.
    Peer(holdfast_bench::peers::PeerArgs),
    /// An independent echo client (tokio, epoll; no code shared with the loadgen) that
    /// reports msgs per server-CPU-s: the echo section runs it beside the loadgen.
    EchoClient(holdfast_bench::meter::MeterArgs),
    /// The echo floor: holdfast's io layer (its rings, buffers, accepts and sends) with only
    /// the upgrade and the framing above it, to measure beside holdfast and uWebSockets how
    /// much of the CPU per echo is a server's own and how much the kernel's.
    EchoFloor(holdfast_bench::floor::FloorArgs),
    /// An independent long-poll client (tokio, epoll, its own publisher; no code shared with
    /// the loadgen) that reports deliveries, latency and deliveries per server-CPU-s.
    PollClient(holdfast_bench::pollmeter::PollMeterArgs),
    /// An independent fan-out client (tokio, epoll, its own publisher; no code shared with
    /// the loadgen) that reports deliveries, latency and deliveries per server-CPU-s.
    FanoutClient(holdfast_bench::fanmeter::FanMeterArgs),
    /// An independent upgrade and close client (tokio, epoll, ws:// or wss:// with its own
    /// rustls client; no code shared with the loadgen) that reports server CPU per upgrade
    /// and per close: the echo and TLS sections run it beside the loadgen's ramps.
    UpgradeClient(holdfast_bench::upmeter::UpMeterArgs),
    /// (internal) hold N connections from one source address; used by a test.
    #[command(hide = true)]
    HoldClient(holdfast_bench::hold::HoldArgs),
}

fn main() {
    let (section, args) = match Cli::parse().command {
        Cmd::Peer(args) => {
            if let Err(e) = holdfast_bench::peers::run(args) {
                eprintln!("holdfast-bench peer: {e}");
                std::process::exit(1);
            }
            return;
        }
        Cmd::HoldClient(args) => return holdfast_bench::hold::run(args),
        Cmd::EchoClient(args) => {
            if let Err(e) = holdfast_bench::meter::run(&args) {
                eprintln!("holdfast-bench echo-client: {e}");
                std::process::exit(1);
            }
            return;
        }
        Cmd::EchoFloor(args) => {
            if let Err(e) = holdfast_bench::floor::run(&args) {
                eprintln!("holdfast-bench echo-floor: {e}");
                std::process::exit(1);
            }
            return;
        }
        Cmd::FanoutClient(args) => {
            if let Err(e) = holdfast_bench::fanmeter::run(&args) {
                eprintln!("holdfast-bench fanout-client: {e}");
                std::process::exit(1);
            }
            return;
        }
        Cmd::UpgradeClient(args) => {
            if let Err(e) = holdfast_bench::upmeter::run(&args) {
                eprintln!("holdfast-bench upgrade-client: {e}");
                std::process::exit(1);
            }
            return;
        }
        Cmd::PollClient(args) => {
            if let Err(e) = holdfast_bench::pollmeter::run(&args) {
                eprintln!("holdfast-bench poll-client: {e}");
                std::process::exit(1);
            }
            return;
        }
        Cmd::Density(a) => (Section::Density, a),
        Cmd::Echo(a) => (Section::Echo, a),
        Cmd::Fanout(a) => (Section::Fanout, a),
        Cmd::Storm(a) => (Section::Storm, a),
        Cmd::Tls(a) => (Section::Tls, a),
        Cmd::Backplane(a) => (Section::Backplane, a),
        Cmd::Transports(a) => (Section::Transports, a),
        Cmd::Handover(a) => (Section::Handover, a),
        Cmd::All(a) => (Section::All, a),
    };
    if let Err(e) = report::run(section, &args) {
        eprintln!("holdfast-bench: {e}");
        std::process::exit(1);
    }
}
