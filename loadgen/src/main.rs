//! `holdfast-loadgen`: the bundled io_uring WebSocket load generator.
//!
//! Scenarios: `hold` (ramp to N connections, hold them answering pings, close cleanly),
//! `echo` (closed or open loop round trips with HDR percentiles), `storm` (every client loses
//! its connection at once and reconnects with backoff), `fanout` (S subscribers over T
//! topics, a publisher at rate P; publish → delivery latency, losses, duplicates, order).

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use mimalloc::MiMalloc;
use serde_json::{json, Value};

use holdfast_loadgen::engine::{self, Backoff, Mode, Output};
use holdfast_loadgen::report::{hist_json, machine, proc_cpu_seconds};
use holdfast_loadgen::stats::{self, Stats};
use holdfast_loadgen::target;

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
    /// C connections exchanging B-byte messages: closed loop, or open loop at a target rate
    /// (latency from the intended send time, so it is free of coordinated omission).
    Echo(EchoArgs),
    /// Hold N, then every client loses its connection at once (the loadgen cuts them, the
    /// server drains, or something external restarts it) and reconnects with exponential
    /// backoff and full jitter; reports the time to full recovery.
    Storm(StormArgs),
    /// S subscribers over T topics of a holdfast pub/sub endpoint and a publisher at rate P
    /// (admin API or a client connection): publish → delivery latency (HDR), deliveries/s,
    /// losses, duplicates and ordering violations from sequence numbers, gaps.
    Fanout(FanoutArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PublishVia {
    /// `POST /publish` to --admin (binary payloads).
    Admin,
    /// `publish` control messages over a WebSocket to the first --url (text payloads; the
    /// server needs --client-publish).
    Ws,
}

#[derive(Debug, Clone, Args)]
struct FanoutArgs {
    #[command(flatten)]
    c: Common,
    /// Topics; connection i subscribes to one of them (`?topics=<prefix><k>` is added to
    /// each URL).
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Topic name prefix.
    #[arg(long, default_value = "fanout.")]
    topic_prefix: String,
    /// Messages published per second, over all topics (in turn).
    #[arg(long, default_value_t = 10.0)]
    publish_rate: f64,
    /// Payload bytes per message (at least 8: the publish stamp).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// How to publish.
    #[arg(long, value_enum, default_value_t = PublishVia::Admin)]
    publish_via: PublishVia,
    /// The server's admin address (host:port) for --publish-via admin.
    #[arg(long)]
    admin: Option<String>,
    /// Seconds of publishing before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds to wait for deliveries still in flight after the publisher stops.
    #[arg(long, default_value_t = 10.0)]
    settle: f64,
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// Target, e.g. ws://127.0.0.1:8080/echo; repeat for several targets (connections take
    /// them in turn).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Connections to open.
    #[arg(long)]
    connections: usize,
    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Connect + upgrade attempts in flight at once during the ramp.
    #[arg(long, default_value_t = 2048)]
    concurrency: usize,
    /// Seconds the scenario runs after the ramp (hold: holding; echo: measuring; storm: the
    /// longest wait for recovery after the event).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds after which the run ends whatever happened (default: ramp time × 2 +
    /// duration + 60).
    #[arg(long)]
    hard_timeout: Option<f64>,
    /// Threads (default: one per CPU). Each drives several rings when the connections need
    /// more file-table slots than one ring holds.
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
    /// Also send our own Ping on every open connection this often (seconds); pongs are
    /// counted.
    #[arg(long)]
    ping_interval: Option<f64>,
    /// How connections read: `poll` (a multishot poll, then a receive when readable; 608 B
    /// less kernel memory per idle connection) or `recv` (a multishot receive each).
    #[arg(long, value_enum, default_value_t = ReadModeArg::Poll)]
    read_mode: ReadModeArg,
    /// The server's PID: its CPU time is reported beside the figures (messages per
    /// server-CPU-second, server CPU-µs per upgrade).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
struct HoldArgs {
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Clone, Args)]
struct EchoArgs {
    #[command(flatten)]
    c: Common,
    /// Payload bytes per message (at least 8: they carry the send stamp).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Open loop: messages per second over all connections. Absent: closed loop (one
    /// message in flight per connection).
    #[arg(long)]
    message_rate: Option<f64>,
    /// Seconds of traffic before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReadModeArg {
    /// Multishot poll + single-shot receive on readiness.
    Poll,
    /// Multishot receive into provided buffers.
    Recv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Cause {
    /// The loadgen drops every connection at once (no closing handshake).
    Cut,
    /// `POST /drain` to the server's admin API (--admin): it closes every connection with
    /// 1012 over its drain window, then exits; something must start it again.
    Drain,
    /// Wait for the server to drop the connections (a restart done by hand or a harness).
    External,
}

#[derive(Debug, Clone, Args)]
struct StormArgs {
    #[command(flatten)]
    c: Common,
    /// What takes the connections away.
    #[arg(long, value_enum, default_value_t = Cause::Cut)]
    cause: Cause,
    /// Admin address of the server for `--cause drain` (host:port).
    #[arg(long)]
    admin: Option<String>,
    /// Seconds to hold before the event.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// First backoff ceiling, ms.
    #[arg(long, default_value_t = 100)]
    base_ms: u64,
    /// Largest backoff ceiling, ms.
    #[arg(long, default_value_t = 5000)]
    cap_ms: u64,
    /// Attempts per client before it gives up.
    #[arg(long, default_value_t = 12)]
    max_attempts: u32,
    /// Every client waits exactly the ceiling: shows the thundering herd.
    #[arg(long)]
    no_jitter: bool,
    /// Ignore the server's `reconnect_after_ms` hint in its drain close reason.
    #[arg(long)]
    ignore_hint: bool,
}

/// A running set of engine threads.
struct Run {
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Result<Output, String>>>,
    engines: usize,
    threads: usize,
    started: Instant,
    series: Vec<Value>,
    samples: Vec<(f64, u64)>,
    progress: Option<indicatif::ProgressBar>,
    last_line: f64,
    urls: Vec<String>,
    /// SIGINT/SIGTERM: end the scenario now, close and report (a second one exits at once).
    interrupted: Arc<AtomicBool>,
}

fn launch(c: &Common, mode: Mode) -> Result<Run, String> {
    let targets: Vec<target::Target> = c
        .urls
        .iter()
        .map(|u| target::parse_url(u))
        .collect::<Result<_, _>>()?;
    let targets: Arc<[target::Target]> = targets.into();
    let sources = match &c.sources {
        Some(s) => target::parse_sources(s)?,
        None => target::default_sources(&targets[0].addr),
    };
    if let Mode::Echo { size, .. } = mode {
        if size < 8 {
            return Err("--size must be at least 8 (the send stamp)".into());
        }
    }
    let table = holdfast::reactor::nofile_soft_limit().min(1 << 20) as usize;
    let per_ring = table.saturating_sub(64).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = c.workers.unwrap_or(cpus).max(1);
    let engines = threads.max(c.connections.div_ceil(per_ring)).max(1);
    let stats = Arc::new(Stats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut per_thread: Vec<Vec<engine::EngineSpec>> = (0..threads).map(|_| Vec::new()).collect();
    for id in 0..engines {
        let quota = c.connections / engines + usize::from(id < c.connections % engines);
        let mine: Vec<_> = sources
            .iter()
            .copied()
            .skip(id % sources.len())
            .step_by(engines.min(sources.len()))
            .collect();
        let mode = match mode {
            Mode::Echo {
                size,
                rate: Some(r),
            } => Mode::Echo {
                size,
                rate: Some(r * quota as f64 / c.connections.max(1) as f64),
            },
            ref m => m.clone(),
        };
        per_thread[id % threads].push(engine::EngineSpec {
            id,
            targets: targets.clone(),
            sources: if mine.is_empty() {
                sources.clone()
            } else {
                mine
            },
            quota,
            rate: c.rate / engines as f64,
            concurrency: (c.concurrency / engines).max(1),
            table: table as u32,
            stats: stats.clone(),
            stop: stop.clone(),
            handshake_timeout: Duration::from_secs_f64(c.handshake_timeout),
            close_timeout: Duration::from_secs_f64(c.close_timeout),
            mode,
            ping_interval: c.ping_interval.map(Duration::from_secs_f64),
            read_mode: match c.read_mode {
                ReadModeArg::Poll => engine::ReadMode::Poll,
                ReadModeArg::Recv => engine::ReadMode::Recv,
            },
        });
    }
    let mut handles = Vec::new();
    for (t, specs) in per_thread.into_iter().enumerate() {
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || engine::run_thread(specs, Some(t % cpus)))
                .map_err(|e| e.to_string())?,
        );
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal, with the flag already set, exits at once (status 130).
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupted.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
        signal_hook::flag::register(sig, interrupted.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let progress = std::io::stdout().is_terminal().then(|| {
        let p = indicatif::ProgressBar::new_spinner();
        p.enable_steady_tick(Duration::from_millis(200));
        p
    });
    Ok(Run {
        stats,
        stop,
        handles,
        engines,
        threads,
        started: Instant::now(),
        series: Vec::new(),
        samples: Vec::new(),
        progress,
        last_line: 0.0,
        urls: c.urls.clone(),
        interrupted,
    })
}

impl Run {
    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The run goes on: not interrupted, not past the hard timeout.
    fn live(&self, hard: f64) -> bool {
        !self.interrupted.load(Ordering::Relaxed) && self.t() < hard
    }

    /// Sleep 100 ms, sample the counters, and show progress (a live line on a terminal, a
    /// printed line per second otherwise).
    fn step(&mut self, what: &str) {
        std::thread::sleep(Duration::from_millis(100));
        let s = &self.stats;
        let t = self.t();
        let est = s.established.load(Ordering::Relaxed);
        self.samples.push((t, est));
        let line = format!(
            "{what:>8} t={t:>5.1}s established={est} open={} failed={} pings={} msgs={}",
            s.open.load(Ordering::Relaxed),
            s.failed(),
            s.pings.load(Ordering::Relaxed),
            s.messages.load(Ordering::Relaxed),
        );
        if let Some(p) = &self.progress {
            p.set_message(line.clone());
        }
        if t - self.last_line >= 1.0 {
            self.last_line = t;
            self.series.push(json!({
                "t": (t * 10.0).round() / 10.0,
                "established": est,
                "open": s.open.load(Ordering::Relaxed),
                "failed": s.failed(),
                "lost": s.lost.load(Ordering::Relaxed),
                "messages": s.messages.load(Ordering::Relaxed),
            }));
            if self.progress.is_none() {
                println!("{line}");
            }
        }
    }

    /// Ramp until every connection is established or has failed (or `deadline` passes).
    /// Returns the ramp time.
    fn ramp(&mut self, n: usize, deadline: f64) -> Option<f64> {
        loop {
            self.step("ramp");
            let done = self.stats.established.load(Ordering::Relaxed) + self.stats.failed();
            if done as usize >= n {
                return Some(self.t());
            }
            if !self.live(deadline) {
                return None;
            }
        }
    }

    /// Warm up for `warmup` seconds, then start the measurement (stamps from now on are
    /// recorded). Returns the server's and the loadgen's CPU seconds at its start.
    fn start_measuring(
        &mut self,
        warmup: f64,
        hard: f64,
        server_pid: Option<u32>,
    ) -> (Option<f64>, Option<f64>) {
        let warm_end = self.t() + warmup;
        while self.t() < warm_end && self.live(hard) {
            self.step("warmup");
        }
        let s = &self.stats;
        s.measure_from_ns.store(s.now_ns(), Ordering::Relaxed);
        s.control.store(stats::MEASURE, Ordering::Relaxed);
        (server_cpu(server_pid), proc_cpu_seconds(std::process::id()))
    }

    /// Highest upgrades/s over any 1-second window from `from` on (over the whole span when
    /// it is shorter than a second).
    fn peak_rate(&self, from: f64) -> f64 {
        let s: Vec<_> = self.samples.iter().filter(|(t, _)| *t >= from).collect();
        let (Some(first), Some(last)) = (s.first(), s.last()) else {
            return 0.0;
        };
        let window = (last.0 - first.0).min(1.0);
        if window <= 0.0 {
            return 0.0;
        }
        let mut best = 0.0f64;
        let mut j = 0;
        for i in 0..s.len() {
            while j < s.len() && s[j].0 - s[i].0 < window - 1e-9 {
                j += 1;
            }
            if j < s.len() {
                let dt = s[j].0 - s[i].0;
                best = best.max((s[j].1 - s[i].1) as f64 / dt);
            }
        }
        best
    }

    /// Stop the engines (clean closes) and merge their histograms.
    fn finish(mut self) -> Result<(Output, Value), String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = &self.progress {
            p.set_message("closing");
        }
        let mut out = Output::new()?;
        for h in std::mem::take(&mut self.handles) {
            match h.join() {
                Ok(Ok(part)) => out.add(&part)?,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("an engine thread panicked".into()),
            }
        }
        if let Some(p) = self.progress.take() {
            p.finish_and_clear();
        }
        let s = &self.stats;
        let common = json!({
            "command": std::env::args().collect::<Vec<_>>(),
            "machine": machine(),
            "targets": self.urls,
            "engines": self.engines,
            "threads": self.threads,
            "established": s.established.load(Ordering::Relaxed),
            "connect_upgrade_latency_us": hist_json(&out.connect_us, 1.0),
            "failures": s.failures(),
            "failed_total": s.failed(),
            "closes_and_statuses": s.keyed(),
            "pings_answered": s.pings.load(Ordering::Relaxed),
            "pings_sent": s.pings_sent.load(Ordering::Relaxed),
            "pongs_received": s.pongs.load(Ordering::Relaxed),
            "messages_received": s.messages.load(Ordering::Relaxed),
            "series": self.series,
            "loadgen_cpu_seconds_total": proc_cpu_seconds(std::process::id()),
            "interrupted": self.interrupted.load(Ordering::Relaxed),
        });
        Ok((out, common))
    }
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn write_json(path: Option<&std::path::Path>, v: &Value) -> Result<(), String> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(v).unwrap_or_default())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn failures_line(s: &Stats) -> String {
    let f: Vec<String> = s
        .failures()
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if f.is_empty() {
        "none".into()
    } else {
        f.join(", ")
    }
}

fn pct_line(v: &Value, unit: &str) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} {unit}",
        v["p50"], v["p90"], v["p99"], v["p99.9"], v["max"]
    )
}

