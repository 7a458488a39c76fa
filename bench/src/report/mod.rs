//! The one-command density and performance report: `holdfast-bench density|echo|fanout|
//! storm|all [--quick] [--url URL] [--tune PROFILE]`.
//!
//! It starts holdfast and the peer servers itself (or measures a server at `--url`), drives
//! them with `holdfast-loadgen`, and writes `<out>/<date>-<name>.json`, a Markdown report
//! beside it and SVG charts. Nothing system-wide changes unless `--tune` is given: then the
//! profile is applied with `holdfast tune apply` (which snapshots what it replaces) and
//! reverted at the end, whatever happened.

mod backplane;
mod charts;
mod handover;
mod markdown;
pub mod procs;
mod rounds;
mod sections;
mod transports;
pub mod uws;

/// The flags of the report's eager fan-out rows (`--fanout-pace-interval 0`).
pub use sections::EAGER_SENDS;
use std::path::PathBuf;

use serde_json::{json, Value};

use procs::Kind;

/// Which sections to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Bytes per idle connection at several N, with the ramp's upgrade rate and CPU.
    Density,
    /// Echo efficiency and CPU per upgrade against the peers, pinned.
    Echo,
    /// Pub/sub fan-out against the broadcast peer.
    Fanout,
    /// Reconnect storm recovery.
    Storm,
    /// TLS handshake costs, full and resumed.
    Tls,
    /// Three nodes on a Redis backplane (not part of `all`: it needs redis-server).
    Backplane,
    /// WebSocket, server-sent events and long-poll side by side: density and fan-out.
    Transports,
    /// A live upgrade (connections handed to a new process) beside a drain restart.
    Handover,
    /// Everything.
    All,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Self::Density => "density",
            Self::Echo => "echo",
            Self::Fanout => "fanout",
            Self::Storm => "storm",
            Self::Tls => "tls",
            Self::Backplane => "backplane",
            Self::Transports => "transports",
            Self::Handover => "handover",
            Self::All => "all",
        }
    }
}

/// Options shared by every report section.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Small and fast (well under two minutes): the shape of the full report, for CI.
    #[arg(long)]
    pub quick: bool,
    /// Measure the holdfast server at this base URL (ws://host:port) instead of starting one;
    /// peers are skipped.
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: its admin address (fan-out publishes there).
    #[arg(long)]
    pub admin: Option<String>,
    /// With --url: its PID, for CPU time and memory figures.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Apply this tuning profile (tuning/<profile>.conf) for the run and revert it after.
    #[arg(long)]
    pub tune: Option<String>,
    /// Peers to compare (default: all available; node-ws only when node and npm are,
    /// uwebsockets only with --uws-src).
    #[arg(long, value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// A uWebSockets source directory (with uSockets inside; `../shared/peers/uWebSockets`
    /// holds a snapshot): the bench builds its uwebsockets peer from it with gcc/g++.
    /// Default: $HOLDFAST_UWS_SRC. Without either, that peer is skipped with the reason.
    #[arg(long)]
    pub uws_src: Option<PathBuf>,
    /// A BoringSSL source directory: the uwebsockets peer's TLS variant is built against it
    /// (with cmake, cached), as uSockets' Makefile prefers (`WITH_BORINGSSL=1`). Default:
    /// the system's OpenSSL (libssl-dev).
    #[arg(long)]
    pub uws_boringssl: Option<PathBuf>,
    /// Connection counts for holdfast's density steps (default: 15k,100k,1M,2M — a step the
    /// machine's free memory cannot take is skipped with the reason; --quick: 2k). Peers
    /// hold the smallest of them (default 15k), within the descriptor limit.
    #[arg(long, value_delimiter = ',')]
    pub connections: Option<Vec<usize>>,
    /// Fan-out runs per server, case and placement, interleaved, each on a fresh server; a
    /// row is judged on the medians of its rounds (default 3; --quick: 1).
    #[arg(long)]
    pub fanout_rounds: Option<usize>,
    /// Directory for the results (default: bench/results; with --quick, a scratch
    /// directory outside the source tree, since a quick run is not a result to keep).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Result name (default: report-<section>[-quick]).
    #[arg(long)]
    pub name: Option<String>,
}

