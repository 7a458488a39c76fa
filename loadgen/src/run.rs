//! A running set of engine threads, seen from the reporting thread: launching them,
//! sampling their published counters, the ramp, the measurement start, and finishing with
//! the merged output and the figures every scenario reports.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Common, ReadModeArg};
use crate::counters::{self, Board, Control, Counts, C};
use crate::engine::{self, EngineSpec, Output};
use crate::report::{hist_json, machine, proc_cpu_seconds, proc_wakeups};
use crate::scenario::Mode;
use crate::target;

/// A running set of engine threads.
#[derive(Debug)]
pub struct Run {
    /// The run phase and measurement start the engines read.
    pub control: Arc<Control>,
    boards: Vec<Arc<Board>>,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Result<Output, String>>>,
    engines: usize,
    threads: usize,
    /// The engine threads' nice value (0, or 5 when the reporting thread could not raise
    /// its own priority).
    engine_nice: i32,
    started: Instant,
    series: Vec<Value>,
    samples: Vec<(f64, u64)>,
    /// The live status line (on a terminal).
    pub progress: Option<indicatif::ProgressBar>,
    last_line: f64,
    /// Targets as given (for the report).
    pub urls: Vec<String>,
    /// SIGINT/SIGTERM: end the scenario now, close and report (a second one exits at once).
    interrupted: Arc<AtomicBool>,
}