fn hard_timeout(c: &Common, duration: f64) -> f64 {
    c.hard_timeout
        .unwrap_or(c.connections as f64 / c.rate.max(1.0) * 2.0 + duration + 60.0)
}

fn server_cpu(pid: Option<u32>) -> Option<f64> {
    pid.and_then(proc_cpu_seconds)
}

fn hold(a: HoldArgs) -> Result<bool, String> {
    let c = &a.c;
    let duration = c.duration.unwrap_or(10.0);
    let hard = hard_timeout(c, duration);
    let cpu0 = server_cpu(c.server_pid);
    let self0 = proc_cpu_seconds(std::process::id());
    let mut run = launch(c, Mode::Hold)?;
    let ramp = run.ramp(c.connections, hard);
    let cpu_ramp = server_cpu(c.server_pid);
    let self_ramp = proc_cpu_seconds(std::process::id());
    let peak = run.peak_rate(0.0);
    if let Some(r) = ramp {
        while run.t() - r < duration && run.live(hard) {
            run.step("hold");
        }
    }
    let held = run.stats.open.load(Ordering::Relaxed);
    let s = run.stats.clone();
    let (out, common) = run.finish()?;
    let established = s.established.load(Ordering::Relaxed);
    let cpu_per_upgrade = match (cpu0, cpu_ramp) {
        (Some(a), Some(b)) if established > 0 => Some((b - a) * 1e6 / established as f64),
        _ => None,
    };
    let report = merge(
        common,
        json!({
            "scenario": "hold",
            "connections_wanted": c.connections,
            "held_at_end": held,
            "ramp_seconds": ramp,
            "peak_upgrades_per_s": peak,
            "server_cpu_us_per_upgrade": cpu_per_upgrade,
            "server_cpu_seconds_ramp": cpu0.zip(cpu_ramp).map(|(a, b)| b - a),
            "loadgen_cpu_seconds_ramp": self0.zip(self_ramp).map(|(a, b)| b - a),
        }),
    );
    println!(
        "\nhold: {established} of {} established, {held} held at the end; failures: {}\n\
         connect+upgrade latency: {}\n\
         ramp {:.1} s, peak {:.0} upgrades/s{}; closes/statuses {:?}",
        c.connections,
        failures_line(&s),
        pct_line(&hist_json(&out.connect_us, 1.0), "µs"),
        ramp.unwrap_or(f64::NAN),
        peak,
        cpu_per_upgrade.map_or(String::new(), |v| format!(
            ", server {v:.1} CPU-µs per upgrade"
        )),
        s.keyed()
    );
    write_json(c.json.as_deref(), &report)?;
    Ok(established as usize == c.connections)
}