/// What a run does, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    quick: bool,
    url: Option<String>,
    admin: Option<String>,
    server_pid: Option<u32>,
    peers: Vec<Kind>,
    densities: Vec<usize>,
    tls_densities: Vec<usize>,
    tls_rounds: usize,
    peer_density: usize,
    ramp_rate: f64,
    hold_seconds: f64,
    echo_connections: Vec<usize>,
    upgrade_connections: usize,
    /// Ramps (each on a fresh server) per server for the upgrade and close costs: one
    /// ramp's figure moves ±15% on this machine, a close's by up to ±30%: eleven rounds.
    upgrade_rounds: usize,
    /// Echo runs (each on fresh servers, both clients) per server and connection count.
    echo_rounds: usize,
    warmup: f64,
    measure_seconds: f64,
    fanout_cases: Vec<(usize, usize, usize)>,
    /// Fan-out runs per server, case and placement (interleaved, each on a fresh server):
    /// a row is judged on the medians of its rounds.
    fanout_rounds: usize,
    storm_connections: usize,
    /// Storms per step (interleaved, each on a fresh server); a row is the median round.
    storm_rounds: usize,
    backplane_subscribers: usize,
    backplane_rates: Vec<usize>,
    backplane_resume: usize,
    transport_density: usize,
    transport_fanout: Vec<(usize, usize, usize)>,
    handover_connections: usize,
    skipped_peers: Vec<(String, String)>,
}

impl Plan {
    fn new(a: &ReportArgs) -> Result<Self, String> {
        let mut skipped = Vec::new();
        let wanted: Vec<Kind> = match &a.peers {
            Some(list) => list
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| Kind::parse(s))
                .collect::<Result<_, _>>()?,
            None => vec![
                Kind::TokioTungstenite,
                Kind::Fastwebsockets,
                Kind::NodeWs,
                Kind::Broadcast,
                Kind::Uws,
                Kind::HoldfastTls,
            ],
        };
        let uws_src = a
            .uws_src
            .clone()
            .or_else(|| std::env::var_os("HOLDFAST_UWS_SRC").map(PathBuf::from));
        let mut peers = Vec::new();
        for k in wanted {
            if matches!(k, Kind::Uws | Kind::UwsTls) {
                let Some(src) = &uws_src else {
                    let why = "no --uws-src (or HOLDFAST_UWS_SRC) given: its source is not on a \
                               package registry";
                    skipped.push((k.name().to_string(), why.into()));
                    continue;
                };
                if k == Kind::Uws {
                    if let Err(why) = uws::prepare(src) {
                        skipped.push((k.name().to_string(), why));
                        continue;
                    }
                }
                // uWebSockets stands in the TLS section too, built with OpenSSL (or BoringSSL).
                if !peers.contains(&Kind::UwsTls) {
                    match uws::prepare_tls(src, a.uws_boringssl.as_deref()) {
                        Ok(_) => peers.push(Kind::UwsTls),
                        Err(why) => skipped.push((Kind::UwsTls.name().to_string(), why)),
                    }
                }
                if k == Kind::UwsTls {
                    continue;
                }
            }
            if k == Kind::NodeWs {
                // A quick run never installs anything; a full one may `npm install ws`.
                if let Err(why) = procs::node_ready(!a.quick) {
                    skipped.push((k.name().to_string(), why));
                    continue;
                }
            }
            peers.push(k);
        }
        let q = a.quick;
        Ok(Self {
            quick: q,
            url: a.url.clone(),
            admin: a.admin.clone(),
            server_pid: a.server_pid,
            peers,
            densities: a.connections.clone().unwrap_or(if q {
                vec![2_000]
            } else {
                // 2M runs when memory allows (the step is skipped, with the reason, when not).
                vec![15_000, 100_000, 1_000_000, 2_000_000]
            }),
            tls_densities: if q {
                vec![1_000]
            } else {
                vec![10_000, 100_000]
            },
            tls_rounds: if q { 1 } else { 3 },
            // Peers hold as many as holdfast's smallest step (so the first step compares
            // like with like), within the process's descriptor limit.
            peer_density: match &a.connections {
                Some(c) if !c.is_empty() => c.iter().copied().min().unwrap_or(10_000),
                _ if q => 1_000,
                _ => 15_000,
            },
            ramp_rate: if q { 20_000.0 } else { 40_000.0 },
            hold_seconds: if q { 2.5 } else { 6.0 },
            echo_connections: vec![100, 1000],
            upgrade_connections: if q { 1_000 } else { 10_000 },
            upgrade_rounds: if q { 1 } else { 11 },
            echo_rounds: if q { 1 } else { 3 },
            warmup: if q { 0.2 } else { 1.0 },
            measure_seconds: if q { 0.5 } else { 10.0 },
            fanout_cases: if q {
                vec![(500, 1, 20), (200, 10, 100)]
            } else {
                // The first two: the rates uWebSockets sustains to 18k subscribers.
                vec![
                    (18_000, 1, 60),
                    (18_000, 1, 120),
                    (10_000, 1, 10),
                    (10_000, 1, 100),
                    (10_000, 1_000, 2_000),
                ]
            },
            fanout_rounds: a.fanout_rounds.unwrap_or(if q { 1 } else { 3 }).max(1),
            storm_connections: if q { 2_000 } else { 50_000 },
            // Two in quick, so that the median-of-rounds path is exercised.
            storm_rounds: if q { 2 } else { 7 },
            backplane_subscribers: if q { 600 } else { 30_000 },
            backplane_rates: if q {
                vec![20]
            } else {
                vec![15, 30, 60, 120, 240, 480]
            },
            backplane_resume: if q { 200 } else { 5_000 },
            transport_density: if q { 1_000 } else { 100_000 },
            transport_fanout: if q {
                vec![(300, 1, 10)]
            } else {
                vec![(10_000, 1, 10), (10_000, 1, 50)]
            },
            handover_connections: match (&a.connections, q) {
                (Some(c), _) if c.len() == 1 => c[0],
                (_, true) => 2_000,
                _ => 1_000_000,
            },
            skipped_peers: skipped,
        })
    }

    /// Server and loadgen CPUs for pinned runs: the last CPU for the server, the first for
    /// the load generator (None on one CPU).
    fn pinning(&self) -> (Option<String>, Option<String>) {
        let allowed = holdfast::topology::allowed_cpus();
        match (allowed.first(), allowed.last()) {
            (Some(a), Some(b)) if a != b => (Some(b.to_string()), Some(a.to_string())),
            _ => (None, None),
        }
    }
}

