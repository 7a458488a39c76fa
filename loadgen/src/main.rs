//! `holdfast-loadgen`: the bundled io_uring WebSocket load generator.
//!
//! Scenarios: `hold` (ramp to N connections, hold them answering pings, close cleanly),
//! `echo` (closed or open loop round trips with HDR percentiles), `storm` (every client loses
//! its connection at once and reconnects with backoff), `fanout` (S subscribers over T
//! topics, a publisher at rate P; publish → delivery latency, losses, duplicates, order).

use clap::Parser;
use mimalloc::MiMalloc;

use holdfast_loadgen::cli::{Cli, Scenario};
use holdfast_loadgen::scenario;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Hold(a) => scenario::hold::run(a),
        Scenario::Echo(a) => scenario::echo::run(a),
        Scenario::Storm(a) => scenario::storm::run(a),
        Scenario::Fanout(a) => scenario::fanout::run(a),
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