fn echo(a: EchoArgs) -> Result<bool, String> {
    let c = &a.c;
    let duration = c.duration.unwrap_or(10.0);
    let hard = hard_timeout(c, duration + a.warmup);
    let mut run = launch(
        c,
        Mode::Echo {
            size: a.size,
            rate: a.message_rate,
        },
    )?;
    let ramp = run.ramp(c.connections, hard);
    let s = run.stats.clone();
    s.control.store(stats::STEADY, Ordering::Relaxed);
    let (cpu0, self0) = run.start_measuring(a.warmup, hard, c.server_pid);
    let sent0 = s.echo_sent.load(Ordering::Relaxed);
    let t0 = run.t();
    while run.t() - t0 < duration && run.live(hard) {
        run.step("measure");
    }
    let elapsed = run.t() - t0;
    // Recording stops here (engines see it at their next tick; the histogram, not the
    // counter, is the exact count).
    s.control.store(stats::STEADY, Ordering::Relaxed);
    let sent = s.echo_sent.load(Ordering::Relaxed) - sent0;
    let (cpu1, self1) = (
        server_cpu(c.server_pid),
        proc_cpu_seconds(std::process::id()),
    );
    let open = s.open.load(Ordering::Relaxed);
    let (out, common) = run.finish()?;
    let server_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let self_cpu_s = self0.zip(self1).map(|(a, b)| b - a);
    let rtt = hist_json(&out.rtt_ns, 1000.0);
    let echoed = out.rtt_ns.len();
    let rate = echoed as f64 / elapsed.max(1e-9);
    let report = merge(
        common,
        json!({
            "scenario": "echo",
            "loop": if a.message_rate.is_some() { "open" } else { "closed" },
            "connections_wanted": c.connections,
            "open_during_measurement": open,
            "ramp_seconds": ramp,
            "message_bytes": a.size,
            "target_messages_per_s": a.message_rate,
            "measure_seconds": elapsed,
            "messages_sent": sent,
            "round_trips": echoed,
            "messages_per_s": rate,
            "rtt_us": rtt,
            "echo_mismatch": s.echo_mismatch.load(Ordering::Relaxed),
            "sends_skipped_backlog": s.echo_skipped.load(Ordering::Relaxed),
            "server_cpu_seconds": server_cpu_s,
            "messages_per_server_cpu_s": server_cpu_s.map(|v| echoed as f64 / v.max(1e-9)),
            "loadgen_cpu_seconds": self_cpu_s,
        }),
    );
    println!(
        "\necho ({} loop, {} connections, {} B): {echoed} round trips in {elapsed:.1} s = {rate:.0} msgs/s\n\
         rtt: {}\n\
         sent {sent}, mismatched {}, skipped (backlog) {}; failures: {}{}; loadgen CPU {:.2} s",
        if a.message_rate.is_some() { "open" } else { "closed" },
        c.connections,
        a.size,
        pct_line(&rtt, "µs"),
        s.echo_mismatch.load(Ordering::Relaxed),
        s.echo_skipped.load(Ordering::Relaxed),
        failures_line(&s),
        server_cpu_s.map_or(String::new(), |v| format!(
            "; server CPU {v:.2} s = {:.0} msgs per server-CPU-s",
            echoed as f64 / v.max(1e-9)
        )),
        self_cpu_s.unwrap_or(f64::NAN),
    );
    write_json(c.json.as_deref(), &report)?;
    Ok(s.failed() == 0 && echoed > 0 && s.echo_mismatch.load(Ordering::Relaxed) == 0)
}