/// Restores the sysctls a `--tune` run changed, on every way out.
struct Tuned(Option<PathBuf>);

impl Tuned {
    fn apply(profile: Option<&str>) -> Result<Self, String> {
        let Some(p) = profile else {
            return Ok(Self(None));
        };
        let snap =
            std::env::temp_dir().join(format!("holdfast-report-{}.snapshot", std::process::id()));
        let st = std::process::Command::new(procs::bin_dir().join("holdfast"))
            .args(["tune", "apply", "--profile", p, "--snapshot"])
            .arg(&snap)
            .status()
            .map_err(|e| format!("holdfast tune apply: {e}"))?;
        if !st.success() {
            return Err(format!("holdfast tune apply --profile {p} failed"));
        }
        // Interrupted (Ctrl-C, SIGTERM): stop the children and put the sysctls back before
        // exiting, as the normal path does.
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(|e| format!("signal handler: {e}"))?;
        let path = snap.clone();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                procs::kill_children();
                revert(&path);
                std::process::exit(130);
            }
        });
        Ok(Self(Some(snap)))
    }
}

fn revert(snap: &std::path::Path) {
    let _ = std::process::Command::new(procs::bin_dir().join("holdfast"))
        .args(["tune", "revert"])
        .arg(snap)
        .status();
}

impl Drop for Tuned {
    fn drop(&mut self) {
        if let Some(snap) = self.0.take() {
            revert(&snap);
        }
    }
}

/// Run `section`; returns the path of the JSON written.
pub fn run(section: Section, a: &ReportArgs) -> Result<PathBuf, String> {
    let plan = Plan::new(a)?;
    let _tuned = Tuned::apply(a.tune.as_deref())?;
    let started = std::time::Instant::now();
    let want = |s: Section| section == s || section == Section::All;
    let mut report = json!({
        "report": section.name(),
        "quick": plan.quick,
        "date": crate::today(),
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": crate::proc::machine(),
        "target": plan.url.clone().unwrap_or_else(|| "started by the report".into()),
        "tuning_profile": a.tune,
        "peers": plan.peers.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "peers_skipped": plan.skipped_peers.iter().map(|(k, w)| json!({"peer": k, "why": w})).collect::<Vec<_>>(),
    });
    type Run = fn(&Plan) -> Result<Value, String>;
    let sections: [(Section, Run); 8] = [
        (Section::Density, sections::density),
        (Section::Echo, sections::echo),
        (Section::Tls, sections::tls),
        (Section::Fanout, sections::fanout),
        (Section::Storm, sections::storm),
        (Section::Transports, transports::transports),
        (Section::Handover, handover::handover),
        (Section::Backplane, backplane::backplane),
    ];
    for (s, f) in sections {
        if want(s) && (s != Section::Backplane || section == Section::Backplane) {
            report[s.name()] = f(&plan)?;
        }
    }
    report["elapsed_seconds"] = json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    let name = a.name.clone().unwrap_or_else(|| {
        format!(
            "report-{}{}",
            section.name(),
            if plan.quick { "-quick" } else { "" }
        )
    });
    let stem = format!("{}-{name}", crate::today());
    let out = a.out.clone().unwrap_or_else(|| {
        if a.quick {
            std::env::temp_dir().join("holdfast-bench-quick")
        } else {
            PathBuf::from("bench/results")
        }
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let charts = charts::draw(&report, &out, &stem)?;
    report["charts"] = json!(charts);
    let json_path = out.join(format!("{stem}.json"));
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md = markdown::render(&report);
    let md_path = out.join(format!("{stem}.md"));
    std::fs::write(&md_path, md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(json_path)
}