/// Start the engine threads for `c`, running `mode`.
pub fn launch(c: &Common, mode: Mode) -> Result<Run, String> {
    // A run of nothing measured nothing: `hold --connections 0` held no connection until its
    // hard timeout, and `--rate nan` ramped nothing, each then reporting zeros.
    if c.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if !(c.rate.is_finite() && c.rate > 0.0) {
        return Err(format!(
            "--rate must be a positive number of new connections a second, got {}",
            c.rate
        ));
    }
    if c.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if let Mode::Echo { rate: Some(r), .. } = mode {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!(
                "--message-rate must be a positive number of messages a second, got {r}"
            ));
        }
    }
    let tls = c.tls()?;
    let targets: Vec<target::Target> = c
        .urls
        .iter()
        .map(|u| target::parse_url(u, tls.as_ref()))
        .map(|t| {
            t.map(|t| {
                t.reconnecting_polls(c.poll_connections == crate::cli::PollConnections::PerPoll)
            })
        })
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
    let table = holdfast::io::sys::nofile_soft_limit().min(1 << 20) as usize;
    // A long-poll client holds two slots for a moment at every answer (the answered
    // connection closing, the next poll connecting): half the table per ring.
    let slots_each = if targets.iter().any(|t| t.poll) { 2 } else { 1 };
    let per_ring = (table.saturating_sub(64) / slots_each).max(1);
    // The CPUs this process may use (`taskset`, a cpuset): engine thread t is pinned to
    // the t-th of them, round robin, and never outside them.
    let allowed = holdfast::topology::allowed_cpus();
    let threads = c.workers.unwrap_or(allowed.len()).max(1);
    let engines = threads.max(c.connections.div_ceil(per_ring)).max(1);
    let control = Arc::new(Control::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut per_thread: Vec<Vec<EngineSpec>> = (0..threads).map(|_| Vec::new()).collect();
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
        per_thread[id % threads].push(EngineSpec {
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
            control: control.clone(),
            stop: stop.clone(),
            handshake_timeout: Duration::from_secs_f64(c.handshake_timeout),
            close_timeout: Duration::from_secs_f64(c.close_timeout),
            mode,
            ping_interval: c.ping_interval.map(Duration::from_secs_f64),
            read_mode: match c.read_mode {
                ReadModeArg::Poll => holdfast::io::ReadMode::Poll,
                ReadModeArg::Recv => holdfast::io::ReadMode::Recv,
            },
        });
    }
    // The reporting thread (this one: progress, the hard timeout, the publishers it
    // starts) must not starve behind busy engines — it did in a 2M run. It raises its own
    // priority when it may (root, CAP_SYS_NICE); only when it may not do the engines lower
    // theirs instead. Engines at a lower priority than the server under test yield the CPU
    // to it: on a shared machine that made fan-out latency depend on how the server's
    // threads scheduled (18k subscribers, one holdfast worker, 60 msgs/s: p99 0.96–1.7 s
    // with engines at nice 5, 0.66–0.75 s at nice 0; docs/benchmarks.md).
    let engine_nice = if holdfast::io::sys::set_thread_nice(-5) {
        0
    } else {
        5
    };
    let mut handles = Vec::new();
    let mut boards = Vec::new();
    for (t, specs) in per_thread.into_iter().enumerate() {
        let cpu = allowed[t % allowed.len()];
        let board = Arc::new(Board::default());
        boards.push(board.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || engine::run_thread(specs, Some(cpu), engine_nice, board))
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
        control,
        boards,
        stop,
        handles,
        engines,
        threads,
        engine_nice,
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
    /// Seconds since the launch.
    pub fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The run goes on: not interrupted, not past the hard timeout.
    pub fn live(&self, hard: f64) -> bool {
        !self.interrupted.load(Ordering::Relaxed) && self.t() < hard
    }

    /// Every thread's counters as last published (at most 10 ms old).
    pub fn totals(&self) -> Counts {
        counters::totals(&self.boards)
    }

    /// Sleep 100 ms, sample the counters, and show progress (a live line on a terminal, a
    /// printed line per second otherwise).
    pub fn step(&mut self, what: &str) {
        std::thread::sleep(Duration::from_millis(100));
        let s = self.totals();
        let t = self.t();
        let est = s.get(C::Established);
        self.samples.push((t, est));
        let line = format!(
            "{what:>8} t={t:>5.1}s established={est} open={} failed={} pings={} msgs={}{}",
            s.signed(C::Open),
            s.failed(),
            s.get(C::Pings),
            s.get(C::Messages),
            match s.get(C::Polls) {
                0 => String::new(),
                n => format!(" polls={n}"),
            },
        );
        if let Some(p) = &self.progress {
            p.set_message(line.clone());
        }
        if t - self.last_line >= 1.0 {
            self.last_line = t;
            self.series.push(json!({
                "t": (t * 10.0).round() / 10.0,
                "established": est,
                "open": s.signed(C::Open),
                "failed": s.failed(),
                "lost": s.get(C::Lost),
                "messages": s.get(C::Messages),
            }));
            if self.progress.is_none() {
                holdfast::say!("{line}");
            }
        }
    }

    /// Ramp until every connection is established or has failed (or `deadline` passes).
    /// Returns the ramp time.
    pub fn ramp(&mut self, n: usize, deadline: f64) -> Option<f64> {
        loop {
            self.step("ramp");
            let s = self.totals();
            if (s.get(C::Established) + s.failed()) as usize >= n {
                return Some(self.t());
            }
            if !self.live(deadline) {
                return None;
            }
        }
    }

    /// Warm up for `warmup` seconds, then start the measurement (stamps from now on are
    /// recorded). Returns the server's and the loadgen's CPU seconds at its start.
    pub fn start_measuring(
        &mut self,
        warmup: f64,
        hard: f64,
        server_pid: Option<u32>,
    ) -> (Option<f64>, Option<f64>) {
        let warm_end = self.t() + warmup;
        while self.t() < warm_end && self.live(hard) {
            self.step("warmup");
        }
        self.control.start_measuring();
        (server_cpu(server_pid), proc_cpu_seconds(std::process::id()))
    }

    /// Highest upgrades/s over any 1-second window from `from` on (over the whole span when
    /// it is shorter than a second).
    pub fn peak_rate(&self, from: f64) -> f64 {
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

    /// Stop the engines (clean closes) and merge their output; the figures every scenario
    /// reports come back as JSON.
    pub fn finish(mut self) -> Result<(Output, Value), String> {
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
        let s = &out.counts;
        let (full, resumed) = (s.get(C::TlsFull), s.get(C::TlsResumed));
        if full + resumed > 0 {
            holdfast::say!("\nTLS handshakes: {full} full, {resumed} resumed");
        }
        let common = json!({
            "command": std::env::args().collect::<Vec<_>>(),
            "machine": machine(),
            "targets": self.urls,
            "engines": self.engines,
            "threads": self.threads,
            "client_cpus": out.cpus,
            "engine_nice": self.engine_nice,
            "established": s.get(C::Established),
            "tls_handshakes": {"full": s.get(C::TlsFull), "resumed": s.get(C::TlsResumed)},
            "connect_upgrade_latency_us": hist_json(&out.connect_us, 1.0),
            "failures": s.failures(),
            "failed_total": s.failed(),
            "closes_and_statuses": counters::keyed_report(&out.keyed),
            "pings_answered": s.get(C::Pings),
            "long_polls_answered": s.get(C::Polls),
            "pings_sent": s.get(C::PingsSent),
            "pongs_received": s.get(C::Pongs),
            "messages_received": s.get(C::Messages),
            "series": self.series,
            "loadgen_cpu_seconds_total": proc_cpu_seconds(std::process::id()),
            "interrupted": self.interrupted.load(Ordering::Relaxed),
        });
        Ok((out, common))
    }
}

/// `a` with `b`'s fields added.
pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Write the report when a path is given.
pub fn write_json(path: Option<&std::path::Path>, v: &Value) -> Result<(), String> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(v).unwrap_or_default())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Failures by reason, for the summary.
pub fn failures_line(s: &Counts) -> String {
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

/// Percentiles, for the summary.
pub fn pct_line(v: &Value, unit: &str) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} {unit}",
        v["p50"], v["p90"], v["p99"], v["p99.9"], v["max"]
    )
}

/// When the run ends whatever happened.
pub fn hard_timeout(c: &Common, duration: f64) -> f64 {
    c.hard_timeout
        .unwrap_or(c.connections as f64 / c.rate.max(1.0) * 2.0 + duration + 60.0)
}

/// The server's CPU seconds so far, when its PID is known.
pub fn server_cpu(pid: Option<u32>) -> Option<f64> {
    pid.and_then(proc_cpu_seconds)
}

/// The server's wake-ups so far ([`proc_wakeups`], as a number to subtract), when its PID
/// was given.
pub fn server_wakeups(pid: Option<u32>) -> Option<f64> {
    pid.and_then(proc_wakeups).map(|n| n as f64)
}

/// What one span cost per item: `(to - from) / n`, None without both readings or items.
pub fn per_item(from: Option<f64>, to: Option<f64>, n: u64, scale: f64) -> Option<f64> {
    match (from, to) {
        (Some(a), Some(b)) if n > 0 => Some((b - a) * scale / n as f64),
        _ => None,
    }
}