fn fanout(a: FanoutArgs) -> Result<bool, String> {
    use holdfast_loadgen::fanout::{self, PublisherSpec, Via};
    let duration = a.c.duration.unwrap_or(10.0);
    let hard = hard_timeout(&a.c, duration + a.warmup + a.settle);
    if a.topics == 0 || a.topics > 65_535 / a.c.urls.len().max(1) {
        return Err("--topics must be between 1 and 65535 / number of URLs".into());
    }
    if a.size < 8 || !a.publish_rate.is_finite() || a.publish_rate <= 0.0 {
        return Err("--size must be at least 8 and --publish-rate positive".into());
    }
    let via = match a.publish_via {
        PublishVia::Admin => Via::Admin(
            a.admin
                .clone()
                .ok_or("--publish-via admin needs --admin host:port")?,
        ),
        PublishVia::Ws => Via::Ws(a.c.urls[0].clone()),
    };
    let topics: Vec<String> = (0..a.topics)
        .map(|k| format!("{}{k}", a.topic_prefix))
        .collect();
    // Targets topic by topic: target t subscribes to topic t / urls.
    let mut c = a.c.clone();
    c.urls = topics
        .iter()
        .flat_map(|t| {
            a.c.urls.iter().map(move |u| {
                let sep = if u.contains('?') { '&' } else { '?' };
                format!("{u}{sep}topics={t}")
            })
        })
        .collect();
    let last: Arc<[std::sync::atomic::AtomicU64]> =
        (0..a.topics).map(|_| Default::default()).collect();
    let mut run = launch(
        &c,
        Mode::Fanout {
            per_topic: a.c.urls.len(),
            last: last.clone(),
        },
    )?;
    run.urls = a.c.urls.clone();
    let ramp = run.ramp(c.connections, hard);
    let s = run.stats.clone();
    // Subscriptions are acknowledged right behind the 101; give the last ones a moment.
    let settle_subs = run.t() + 0.5;
    while run.t() < settle_subs && run.live(hard) {
        run.step("subscribe");
    }
    s.control.store(stats::STEADY, Ordering::Relaxed);
    let spec = PublisherSpec {
        via,
        topics: topics.clone(),
        rate: a.publish_rate,
        size: a.size,
    };
    let pub_stop = Arc::new(AtomicBool::new(false));
    let out_pub = Arc::new(fanout::Published {
        sent: Default::default(),
        errors: Default::default(),
        last,
    });
    let publisher = {
        let (s, stop, o) = (s.clone(), pub_stop.clone(), out_pub.clone());
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || fanout::publish(&spec, &s, &stop, &o))
            .map_err(|e| e.to_string())?
    };
    let (cpu0, self0) = run.start_measuring(a.warmup, hard, c.server_pid);
    let (msgs0, sent0) = (
        s.messages.load(Ordering::Relaxed),
        out_pub.sent.load(Ordering::Relaxed),
    );
    let t0 = run.t();
    while run.t() - t0 < duration && run.live(hard) && !publisher.is_finished() {
        run.step("measure");
    }
    let elapsed = run.t() - t0;
    let (msgs1, sent1) = (
        s.messages.load(Ordering::Relaxed),
        out_pub.sent.load(Ordering::Relaxed),
    );
    let (cpu1, self1) = (
        server_cpu(c.server_pid),
        proc_cpu_seconds(std::process::id()),
    );
    pub_stop.store(true, Ordering::Relaxed);
    let pub_result = publisher
        .join()
        .map_err(|_| "the publisher panicked".to_string())?;
    // Let deliveries in flight arrive: until the count stops moving (bounded).
    let settle_end = run.t() + a.settle;
    let mut seen = (s.messages.load(Ordering::Relaxed), run.t());
    while run.t() < settle_end && run.live(hard) {
        run.step("settle");
        let m = s.messages.load(Ordering::Relaxed);
        if m != seen.0 {
            seen = (m, run.t());
        } else if run.t() - seen.1 >= 0.5 {
            break;
        }
    }
    s.control.store(stats::STEADY, Ordering::Relaxed);
    let open = s.open.load(Ordering::Relaxed);
    let (out, common) = run.finish()?;
    let server_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let self_cpu_s = self0.zip(self1).map(|(a, b)| b - a);
    let lat = hist_json(&out.rtt_ns, 1000.0);
    let deliveries = msgs1 - msgs0;
    let rate = deliveries as f64 / elapsed.max(1e-9);
    let load = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    let (lost, tail, dups, reord, gaps, gapm) = (
        load(&s.fanout_lost),
        load(&s.fanout_tail_lost),
        load(&s.fanout_duplicates),
        load(&s.fanout_reordered),
        load(&s.fanout_gaps),
        load(&s.fanout_gap_messages),
    );
    let publish_errors = load(&out_pub.errors);
    let report = merge(
        common,
        json!({
            "scenario": "fanout",
            "subscribers_wanted": c.connections,
            "subscribers_open": open,
            "topics": a.topics,
            "publish_via": format!("{:?}", a.publish_via).to_lowercase(),
            "publish_rate_target": a.publish_rate,
            "payload_bytes": a.size,
            "ramp_seconds": ramp,
            "measure_seconds": elapsed,
            "published_total": load(&out_pub.sent),
            "published_during_measurement": sent1 - sent0,
            "publish_errors": publish_errors,
            "publisher_error": pub_result.as_ref().err(),
            "deliveries_during_measurement": deliveries,
            "deliveries_per_s": rate,
            "deliveries_timed": out.rtt_ns.len(),
            "publish_to_delivery_us": lat,
            "lost_in_stream": lost,
            "lost_at_end": tail,
            "duplicates": dups,
            "reordered": reord,
            "gaps": gaps,
            "gap_messages": gapm,
            "server_cpu_seconds": server_cpu_s,
            "deliveries_per_server_cpu_s": server_cpu_s.map(|v| deliveries as f64 / v.max(1e-9)),
            "loadgen_cpu_seconds": self_cpu_s,
        }),
    );
    println!(
        "
fanout ({} subscribers, {} topics, {} msgs/s via {:?}): {deliveries} deliveries in {elapsed:.1} s = {rate:.0}/s
         publish→delivery: {}
         lost {lost} in stream + {tail} at the end, duplicates {dups}, reordered {reord}, gaps {gaps} ({gapm} msgs);\n         publish errors {publish_errors}; failures: {}{}",
        c.connections,
        a.topics,
        a.publish_rate,
        a.publish_via,
        pct_line(&lat, "µs"),
        failures_line(&s),
        server_cpu_s.map_or(String::new(), |v| format!(
            "; server CPU {v:.2} s = {:.0} deliveries per server-CPU-s",
            deliveries as f64 / v.max(1e-9)
        )),
    );
    if let Err(e) = &pub_result {
        eprintln!("publisher: {e}");
    }
    write_json(c.json.as_deref(), &report)?;
    Ok(pub_result.is_ok()
        && s.failed() == 0
        && lost + tail + dups + reord + gaps + publish_errors == 0
        && !out.rtt_ns.is_empty())
}

/// `POST /drain` to a holdfast admin address.
fn post_drain(admin: &str) -> Result<String, String> {
    let addr = admin.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("admin {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST /drain HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("admin {addr}: {e}"))?;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let status = body.lines().next().unwrap_or("").to_string();
    if !status.split(' ').nth(1).is_some_and(|c| c.starts_with('2')) {
        return Err(format!("admin {addr}: POST /drain answered {status:?}"));
    }
    Ok(status)
}

fn storm(a: StormArgs) -> Result<bool, String> {
    let c = &a.c;
    let duration = c.duration.unwrap_or(60.0);
    let hard = hard_timeout(c, duration + a.hold);
    if a.cause == Cause::Drain && a.admin.is_none() {
        return Err("--cause drain needs --admin host:port".into());
    }
    let policy = Backoff {
        base: Duration::from_millis(a.base_ms),
        cap: Duration::from_millis(a.cap_ms),
        max_attempts: a.max_attempts,
        jitter: !a.no_jitter,
        honor_hint: !a.ignore_hint,
    };
    let mut run = launch(c, Mode::Storm(policy))?;
    let ramp = run.ramp(c.connections, hard);
    let s = run.stats.clone();
    s.control.store(stats::STEADY, Ordering::Relaxed);
    let hold_end = run.t() + a.hold;
    while run.t() < hold_end && run.live(hard) {
        run.step("hold");
    }
    let before = s.open.load(Ordering::Relaxed);
    let event_t = run.t();
    let go = run.live(hard);
    match a.cause {
        _ if !go => {}
        Cause::Cut => s.control.store(stats::CUT, Ordering::Relaxed),
        Cause::Drain => {
            post_drain(a.admin.as_deref().unwrap_or_default())?;
        }
        Cause::External => {
            let msg = "waiting for the server to drop the connections";
            match &run.progress {
                Some(p) => p.println(msg),
                None => println!("{msg}"),
            }
        }
    }
    let recovered = |s: &Stats| {
        let lost = s.lost.load(Ordering::Relaxed);
        let gave_up = s.gave_up.load(Ordering::Relaxed);
        lost >= before
            && s.awaiting.load(Ordering::Relaxed) == 0
            && s.open.load(Ordering::Relaxed) + gave_up >= before
    };
    let mut ok = false;
    while run.t() - event_t < duration && run.live(hard) {
        run.step("storm");
        if before > 0 && recovered(&s) {
            ok = true;
            break;
        }
    }
    let peak = run.peak_rate(event_t);
    let open_after = s.open.load(Ordering::Relaxed);
    let (out, common) = run.finish()?;
    let first = s.first_loss_ns.load(Ordering::Relaxed);
    let last = s.last_reconnect_ns.load(Ordering::Relaxed);
    let recovery = (ok && first != u64::MAX).then(|| last.saturating_sub(first) as f64 / 1e9);
    let delays = hist_json(&out.delay_us, 1000.0);
    let report = merge(
        common,
        json!({
            "scenario": "storm",
            "cause": format!("{:?}", a.cause).to_lowercase(),
            "backoff": {"base_ms": a.base_ms, "cap_ms": a.cap_ms, "max_attempts": a.max_attempts,
                        "jitter": !a.no_jitter, "honor_hint": !a.ignore_hint},
            "connections_wanted": c.connections,
            "ramp_seconds": ramp,
            "held_before_event": before,
            "lost": s.lost.load(Ordering::Relaxed),
            "reconnected": s.reconnected.load(Ordering::Relaxed),
            "reconnect_attempts": s.attempts.load(Ordering::Relaxed),
            "gave_up": s.gave_up.load(Ordering::Relaxed),
            "open_at_end": open_after,
            "recovered": ok,
            "recovery_seconds": recovery,
            "peak_connects_per_s_after_event": peak,
            "reconnect_delay_ms": delays,
        }),
    );
    println!(
        "\nstorm ({:?}, jitter {}): held {before}, lost {}, reconnected {} in {} attempts, gave up {}\n\
         {}; peak {peak:.0} connects/s; failures: {}\n\
         reconnect delays: {}\n\
         closes/statuses {:?}",
        a.cause,
        !a.no_jitter,
        s.lost.load(Ordering::Relaxed),
        s.reconnected.load(Ordering::Relaxed),
        s.attempts.load(Ordering::Relaxed),
        s.gave_up.load(Ordering::Relaxed),
        match recovery {
            Some(r) => format!("full recovery {r:.2} s after the first loss"),
            None => format!("NOT recovered within {duration} s"),
        },
        failures_line(&s),
        pct_line(&delays, "ms"),
        s.keyed(),
    );
    write_json(c.json.as_deref(), &report)?;
    Ok(ok)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Hold(a) => hold(a),
        Scenario::Echo(a) => echo(a),
        Scenario::Storm(a) => storm(a),
        Scenario::Fanout(a) => fanout(a),
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
