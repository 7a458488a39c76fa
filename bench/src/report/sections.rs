//! The report's sections: each starts the servers it compares, drives them with the load
//! generator, and returns its figures as JSON.

use std::time::Duration;

use serde_json::{json, Value};

use super::procs::{loadgen, Kind, Server};
use super::rounds::{fanout_row, interleaved, latency_us, median_index, median_spread};
use super::Plan;
use crate::proc::{meminfo, rss_bytes, slab_caches};

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Where the load generator targets: a server the report started, or `--url`.
struct Target {
    url_base: String,
    admin: Option<String>,
    pid: Option<u32>,
    /// wss://: trust the test CA, with this `--tls-resumption`.
    tls: Option<&'static str>,
}

fn target(plan: &Plan, server: Option<&Server>) -> Target {
    match server {
        Some(sv) => Target {
            url_base: sv.url_base(),
            admin: sv.admin.clone(),
            pid: Some(sv.pid()),
            tls: sv.kind.tls().then_some("on"),
        },
        None => Target {
            url_base: plan.url.clone().unwrap_or_default(),
            admin: plan.admin.clone(),
            pid: plan.server_pid,
            tls: None,
        },
    }
}

impl Target {
    /// The loadgen's arguments for `scenario` with `n` connections to `path`, then `more`
    /// flag/value pairs, and the server's PID when known (for its CPU time).
    fn args(&self, scenario: &str, path: &str, n: usize, more: &[(&str, String)]) -> Vec<String> {
        let mut v = vec![
            s(scenario),
            s("--url"),
            format!("{}{path}", self.url_base),
            s("--connections"),
            s(n),
        ];
        for (flag, value) in more {
            v.extend([s(flag), value.clone()]);
        }
        if let Some(p) = self.pid {
            v.extend([s("--server-pid"), s(p)]);
        }
        if let Some(resumption) = self.tls {
            v.extend([
                s("--tls-ca"),
                super::procs::tls_fixture("ca.pem"),
                s("--tls-resumption"),
                s(resumption),
            ]);
        }
        v
    }
}

/// `n`, or less for a peer that holds sockets as fds: it must stay under `ulimit -n`.
fn fd_cap(kind: Kind, n: usize) -> usize {
    if kind.uses_fds() {
        n.min(holdfast::io::sys::nofile_soft_limit() as usize * 3 / 4)
    } else {
        n
    }
}

/// Start `kind` unless the report targets `--url` (then only holdfast is measured there).
fn start(
    plan: &Plan,
    kind: Kind,
    cpus: Option<&str>,
    threads: Option<usize>,
    extra: &[&str],
) -> Result<Option<Server>, String> {
    if plan.url.is_some() {
        return Ok(None);
    }
    Server::start(kind, cpus, threads, extra).map(Some)
}

/// The servers a comparison runs: holdfast first, then the peers asked for (and available).
fn kinds(plan: &Plan, peers: &[Kind]) -> Vec<Kind> {
    let mut v = vec![Kind::Holdfast];
    if plan.url.is_none() {
        v.extend(peers.iter().copied().filter(|k| plan.peers.contains(k)));
    }
    v
}

// ------------------------------------------------------------------------------- density

/// Bytes per idle connection at each N: server userspace (RSS delta / N) and kernel (Slab
/// delta / N, both ends of each loopback connection, with the caches that grew most), plus
/// the ramp: upgrades/s and server CPU per upgrade.
pub(super) fn density(plan: &Plan) -> Result<Value, String> {
    let mut runs = Vec::new();
    for kind in kinds(
        plan,
        &[
            Kind::TokioTungstenite,
            Kind::Fastwebsockets,
            Kind::NodeWs,
            Kind::Uws,
            Kind::HoldfastTls,
            Kind::HoldfastSse,
            Kind::HoldfastPoll,
        ],
    ) {
        let counts: Vec<usize> = if kind == Kind::Holdfast {
            plan.densities.clone()
        } else if kind == Kind::HoldfastTls || kind.http_path().is_some() {
            plan.tls_densities.clone()
        } else {
            vec![fd_cap(kind, plan.peer_density)]
        };
        for n in counts {
            let free = meminfo("MemFree").unwrap_or(0) as f64;
            // ~8.5 KB of kernel memory per connection pair and ~0.3 KB of both processes'
            // state (measured up to 2.5M), and 3 GiB kept free.
            let need = n as f64 * 9_000.0 + 3.0 * (1u64 << 30) as f64;
            if need > free {
                runs.push(json!({"server": kind.name(), "connections": n, "skipped":
                    format!("needs ~{:.1} GiB free, {:.1} GiB free", need / (1u64 << 30) as f64, free / (1u64 << 30) as f64)}));
                continue;
            }
            eprintln!("density: {} × {n}", kind.name());
            runs.push(density_step(plan, kind, n)?);
        }
    }
    let targets = density_targets(&runs);
    Ok(json!({ "runs": runs, "targets": targets }))
}

/// A verdict line: `ratio` (holdfast over the peer, or a figure) at least `min`.
fn at_least(what: String, ratio: Option<f64>, min: f64) -> Value {
    json!({"what": what, "ratio": ratio, "target": format!(">= {min}"), "met": ratio.map(|r| r >= min)})
}

/// `a / b` to three decimals, when both are known and `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 1000.0).round() / 1000.0),
        _ => None,
    }
}

/// A verdict line: `ratio` at most `max`.
fn at_most(what: String, ratio: Option<f64>, max: f64) -> Value {
    json!({"what": what, "ratio": ratio, "target": format!("<= {max}"), "met": ratio.map(|r| r <= max)})
}

/// Userspace bytes per idle connection: at most uWebSockets' at the count it held, and at
/// most 64 B at 1M.
fn density_targets(runs: &[Value]) -> Vec<Value> {
    let key = "userspace_bytes_per_connection";
    let at = |server: &str, n: &Value| {
        runs.iter()
            .find(|r| r["server"] == server && &r["connections"] == n)
            .and_then(|r| r[key].as_f64())
    };
    let mut out = Vec::new();
    for u in runs.iter().filter(|r| r["server"] == "uwebsockets") {
        let (h, w) = (at("holdfast", &u["connections"]), u[key].as_f64());
        out.push(at_most(
            format!(
                "userspace B per idle connection at {}, holdfast / uwebsockets",
                u["connections"]
            ),
            h.zip(w).map(|(a, b)| a / b.max(1.0)),
            1.0,
        ));
    }
    if let Some(h) = at("holdfast", &json!(1_000_000)) {
        out.push(json!({
            "what": "userspace B per idle connection at 1,000,000 (holdfast)",
            "ratio": h,
            "target": "<= 64 B",
            "met": h <= 64.0,
        }));
    }
    out
}

/// Server RSS, kernel Slab, and the slab caches, at one moment.
type Sample = (u64, u64, std::collections::BTreeMap<String, (u64, u64)>);

/// Wait (at most 90 s) until the kernel's slab stops shrinking or growing: sockets of an
/// earlier step are freed asynchronously (RCU, TIME_WAIT), and a baseline taken while they
/// are would be wrong — it once made a 10k step read as a negative slab delta after a 1M one.
fn settle_slab() {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last = meminfo("Slab").unwrap_or(0) as i64;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        let now = meminfo("Slab").unwrap_or(0) as i64;
        if (now - last).abs() < 512 << 10 {
            return;
        }
        last = now;
    }
}

fn density_step(plan: &Plan, kind: Kind, n: usize) -> Result<Value, String> {
    // An event stream or a poll without topics is the idle connection that matches /echo's.
    density_at(plan, kind, n, kind.http_path().unwrap_or("/echo"))
}

/// One density step: `n` idle connections to `path` held on a fresh `kind` server.
pub(super) fn density_at(plan: &Plan, kind: Kind, n: usize, path: &str) -> Result<Value, String> {
    settle_slab();
    let server = start(
        plan,
        kind,
        None,
        None,
        &["--max-connections", &s(n.max(1000) * 2)],
    )?;
    let t = target(plan, server.as_ref());
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = t.pid.and_then(rss_bytes).unwrap_or(0);
    let slab0 = meminfo("Slab").unwrap_or(0);
    let caches0 = slab_caches();
    let mut sample: Option<Sample> = None;
    let pid = t.pid;
    let args = t.args(
        "hold",
        path,
        n,
        &[
            ("--rate", s(plan.ramp_rate)),
            ("--duration", s(plan.hold_seconds)),
        ],
    );
    let (v, met) = loadgen(&args, None, |line| {
        // "hold t=…" lines come once a second after the ramp: sample at each, keep the last
        // (the most settled).
        if line.trim_start().starts_with("hold t=") {
            sample = Some((
                pid.and_then(rss_bytes).unwrap_or(0),
                meminfo("Slab").unwrap_or(0),
                slab_caches(),
            ));
        }
    })?;
    drop(server);
    let held = v["held_at_end"].as_u64().unwrap_or(0).max(1);
    let (rss1, slab1, caches1) = sample.ok_or("the hold never reached its steady state")?;
    let per = |d: i64| d as f64 / held as f64;
    let mut grew: Vec<(String, i64)> = caches1
        .iter()
        .map(|(k, (b, _))| {
            (
                k.clone(),
                *b as i64 - caches0.get(k).map_or(0, |c| c.0 as i64),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    grew.sort_by_key(|(_, d)| -d);
    let top: Vec<Value> = grew
        .iter()
        .take(8)
        .map(|(k, d)| json!({"cache": k, "bytes_per_connection": (per(*d) * 10.0).round() / 10.0}))
        .collect();
    let kernel_pair = per(slab1 as i64 - slab0 as i64);
    let grown_pair = per(grew.iter().map(|(_, d)| *d).sum::<i64>());
    Ok(json!({
        "server": kind.name(),
        "connections": n,
        "held": v["held_at_end"],
        "met": met,
        "failures": v["failures"],
        "userspace_bytes_per_connection": (per(rss1 as i64 - rss0 as i64) * 10.0).round() / 10.0,
        // The caches that grew: immune to unrelated caches shrinking during the step (an
        // earlier step's sockets still being freed made the Slab delta read 1.8 KB for a
        // 10k step once). Both ends of a loopback connection hold the same socket objects:
        // the server's share is half.
        "kernel_bytes_per_connection_pair": grown_pair.round(),
        "kernel_bytes_per_connection_server_share": (grown_pair / 2.0).round(),
        "kernel_slab_delta_bytes_per_connection_pair": kernel_pair.round(),
        "slab_caches_grown": top,
        "ramp_seconds": v["ramp_seconds"],
        "peak_upgrades_per_s": v["peak_upgrades_per_s"],
        "server_cpu_us_per_upgrade": v["server_cpu_us_per_upgrade"],
        "connect_upgrade_latency_us": strip_hdr(&v["connect_upgrade_latency_us"]),
        "series": v["series"],
    }))
}

/// A histogram's JSON without the encoded form (kept only where a chart needs it).
fn strip_hdr(h: &Value) -> Value {
    let mut h = h.clone();
    if let Some(o) = h.as_object_mut() {
        o.remove("hdr_v2_deflate_base64");
    }
    h
}

// ------------------------------------------------------------------------------- tls

/// What a reconnect storm costs over TLS: server CPU per connection set up (TCP, TLS
/// handshake, WebSocket upgrade) with every handshake full (`--tls-resumption off`) and with
/// resumed ones (`always`: each connection resumes with a ticket an earlier one received),
/// one pinned worker; plain holdfast beside them, and uWebSockets' TLS build when it is a
/// peer. Handshakes per server-CPU-second is the inverse. Each round measures each row twice,
/// the server fresh each time: with the loadgen and with the independent upgrade client (its
/// own rustls client).
pub(super) fn tls(plan: &Plan) -> Result<Value, String> {
    let mut runs = Vec::new();
    if plan.url.is_some() {
        return Ok(
            json!({"runs": runs, "skipped": "--url: the TLS section starts its own servers"}),
        );
    }
    let mut steps = vec![
        (Kind::Holdfast, None),
        (Kind::HoldfastTls, Some("off")),
        (Kind::HoldfastTls, Some("always")),
    ];
    // uWebSockets beside it (built with OpenSSL or BoringSSL): its own TLS stack with the
    // same certificate, the same clients, the same two resumption settings.
    if plan.peers.contains(&Kind::UwsTls) {
        steps.extend([(Kind::UwsTls, Some("off")), (Kind::UwsTls, Some("always"))]);
    }
    // Rounds interleaved over the rows, so that the host's drift falls on all alike.
    let rounds = interleaved(plan.tls_rounds, &steps, |round, &(kind, resumption)| {
        eprintln!(
            "tls: {} resumption {} round {round}",
            kind.name(),
            resumption.unwrap_or("-")
        );
        // Few in flight: each resumed connection finds the ticket an earlier one left (with
        // thousands in flight the first thousands find none).
        let (v, met) = pinned_ramp(plan, kind, resumption, &[("--concurrency", s(16))])?;
        // Then the same server fresh, ramped by the independent client (its own rustls
        // client and resumption cache), as few in flight.
        let independent = upgrade_client(plan, kind, resumption, Some(16))
            .unwrap_or_else(|e| json!({ "error": e }));
        Ok((v, met, independent))
    })?;
    let mut summary = Vec::new();
    for (&(kind, resumption), tries) in steps.iter().zip(&rounds) {
        for (round, (v, met, _)) in tries.iter().enumerate() {
            let met = *met;
            let us = v["server_cpu_us_per_upgrade"].as_f64();
            runs.push(json!({
                "server": kind.name(),
                "client": "loadgen",
                "resumption": resumption,
                "round": round,
                "connections": plan.upgrade_connections,
                "met": met,
                "established": v["established"],
                "tls_handshakes": v["tls_handshakes"],
                "server_cpu_us_per_connection": us,
                "connections_per_server_cpu_s": us.map(|u| (1e6 / u.max(1e-9)).round()),
                "peak_upgrades_per_s": v["peak_upgrades_per_s"],
                "connect_upgrade_latency_us": strip_hdr(&v["connect_upgrade_latency_us"]),
                "client_shape": client_shape(&[v], "loadgen"),
            }));
        }
        for (round, (_, _, i)) in tries.iter().enumerate() {
            let us = i["server_cpu_us_per_upgrade"].as_f64();
            let failures = upgrade_client_failures(i);
            runs.push(json!({
                "server": kind.name(),
                "client": "upgrade-client",
                "resumption": resumption,
                "round": round,
                "connections": plan.upgrade_connections,
                "met": i.get("error").is_none() && failures == 0,
                "error": i.get("error").or(i.get("first_error")).filter(|e| !e.is_null()),
                "established": i["established"],
                "failures": failures,
                "tls_handshakes": i["tls_handshakes"],
                "closes_without_close_notify": i["closes_without_close_notify"],
                "server_cpu_us_per_connection": us,
                "connections_per_server_cpu_s": us.map(|u| (1e6 / u.max(1e-9)).round()),
                "upgrades_per_s": i["upgrades_per_s"],
                "connect_upgrade_latency_us": strip_hdr(&i["connect_upgrade_latency_us"]),
                "client_shape": client_shape(&[i], "client"),
            }));
        }
        // Per client, the rounds' median with its spread: what the table's summary shows.
        let us = |v: &Value| v["server_cpu_us_per_upgrade"].as_f64();
        let by_loadgen: Vec<Option<f64>> = tries.iter().map(|t| us(&t.0)).collect();
        let by_client: Vec<Option<f64>> = tries.iter().map(|t| us(&t.2)).collect();
        summary.push(json!({
            "server": kind.name(),
            "resumption": resumption,
            "loadgen": median_spread(&by_loadgen),
            "upgrade_client": median_spread(&by_client),
        }));
    }
    // Against uWebSockets: server CPU per connection set up over TLS, the medians of the
    // rounds, with each client and each resumption setting (as per upgrade: at most its).
    let mut targets = Vec::new();
    if plan.peers.contains(&Kind::UwsTls) {
        let median = |server: &str, resumption: &str, client: &str| {
            summary
                .iter()
                .find(|x| x["server"] == server && x["resumption"] == resumption)
                .and_then(|x| x[client]["median"].as_f64())
        };
        for (resumption, what) in [("off", "full handshakes"), ("always", "resumed")] {
            for (client, by) in [("loadgen", ""), ("upgrade_client", ", independent client")] {
                targets.push(at_most(
                    format!(
                        "server CPU per TLS connection ({what}, median of rounds){by}, holdfast / uwebsockets"
                    ),
                    ratio(
                        median(Kind::HoldfastTls.name(), resumption, client),
                        median(Kind::UwsTls.name(), resumption, client),
                    ),
                    1.0,
                ));
            }
        }
    }
    Ok(json!({
        "runs": runs,
        "summary": summary,
        "targets": targets,
        "uws_tls_library": super::uws::tls_library().filter(|_| plan.peers.contains(&Kind::UwsTls)),
    }))
}

// ------------------------------------------------------------------------------- echo

/// The cache-line round trip between the server's CPU and the client's, where both are one
/// CPU each (`crate::cpupair`).
fn cpu_pair(server: Option<&str>, client: Option<&str>) -> Option<f64> {
    let (a, b) = (server?.parse().ok()?, client?.parse().ok()?);
    crate::cpupair::round_trip_ns(a, b)
}

/// `v` with the round trips measured before and after it (ns; null where not measured).
fn with_cpu_pair(mut v: Value, before: Option<f64>, after: Option<f64>) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("cpu_pair_round_trip_ns".into(), json!([before, after]));
    }
    v
}

/// Echo messages per server-CPU-second at 100 and 1,000 connections, and server CPU per
/// upgrade, each server pinned to its own core and the loadgen to another (one worker / one
/// runtime thread each: "single-threaded" throughout).
pub(super) fn echo(plan: &Plan) -> Result<Value, String> {
    let (srv_cpu, lg_cpu) = plan.pinning();
    let mut runs = Vec::new();
    let mut upgrades = Vec::new();
    let servers = kinds(
        plan,
        &[
            Kind::HoldfastTls,
            Kind::Uws,
            Kind::Fastwebsockets,
            Kind::TokioTungstenite,
            Kind::NodeWs,
        ],
    );
    // Rounds, each on fresh servers: one echo figure moves ±20% run to run here, so a row
    // is the median round (its own figures, consistent with each other) with the spread
    // beside it. The rounds are interleaved over every row (server × connections): run back
    // to back, one server's rounds fell in one spell of the host and another's in the next.
    // holdfast's io floor (its rings with only an echo above them) runs beside holdfast in
    // the echo rounds, not in the upgrades: what the io layer and the kernel cost with
    // nothing above them, so the gap between it and holdfast is holdfast's own code.
    let mut echoing = servers.clone();
    if plan.url.is_none() {
        echoing.insert(1, Kind::EchoFloor);
    }
    let steps: Vec<(Kind, usize)> = echoing
        .iter()
        .flat_map(|&kind| plan.echo_connections.iter().map(move |&c| (kind, c)))
        .collect();
    let rounds = interleaved(plan.echo_rounds, &steps, |round, &(kind, c)| {
        eprintln!("echo: {} × {c} (round {})", kind.name(), round + 1);
        let server = start(plan, kind, srv_cpu.as_deref(), Some(1), &[])?;
        let t = target(plan, server.as_ref());
        let args = t.args(
            "echo",
            "/echo",
            c,
            &[
                ("--size", s(32)),
                ("--warmup", s(plan.warmup)),
                ("--duration", s(plan.measure_seconds)),
                ("--workers", s(1)),
            ],
        );
        // How far apart the two CPUs were around this round (`crate::cpupair`): the host
        // may move the vCPUs, and the rounds' figures move with it.
        let before = cpu_pair(srv_cpu.as_deref(), lg_cpu.as_deref());
        let (v, met) = loadgen(&args, lg_cpu.as_deref(), |_| {})?;
        let after = cpu_pair(srv_cpu.as_deref(), lg_cpu.as_deref());
        let v = with_cpu_pair(v, before, after);
        drop(server);
        // The same server fresh, driven by the independent client on the same CPU.
        let independent = if kind == Kind::HoldfastTls {
            Value::Null // the independent echo client speaks ws:// only
        } else {
            let server = start(plan, kind, srv_cpu.as_deref(), Some(1), &[])?;
            let t = target(plan, server.as_ref());
            echo_client(plan, &t, c, lg_cpu.as_deref()).unwrap_or_else(|e| json!({ "error": e }))
        };
        Ok((v, met, independent))
    })?;
    for (&(kind, c), tries) in steps.iter().zip(&rounds) {
        let key = "messages_per_server_cpu_s";
        let lg: Vec<Option<f64>> = tries.iter().map(|t| t.0[key].as_f64()).collect();
        let ind: Vec<Option<f64>> = tries.iter().map(|t| t.2[key].as_f64()).collect();
        let (v, _, _) = &tries[median_index(&lg)];
        let mut independent = tries[median_index(&ind)].2.clone();
        if let Some(o) = independent.as_object_mut() {
            o.insert("spread".into(), median_spread(&ind));
        }
        runs.push(json!({
            "server": kind.name(),
            "connections": c,
            "rounds": tries.len(),
            "met": tries.iter().all(|t| t.1),
            "independent_client": independent,
            "round_trips": v["round_trips"],
            "messages_per_s": v["messages_per_s"],
            "server_cpu_seconds": v["server_cpu_seconds"],
            "messages_per_server_cpu_s": v["messages_per_server_cpu_s"],
            "messages_per_server_cpu_s_spread": median_spread(&lg),
            "rounds_detail": tries.iter().map(|t| json!({
                "messages_per_server_cpu_s": t.0["messages_per_server_cpu_s"],
                "cpu_pair_round_trip_ns": t.0["cpu_pair_round_trip_ns"],
            })).collect::<Vec<_>>(),
            "loadgen_cpu_seconds": v["loadgen_cpu_seconds"],
            "rtt_us": v["rtt_us"],
            "failed_total": v["failed_total"],
        }));
    }
    // Upgrades and closes: each round a fresh server per kind, the kinds in turn (the host
    // drifts over the minute this takes; interleaved, the drift falls on all alike); ramp,
    // hold 0.5 s, every connection closes (the loadgen's Close, the server's echo and TCP
    // close). Then the same server fresh, ramped and closed by the independent client.
    let ramps = interleaved(plan.upgrade_rounds, &servers, |round, &kind| {
        eprintln!("upgrades and closes: {} (round {})", kind.name(), round + 1);
        let (v, met) = pinned_ramp(plan, kind, None, &[])?;
        let independent =
            upgrade_client(plan, kind, None, None).unwrap_or_else(|e| json!({ "error": e }));
        Ok((v, met, independent))
    })?;
    for (&kind, rounds) in servers.iter().zip(&ramps) {
        let spread = |key: &str| {
            let v: Vec<Option<f64>> = rounds.iter().map(|(v, _, _)| v[key].as_f64()).collect();
            median_spread(&v)
        };
        let (v, _, _) = &rounds[rounds.len() / 2];
        let independent: Vec<&Value> = rounds.iter().map(|(_, _, i)| i).collect();
        upgrades.push(json!({
            "server": kind.name(),
            "connections": plan.upgrade_connections,
            "rounds": rounds.len(),
            "met": rounds.iter().all(|(_, m, _)| *m),
            "independent_client": independent_ramps(&independent),
            "established": v["established"],
            "peak_upgrades_per_s": spread("peak_upgrades_per_s")["median"],
            "server_cpu_us_per_upgrade": spread("server_cpu_us_per_upgrade")["median"],
            "server_cpu_us_per_upgrade_spread": spread("server_cpu_us_per_upgrade"),
            "server_cpu_us_per_close": spread("server_cpu_us_per_close")["median"],
            "server_cpu_us_per_close_spread": spread("server_cpu_us_per_close"),
            // What the client looked like, medians of the rounds (see `client_shape`).
            "client_shape": client_shape(&rounds.iter().map(|(v, _, _)| v).collect::<Vec<_>>(), "loadgen"),
            "connect_upgrade_latency_us": strip_hdr(&v["connect_upgrade_latency_us"]),
        }));
    }
    let find = |list: &[Value], k: &str, key: &str, c: Option<usize>| {
        list.iter()
            .find(|r| r["server"] == k && c.is_none_or(|c| r["connections"] == c))
            .and_then(|r| r[key].as_f64())
    };
    let mut targets = Vec::new();
    if plan.peers.contains(&Kind::Fastwebsockets) && plan.url.is_none() {
        for &c in &plan.echo_connections {
            let r = ratio(
                find(&runs, "holdfast", "messages_per_server_cpu_s", Some(c)),
                find(
                    &runs,
                    "fastwebsockets",
                    "messages_per_server_cpu_s",
                    Some(c),
                ),
            );
            targets.push(at_least(
                format!("echo msgs per server-CPU-s, {c} connections, holdfast / fastwebsockets"),
                r,
                1.5,
            ));
        }
        let r = ratio(
            find(&upgrades, "holdfast", "server_cpu_us_per_upgrade", None),
            find(
                &upgrades,
                "fastwebsockets",
                "server_cpu_us_per_upgrade",
                None,
            ),
        );
        targets.push(at_most(
            "server CPU per upgrade, holdfast / fastwebsockets".into(),
            r,
            0.5,
        ));
    }
    if plan.peers.contains(&Kind::Uws) && plan.url.is_none() {
        for (key, what) in [
            ("server_cpu_us_per_upgrade", "upgrade"),
            ("server_cpu_us_per_close", "close"),
        ] {
            let r = ratio(
                find(&upgrades, "holdfast", key, None),
                find(&upgrades, "uwebsockets", key, None),
            );
            targets.push(at_most(
                format!("server CPU per {what} (median of rounds), holdfast / uwebsockets"),
                r,
                1.0,
            ));
            let independent = |server: &str| {
                upgrades
                    .iter()
                    .find(|x| x["server"] == server)
                    .and_then(|x| x["independent_client"][key].as_f64())
            };
            targets.push(at_most(
                format!("server CPU per {what} (median of rounds), independent client, holdfast / uwebsockets"),
                ratio(independent("holdfast"), independent("uwebsockets")),
                1.0,
            ));
        }
        for &c in &plan.echo_connections {
            let r = ratio(
                find(&runs, "holdfast", "messages_per_server_cpu_s", Some(c)),
                find(&runs, "uwebsockets", "messages_per_server_cpu_s", Some(c)),
            );
            targets.push(at_least(
                format!("echo msgs per server-CPU-s, {c} connections, holdfast / uwebsockets"),
                r,
                1.5,
            ));
            let independent = |server: &str| {
                runs.iter()
                    .find(|x| x["server"] == server && x["connections"] == c)
                    .and_then(|x| x["independent_client"]["messages_per_server_cpu_s"].as_f64())
            };
            let r = ratio(independent("holdfast"), independent("uwebsockets"));
            targets.push(at_least(
                format!("echo msgs per server-CPU-s, {c} connections, independent client, holdfast / uwebsockets"),
                r,
                1.5,
            ));
            // The loadgen must drive holdfast at least as efficiently as the independent
            // client does.
            let r = ratio(
                find(&runs, "holdfast", "messages_per_server_cpu_s", Some(c)),
                independent("holdfast"),
            );
            targets.push(at_least(
                format!("holdfast echo msgs per server-CPU-s, {c} connections, loadgen / independent client"),
                r,
                1.0,
            ));
        }
    }
    // What the floor says of the gap: per connection count, the floor against uWebSockets
    // (the io layer and the kernel) and holdfast against its floor (holdfast's own layers).
    let floor: Vec<Value> = plan
        .echo_connections
        .iter()
        .filter_map(|&c| {
            let f = find(
                &runs,
                Kind::EchoFloor.name(),
                "messages_per_server_cpu_s",
                Some(c),
            )?;
            Some(json!({
                "connections": c,
                "messages_per_server_cpu_s": f,
                "floor_over_uwebsockets": ratio(
                    Some(f),
                    find(&runs, "uwebsockets", "messages_per_server_cpu_s", Some(c)),
                ),
                "holdfast_over_floor": ratio(
                    find(&runs, "holdfast", "messages_per_server_cpu_s", Some(c)),
                    Some(f),
                ),
            }))
        })
        .collect();
    Ok(json!({
        "pinning": {"server_cpu": srv_cpu, "loadgen_cpu": lg_cpu},
        "runs": runs,
        "upgrades": upgrades,
        "floor": floor,
        "targets": targets,
    }))
}

/// Run one of the bench's own clients (`cmd`, named `what`) against `t` for the plan's
/// warm-up and measurement, to its end; its JSON summary.
fn client_json(
    mut cmd: std::process::Command,
    what: &str,
    plan: &Plan,
    t: &Target,
) -> Result<Value, String> {
    cmd.args([
        "--warmup",
        &s(plan.warmup),
        "--duration",
        &s(plan.measure_seconds),
    ]);
    run_json(cmd, what, t)
}

/// Run a bench client (`what`) told the server's PID when `t` has one; its JSON summary,
/// or why it failed.
fn run_json(mut cmd: std::process::Command, what: &str, t: &Target) -> Result<Value, String> {
    if let Some(p) = t.pid {
        cmd.args(["--server-pid", &s(p)]);
    }
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{what} output: {e}"))
}

/// `holdfast-bench`, run on `cpu` when given.
fn bench_command(cpu: Option<&str>) -> std::process::Command {
    let exe = super::procs::bench_exe();
    match cpu {
        Some(cpu) => {
            let mut c = std::process::Command::new("taskset");
            c.args(["-c", cpu]).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    }
}

/// Run `holdfast-bench echo-client` (the independent client) against `t`, pinned to `cpu`.
fn echo_client(plan: &Plan, t: &Target, c: usize, cpu: Option<&str>) -> Result<Value, String> {
    let mut cmd = bench_command(cpu);
    cmd.args(["echo-client", "--url"])
        .arg(format!("{}/echo", t.url_base))
        .args(["--connections", &s(c), "--size", "32"]);
    client_json(cmd, "echo-client", plan, t)
}

// ------------------------------------------------------------------------------- fanout

/// One topic to S subscribers, and many topics: holdfast (its defaults, and eager where
/// uWebSockets is judged) beside uWebSockets, the tokio-tungstenite broadcast peer
/// and its own event-stream and long-poll transports.
pub(super) fn fanout(plan: &Plan) -> Result<Value, String> {
    let uws = plan.url.is_none() && plan.peers.contains(&Kind::Uws);
    let servers = kinds(
        plan,
        &[
            Kind::Uws,
            Kind::Broadcast,
            Kind::HoldfastSse,
            Kind::HoldfastPoll,
        ],
    );
    let steps = fanout_steps(&servers, &plan.fanout_cases, uws, plan.pinning());
    // Rounds interleaved over every step: one run of a step is noisy (a sub-millisecond
    // tail moves several-fold between runs on this machine), and the host's drift over the
    // half hour this takes falls on every step alike.
    let rounds = plan.fanout_rounds;
    let tries = interleaved(rounds, &steps, |round, st| {
        if rounds > 1 {
            eprintln!("fanout: round {} of {rounds}", round + 1);
        }
        fanout_step_with(plan, st.server, &st.place, st.via, st.load, None)
    })?;
    let mut runs: Vec<Value> = tries.iter().map(|t| fanout_row(t)).collect();
    // Would another client see the same? The first case again against uWebSockets, each
    // server fresh and where it puts itself, driven by the independent fan-out client
    // (`holdfast-bench fanout-client`: tokio, epoll, no client code shared with the loadgen) with
    // both publishers. Its rows are judged against each other only, each the median of
    // as many interleaved rounds as the loadgen's.
    if let Some(&(subs, 1, rate)) = plan.fanout_cases.first().filter(|_| uws) {
        let server = |kind, flags| FanoutServer {
            kind,
            workers: None,
            flags,
        };
        let mut steps = Vec::new();
        for via in [Via::Admin, Via::Ws] {
            for s in [
                server(Kind::Holdfast, None),
                server(Kind::Holdfast, Some(EAGER_SENDS)),
                server(Kind::Uws, None),
            ] {
                steps.push((s, via));
            }
        }
        let tries = interleaved(rounds, &steps, |round, &(s, via)| {
            if rounds > 1 {
                eprintln!(
                    "fanout: independent client, round {} of {rounds}",
                    round + 1
                );
            }
            fanout_client_step(plan, s, via, (subs, rate))
        })?;
        runs.extend(tries.iter().map(|t| fanout_row(t)));
    }
    let targets = fanout_targets(&runs);
    Ok(json!({ "runs": runs, "targets": targets }))
}

/// The fan-out runs of the section, in order: each of `servers` (holdfast first) over each
/// of `cases` (subscribers, topics, publishes/s); against uWebSockets (`uws`) also placed
/// alike on the CPUs of `pinning` (server, loadgen), published from a client socket, and
/// holdfast with eager sends ([`EAGER_SENDS`]).
fn fanout_steps(
    servers: &[Kind],
    cases: &[(usize, usize, usize)],
    uws: bool,
    (srv_cpu, lg_cpu): (Option<String>, Option<String>),
) -> Vec<FanoutStep> {
    let mut steps: Vec<FanoutStep> = Vec::new();
    for &kind in servers {
        // Against uWebSockets (one thread) one holdfast worker runs beside it, each placed
        // alike: both confined to the first CPU (where one holdfast worker pins itself)
        // with the loadgen on every CPU; and, in the first case, each server alone on a
        // CPU with the loadgen alone on another. On loopback the placement moves the cost
        // per delivery by half and the latency by a third (docs/benchmarks.md): only
        // servers placed alike are compared. Holdfast's defaults are compared with
        // uWebSockets where the scheduler puts it.
        let alike: Vec<(Place, bool)> = match (srv_cpu.clone(), lg_cpu.clone()) {
            (Some(s), Some(l)) if uws && matches!(kind, Kind::Holdfast | Kind::Uws) => vec![
                (Place::Shared(l.clone()), true),
                (
                    Place::Apart {
                        server: s,
                        loadgen: l,
                    },
                    false,
                ),
            ],
            _ => Vec::new(),
        };
        for (case, &load) in cases.iter().enumerate() {
            // Against uWebSockets, the one-topic cases are also published from a client
            // socket (its idiomatic pub/sub: the publish is handled on its one thread).
            let mut vias = vec![Via::Admin];
            if uws && load.1 == 1 && matches!(kind, Kind::Holdfast | Kind::Uws) {
                vias.push(Via::Ws);
            }
            // Holdfast with eager sends beside its defaults (which space them while a worker
            // paces), where uWebSockets is judged at the rates it sustains (the one-topic
            // cases among the first two): what the defaults' spacing buys, and costs.
            let variants: &[Option<&'static str>] =
                if uws && kind == Kind::Holdfast && case < 2 && load.1 == 1 {
                    &[None, Some(EAGER_SENDS)]
                } else {
                    &[None]
                };
            for via in vias {
                for &flags in variants {
                    let step = |workers, place| FanoutStep {
                        server: FanoutServer {
                            kind,
                            workers,
                            flags,
                        },
                        place,
                        via,
                        load,
                    };
                    steps.push(step(None, Place::Own));
                    for (place, every_case) in &alike {
                        // Eager rows: where each places itself and beside uWebSockets
                        // confined alike with the loadgen on every CPU.
                        if *every_case || (case == 0 && flags.is_none()) {
                            let workers = (kind == Kind::Holdfast).then_some(1);
                            steps.push(step(workers, place.clone()));
                        }
                    }
                }
            }
        }
    }
    steps
}

/// One fan-out run of `subs` subscribers of one topic on a fresh `server`, `via` publishing
/// `rate` a second, driven by `holdfast-bench fanout-client`.
fn fanout_client_step(
    plan: &Plan,
    server: FanoutServer,
    via: Via,
    (subs, rate): (usize, usize),
) -> Result<Value, String> {
    let label = server.label();
    eprintln!(
        "fanout: {label} × {subs} subscribers, {rate}/s, {} publish, independent client",
        via.name()
    );
    let (_server, t, admin, path) = fanout_server(plan, server, None, via, subs)?;
    let mut cmd = std::process::Command::new(super::procs::bench_exe());
    cmd.args(["fanout-client", "--url", &format!("{}{path}", t.url_base)])
        .args(["--admin", &admin, "--subscribers", &s(subs)])
        .args(["--publish-rate", &s(rate), "--publish-via", via.name()])
        .args(["--settle", "5"]);
    let v = client_json(cmd, "fanout-client", plan, &t)?;
    let us = |k: &str| v["latency_ms"][k].as_f64().map(|ms| ms * 1000.0);
    Ok(json!({
        "server": label,
        "independent": true,
        "client": v["client"],
        "placement": Place::Own.name(),
        "publish_via": via.name(),
        "subscribers": subs,
        "topics": 1,
        "publish_rate": rate,
        "published": v["published_measured"],
        "deliveries": v["deliveries"],
        "deliveries_per_s": v["deliveries_per_s"],
        "deliveries_per_server_cpu_s": v["deliveries_per_server_cpu_s"],
        "server_cpu_seconds": v["server_cpu_seconds"],
        "measure_seconds": v["measure_seconds"],
        "latency_us": {"p50": us("p50"), "p99": us("p99"), "p99.9": us("p99.9"), "max": us("max")},
        "lost": v["lost"],
        "lost_in_stream": v["lost"],
        "unreceived_at_end": v["behind_at_end"],
        "duplicates": v["repeated"],
        "publishes_unanswered": v["publishes_unanswered"],
        "publishes_refused": v["publishes_refused"],
        "errors": v["errors"],
        "client_cpu_seconds": v["client_cpu_seconds"],
        "deliveries_per_read": v["deliveries_per_read"],
        "client_unread": v["client_unread"],
    }))
}

/// One fan-out measurement the section repeats in rounds: a server, its placement, its
/// publisher, and (subscribers, topics, publishes/s).
#[derive(Debug)]
struct FanoutStep {
    server: FanoutServer,
    place: Place,
    via: Via,
    load: (usize, usize, usize),
}

/// Where a fan-out run's publisher publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// `POST /publish` on the admin port.
    Admin,
    /// `{"op":"publish",…}` over a client WebSocket (holdfast with `--client-publish`).
    Ws,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Ws => "ws",
        }
    }
}

/// Where a fan-out run's server and load generator run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
    /// Where each puts itself: holdfast pins its workers to the CPUs in order (one
    /// worker: the first), uWebSockets lets the scheduler place its thread, the loadgen
    /// pins engine thread t to CPU t.
    Own,
    /// The server confined to this CPU, the loadgen on every CPU.
    Shared(String),
    /// The server alone on one CPU, the loadgen (one engine thread) alone on another.
    Apart { server: String, loadgen: String },
}

impl Place {
    fn name(&self) -> String {
        match self {
            Self::Own => "own".into(),
            Self::Shared(c) => format!("server on CPU {c}, loadgen on all"),
            Self::Apart { server, loadgen } => {
                format!("server on CPU {server}, loadgen on CPU {loadgen}")
            }
        }
    }

    fn server_cpus(&self) -> Option<&str> {
        match self {
            Self::Own => None,
            Self::Shared(c) => Some(c),
            Self::Apart { server, .. } => Some(server),
        }
    }

    fn loadgen_cpus(&self) -> Option<&str> {
        match self {
            Self::Apart { loadgen, .. } => Some(loadgen),
            _ => None,
        }
    }
}

/// Name of a holdfast row started with `workers` (defaults: "holdfast").
fn holdfast_label(workers: Option<usize>) -> String {
    match workers {
        Some(w) => format!("holdfast --workers {w}"),
        None => "holdfast".into(),
    }
}

/// Name of a fan-out row's server.
fn server_label(kind: Kind, workers: Option<usize>) -> String {
    if kind == Kind::Holdfast {
        holdfast_label(workers)
    } else {
        kind.name().to_string()
    }
}

/// A fresh server for a fan-out of `subs` subscribers (confined to `cpus` when given;
/// holdfast takes client publishes when `via` is a WebSocket): the server, its target, its
/// admin address and its pub/sub path.
fn fanout_server(
    plan: &Plan,
    server: FanoutServer,
    cpus: Option<&str>,
    via: Via,
    subs: usize,
) -> Result<(Option<Server>, Target, String, &'static str), String> {
    let FanoutServer {
        kind,
        workers,
        flags,
    } = server;
    let max = s(subs * 2);
    let mut extra = vec!["--max-connections", &max];
    if via == Via::Ws && kind == Kind::Holdfast {
        extra.push("--client-publish");
    }
    if let Some(f) = flags.filter(|_| kind == Kind::Holdfast) {
        extra.extend(f.split_whitespace());
    }
    let server = start(plan, kind, cpus, workers, &extra)?;
    let t = target(plan, server.as_ref());
    let admin = t
        .admin
        .clone()
        .ok_or("fanout needs the server's admin address (--admin)")?;
    Ok((server, t, admin, kind.http_path().unwrap_or("/ws")))
}

/// Whether fan-out rows `a` and `b` ran the same case in the same placement with the same
/// client (the rows that may be compared).
pub(super) fn same_fanout_case(a: &Value, b: &Value) -> bool {
    [
        "subscribers",
        "topics",
        "publish_rate",
        "publish_via",
        "placement",
        "independent",
    ]
    .iter()
    .all(|k| a[k] == b[k])
}

/// Whether fan-out row `r` is holdfast over WebSocket (its defaults, or with flags: a
/// worker count, eager sends).
pub(super) fn is_holdfast_ws(r: &Value) -> bool {
    r["server"]
        .as_str()
        .is_some_and(|n| n == "holdfast" || n.starts_with("holdfast --"))
}

/// How far fan-out row `r` fell short of the publishes it was asked for over its
/// measurement, if it did (below 90% of them, with two messages of timing slack): a server
/// that could not keep up timed only the few messages it handled, so its latency and its
/// CPU per delivery describe a collapse, not a cost.
fn shortfall(r: &Value) -> Option<String> {
    // The rate is the publisher's total, spread over the topics.
    let asked = r["publish_rate"].as_f64()? * r["measure_seconds"].as_f64()?;
    let published = r["published"].as_f64()?;
    (published < 0.9 * asked - 2.0).then(|| {
        format!(
            "{} did not keep up: {published} of {asked:.0} publishes",
            r["server"].as_str().unwrap_or("?")
        )
    })
}

/// The verdict `v` of a pair where a server fell behind. uWebSockets behind: not judged —
/// the goals hold at the rates uWebSockets sustains, and a ratio against a collapse would
/// flatter holdfast. Holdfast behind (uWebSockets not): not met, whatever the ratio says.
fn judged(mut v: Value, h: &Value, u: &Value) -> Value {
    match (shortfall(h), shortfall(u)) {
        (_, Some(why)) => {
            v["met"] = Value::Null;
            v["why"] = json!(why);
        }
        (Some(why), None) => {
            v["met"] = json!(false);
            v["why"] = json!(why);
        }
        (None, None) => {}
    }
    v
}

/// The goals against uWebSockets, per case and placement: latency p50 and p99 at
/// most uWebSockets', deliveries per server-CPU-s at least 1.5x. Holdfast's defaults meet
/// uWebSockets placed by the scheduler; one holdfast worker meets uWebSockets placed alike;
/// each holdfast row with eager sends meets uWebSockets placed as it is. A pair where
/// either fell behind the asked rate is marked so (`judged`).
fn fanout_targets(runs: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for u in runs.iter().filter(|r| r["server"] == "uwebsockets") {
        for h in runs
            .iter()
            .filter(|r| is_holdfast_ws(r) && same_fanout_case(r, u))
        {
            let place = match u["placement"].as_str() {
                Some("own") | None => String::new(),
                Some(p) => format!(" [{p}]"),
            };
            let client = if u["independent"] == true {
                ", independent client"
            } else {
                ""
            };
            let rounds = match (h["rounds"].as_u64(), u["rounds"].as_u64()) {
                (Some(a), Some(b)) if a > 1 && a == b => format!(", median of {a} rounds"),
                _ => String::new(),
            };
            let case = format!(
                "{} × {} at {}/s ({} publish), {}{place}{client}{rounds}",
                u["topics"],
                u["subscribers"],
                u["publish_rate"],
                u["publish_via"].as_str().unwrap_or("admin"),
                h["server"].as_str().unwrap_or("")
            );
            for (k, what) in [("p50", "latency p50"), ("p99", "latency p99")] {
                // An empty histogram (a peer that delivered nothing timed) is no figure.
                let (hv, uv) = (
                    latency_us(h, k).filter(|v| *v > 0.0),
                    latency_us(u, k).filter(|v| *v > 0.0),
                );
                let v = at_most(
                    format!("{case}: {what}, holdfast / uwebsockets"),
                    hv.zip(uv).map(|(a, b)| a / b.max(1.0)),
                    1.0,
                );
                out.push(judged(v, h, u));
            }
            let k = "deliveries_per_server_cpu_s";
            let (hv, uv) = (h[k].as_f64(), u[k].as_f64());
            let v = at_least(
                format!("{case}: deliveries per server-CPU-s, holdfast / uwebsockets"),
                hv.zip(uv).map(|(a, b)| a / b.max(1.0)),
                1.5,
            );
            out.push(judged(v, h, u));
        }
    }
    out
}

/// One fan-out run: `subs` subscribers over `topics` topics of a fresh `kind` server placed
/// at `place`, `via` publishing `rate` messages per second per topic.
pub(super) fn fanout_step(
    plan: &Plan,
    kind: Kind,
    workers: Option<usize>,
    place: &Place,
    via: Via,
    load: (usize, usize, usize),
) -> Result<Value, String> {
    let server = FanoutServer {
        kind,
        workers,
        flags: None,
    };
    fanout_step_with(plan, server, place, via, load, None)
}

/// The flags of holdfast's eager fan-out rows, beside its defaults where uWebSockets is
/// judged: a worker that paces pauses its turns instead of spacing its subscribers' sends
/// (the defaults until the forty-ninth sitting). Where the loadgen shares the CPUs at 18k
/// subscribers the defaults space sends at 195 ms (`--fanout-pace-interval`): the longest
/// interval below a Linux client's minimum retransmission timeout (200 ms); above it every
/// send draws an immediate ACK from the client, which loopback charges to the server
/// (6.8–7.2 µs of server CPU per send at 230 ms against 5.6–6.0 at 195, forty-fourth
/// sitting). Until the forty-ninth sitting these rows were the spaced ones
/// (`--fanout-send-interval 195ms`) beside eager defaults.
pub const EAGER_SENDS: &str = "--fanout-pace-interval 0";

/// The server of a fan-out run: which, with how many threads (holdfast: None for its
/// defaults), and holdfast's flags for another way of sending ([`EAGER_SENDS`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct FanoutServer {
    pub kind: Kind,
    pub workers: Option<usize>,
    pub flags: Option<&'static str>,
}

impl FanoutServer {
    /// The row's name: the server and the flags that differ from its defaults.
    fn label(&self) -> String {
        let mut label = server_label(self.kind, self.workers);
        if let Some(f) = self.flags {
            label = format!("{label} {f}");
        }
        label
    }
}

/// [`fanout_step`] for `server`, with the loadgen's long-poll clients connecting
/// `poll_connections` (`kept` or `per-poll`; None: the loadgen's default, kept).
pub(super) fn fanout_step_with(
    plan: &Plan,
    server: FanoutServer,
    place: &Place,
    via: Via,
    (subs, topics, rate): (usize, usize, usize),
    poll_connections: Option<&str>,
) -> Result<Value, String> {
    let mut label = server.label();
    if let Some(p) = poll_connections {
        label = format!("{label} ({p} connections)");
    }
    eprintln!(
        "fanout: {label} × {subs} subscribers, {topics} topics, {rate}/s, {} publish, placement: {}",
        via.name(),
        place.name()
    );
    let (server, t, admin, path) = fanout_server(plan, server, place.server_cpus(), via, subs)?;
    let mut more = vec![
        ("--topics", s(topics)),
        ("--publish-rate", s(rate)),
        ("--admin", admin),
        ("--warmup", s(plan.warmup)),
        ("--duration", s(plan.measure_seconds)),
        ("--rate", s(plan.ramp_rate)),
        ("--settle", s(5)),
        ("--publish-via", s(via.name())),
    ];
    if let Some(p) = poll_connections {
        more.push(("--poll-connections", s(p)));
    }
    let args = t.args("fanout", path, subs, &more);
    // Where the server's threads may run, read back once it is up (its workers pinned).
    let server_cpus = server.as_ref().map(|s| crate::proc::cpus_allowed(s.pid()));
    let (v, met) = loadgen(&args, place.loadgen_cpus(), |_| {})?;
    Ok(json!({
        "server": label,
        "placement": place.name(),
        "server_cpus": server_cpus,
        "client_cpus": v["client_cpus"],
        "publish_via": via.name(),
        "subscribers": subs,
        "topics": topics,
        "publish_rate": rate,
        "met": met,
        "published": v["published_during_measurement"],
        "deliveries": v["deliveries_during_measurement"],
        "deliveries_per_s": v["deliveries_per_s"],
        "deliveries_per_server_cpu_s": v["deliveries_per_server_cpu_s"],
        "server_cpu_seconds": v["server_cpu_seconds"],
        "measure_seconds": v["measure_seconds"],
        "latency_us": v["publish_to_delivery_us"],
        "lost": v["lost_in_stream"].as_u64().unwrap_or(0) + v["lost_at_end"].as_u64().unwrap_or(0),
        // Skipped in a subscriber's stream without a gap notice: lost.
        "lost_in_stream": v["lost_in_stream"],
        // Published but not yet received when the settle ended: behind, not dropped.
        "unreceived_at_end": v["lost_at_end"],
        "duplicates": v["duplicates"],
        "reordered": v["reordered"],
        "gaps": v["gaps"],
        "loadgen_cpu_seconds": v["loadgen_cpu_seconds"],
        "deliveries_per_read": v["deliveries_per_read"],
        "client_unread": v["client_unread"],
    }))
}

/// The long-poll rung again on a fresh server, driven by `holdfast-bench poll-client` (the
/// independent client: its own pollers and publisher, no code shared with the loadgen) at
/// the same subscribers and rate: does another client see the loadgen's figures?
pub(super) fn poll_client_step(plan: &Plan, subs: usize, rate: usize) -> Result<Value, String> {
    eprintln!("fanout: holdfast-poll × {subs} subscribers, {rate}/s, independent client");
    let max = s(subs * 2);
    let server = start(
        plan,
        Kind::HoldfastPoll,
        None,
        None,
        &["--max-connections", &max],
    )?;
    let t = target(plan, server.as_ref());
    let admin = t
        .admin
        .clone()
        .ok_or("the poll client needs the admin address")?;
    let mut cmd = std::process::Command::new(super::procs::bench_exe());
    cmd.args(["poll-client", "--url", &t.url_base, "--admin", &admin])
        .args(["--pollers", &s(subs), "--publish-rate", &s(rate)]);
    let v = client_json(cmd, "poll-client", plan, &t)?;
    let us = |k: &str| v["latency_ms"][k].as_f64().map(|ms| ms * 1000.0);
    let short = v["deliveries_expected"]
        .as_u64()
        .zip(v["deliveries"].as_u64())
        .map(|(want, got)| want.saturating_sub(got));
    Ok(json!({
        "server": "holdfast-poll",
        "independent": true,
        "client": v["client"],
        "placement": "own",
        "subscribers": subs,
        "topics": 1,
        "publish_rate": rate,
        "deliveries": v["deliveries"],
        "deliveries_per_s": v["deliveries_per_s"],
        "deliveries_per_server_cpu_s": v["deliveries_per_server_cpu_s"],
        "server_cpu_seconds": v["server_cpu_seconds"],
        "measure_seconds": v["measure_seconds"],
        "latency_us": {"p50": us("p50"), "p99": us("p99"), "max": us("max")},
        // A message whose number was not one past the last (lost or repeated).
        "out_of_order": v["out_of_order"],
        // What the window's publishes owed every poller and had not reached it.
        "short_of_window": short,
        "polls_per_s": v["polls_per_s"],
        "poll_wait_ms": v["poll_wait_ms"],
        "messages_per_answer": v["messages_per_answer"],
        "errors": v["errors"],
        "client_cpu_seconds": v["client_cpu_seconds"],
    }))
}

// ------------------------------------------------------------------------------- storm

/// Every client cut at once, reconnecting with backoff and full jitter: time to full
/// recovery and the connections-over-time curve. Each step runs `storm_rounds` times, the
/// steps in turn within a round (a fresh server each time: the host drifts over the minutes
/// this takes, and interleaved the drift falls on all alike); a row is the round with the
/// median server CPU per reconnect, with the spread of every round beside it.
pub(super) fn storm(plan: &Plan) -> Result<Value, String> {
    let kinds = kinds(plan, &[Kind::TokioTungstenite, Kind::Uws]);
    // holdfast at the full size, and again at each fd-capped peer's size (like for like).
    let mut steps: Vec<(Kind, usize)> = vec![(Kind::Holdfast, plan.storm_connections)];
    for &k in kinds.iter().filter(|k| **k != Kind::Holdfast) {
        let n = fd_cap(k, plan.storm_connections);
        if !steps.contains(&(Kind::Holdfast, n)) {
            steps.push((Kind::Holdfast, n));
        }
    }
    steps.extend(
        kinds
            .iter()
            .filter(|k| **k != Kind::Holdfast)
            .map(|&k| (k, fd_cap(k, plan.storm_connections))),
    );
    let rounds = plan.storm_rounds.max(1);
    let tries = interleaved(rounds, &steps, |round, &(kind, n)| {
        eprintln!(
            "storm: {} × {n} (round {} of {rounds})",
            kind.name(),
            round + 1
        );
        storm_round(plan, kind, n)
    })?;
    let runs: Vec<Value> = steps
        .iter()
        .zip(&tries)
        .map(|(&(kind, n), t)| storm_row(kind, n, t))
        .collect();
    // Server CPU per reconnect (the cut connections torn down, the new ones set up) at the
    // same size: holdfast / uWebSockets.
    let mut targets = Vec::new();
    for u in runs.iter().filter(|r| r["server"] == "uwebsockets") {
        let h = runs
            .iter()
            .find(|r| r["server"] == "holdfast" && r["connections"] == u["connections"])
            .and_then(|r| r["server_cpu_us_per_reconnect"].as_f64());
        let w = u["server_cpu_us_per_reconnect"].as_f64();
        targets.push(at_most(
            format!(
                "server CPU per reconnect in a storm of {} (median of rounds), holdfast / uwebsockets",
                u["connections"]
            ),
            ratio(h, w),
            1.0,
        ));
    }
    Ok(json!({ "runs": runs, "targets": targets }))
}

/// One storm on a fresh `kind` holding `n`: the loadgen's figures.
fn storm_round(plan: &Plan, kind: Kind, n: usize) -> Result<Value, String> {
    let server = start(plan, kind, None, None, &["--max-connections", &s(n * 2)])?;
    let t = target(plan, server.as_ref());
    let args = t.args(
        "storm",
        "/echo",
        n,
        &[
            ("--rate", s(plan.ramp_rate)),
            ("--hold", s(1)),
            ("--duration", s(60)),
        ],
    );
    let (mut v, met) = loadgen(&args, None, |_| {})?;
    v["met"] = met.into();
    Ok(v)
}

/// A storm row from its rounds: the round with the median server CPU per reconnect (its
/// curve is the one charted), the spread of every round's CPU and recovery time, and
/// recovered / met only when every round was.
fn storm_row(kind: Kind, n: usize, tries: &[Value]) -> Value {
    let figures =
        |key: &str| -> Vec<Option<f64>> { tries.iter().map(|v| v[key].as_f64()).collect() };
    let cpu = figures("server_cpu_us_per_reconnect");
    let recovery = figures("recovery_seconds");
    let all = |key: &str| tries.iter().all(|v| v[key].as_bool() == Some(true));
    let v = &tries[median_index(&cpu)];
    json!({
        "server": kind.name(),
        "connections": n,
        "rounds": tries.len(),
        "met": all("met"),
        "held_before_event": v["held_before_event"],
        "lost": v["lost"],
        "reconnected": v["reconnected"],
        "recovered": all("recovered"),
        "recovery_seconds": v["recovery_seconds"],
        "recovery_seconds_spread": median_spread(&recovery),
        "peak_connects_per_s_after_event": v["peak_connects_per_s_after_event"],
        "server_cpu_seconds_storm": v["server_cpu_seconds_storm"],
        "server_cpu_us_per_reconnect": v["server_cpu_us_per_reconnect"],
        "server_cpu_us_per_reconnect_spread": median_spread(&cpu),
        "loadgen_cpu_seconds_storm": v["loadgen_cpu_seconds_storm"],
        "server_wakeups_per_reconnect": v["server_wakeups_per_reconnect"],
        "reconnect_delay_ms": strip_hdr(&v["reconnect_delay_ms"]),
        "failures": v["failures"],
        "series": v["series"],
    })
}

/// A fresh `kind` server with one worker, pinned: the loadgen (one thread, pinned apart)
/// ramps `upgrade_connections` to /echo at the ramp rate, holds them 0.5 s and closes them
/// (`tls`: the loadgen's resumption setting; `extra`: more loadgen options).
fn pinned_ramp(
    plan: &Plan,
    kind: Kind,
    tls: Option<&'static str>,
    extra: &[(&str, String)],
) -> Result<(Value, bool), String> {
    let (srv_cpu, lg_cpu) = plan.pinning();
    let server = start(plan, kind, srv_cpu.as_deref(), Some(1), &[])?;
    let mut t = target(plan, server.as_ref());
    if tls.is_some() {
        t.tls = tls;
    }
    let mut opts = vec![
        ("--rate", s(plan.ramp_rate)),
        ("--duration", s(0.5)),
        ("--workers", s(1)),
    ];
    opts.extend(extra.iter().cloned());
    let args = t.args("hold", "/echo", plan.upgrade_connections, &opts);
    loadgen(&args, lg_cpu.as_deref(), |_| {})
}

/// A fresh `kind` server with one worker, pinned as in [`pinned_ramp`], ramped to
/// `upgrade_connections` at the ramp rate, held 0.5 s and closed by `holdfast-bench
/// upgrade-client` (the independent client) where the loadgen would run.
/// Over wss:// it trusts the test CA and resumes (`always`) or not (any other setting: a
/// run's connections are all first connections); `concurrency` bounds the openings in
/// flight as the loadgen's `--concurrency` does.
fn upgrade_client(
    plan: &Plan,
    kind: Kind,
    resumption: Option<&str>,
    concurrency: Option<usize>,
) -> Result<Value, String> {
    let (srv_cpu, lg_cpu) = plan.pinning();
    let server = start(plan, kind, srv_cpu.as_deref(), Some(1), &[])?;
    let t = target(plan, server.as_ref());
    let mut cmd = bench_command(lg_cpu.as_deref());
    cmd.args(["upgrade-client", "--url"])
        .arg(format!("{}/echo", t.url_base))
        .args(["--connections", &s(plan.upgrade_connections)])
        .args(["--rate", &s(plan.ramp_rate), "--hold", "0.5"]);
    if let Some(n) = concurrency {
        cmd.args(["--concurrency", &s(n)]);
    }
    if t.tls.is_some() {
        let resume = if resumption == Some("always") {
            "always"
        } else {
            "off"
        };
        cmd.arg("--tls-ca")
            .arg(super::procs::tls_fixture("ca.pem"))
            .args(["--tls-resumption", resume]);
    }
    run_json(cmd, "upgrade-client", &t)
}

/// What went wrong in one run of the independent upgrade client: connections that did not
/// open, did not close, or ended without the server's Close.
fn upgrade_client_failures(run: &Value) -> u64 {
    [
        "failed_to_open",
        "failed_to_close",
        "closed_without_close_frame",
    ]
    .iter()
    .filter_map(|k| run[*k].as_u64())
    .sum()
}

/// The independent client's rounds of one server as one row: medians with their spread,
/// failures summed, the first error kept (Null when the server was not measured by it).
fn independent_ramps(rounds: &[&Value]) -> Value {
    if rounds.iter().all(|r| r.is_null()) {
        return Value::Null;
    }
    let spread = |key: &str| {
        let v: Vec<Option<f64>> = rounds.iter().map(|r| r[key].as_f64()).collect();
        median_spread(&v)
    };
    let sum = |key: &str| rounds.iter().filter_map(|r| r[key].as_u64()).sum::<u64>();
    let (up, close) = (
        spread("server_cpu_us_per_upgrade"),
        spread("server_cpu_us_per_close"),
    );
    json!({
        "client": rounds.iter().find_map(|r| r["client"].as_str()),
        "rounds": up["n"],
        "established": sum("established"),
        "failures": rounds.iter().map(|r| upgrade_client_failures(r)).sum::<u64>(),
        "errors": rounds.iter().filter(|r| r.get("error").is_some()).count(),
        "first_error": rounds.iter().find_map(|r| {
            r.get("error").or(r.get("first_error")).filter(|e| !e.is_null()).cloned()
        }),
        "upgrades_per_s": spread("upgrades_per_s")["median"],
        "server_cpu_us_per_upgrade": up["median"],
        "server_cpu_us_per_upgrade_spread": up,
        "server_cpu_us_per_close": close["median"],
        "server_cpu_us_per_close_spread": close,
        "client_cpu_seconds_ramp": spread("client_cpu_seconds_ramp")["median"],
        "client_shape": client_shape(rounds, "client"),
    })
}

/// What the client of a ramp-and-close looked like, medians over `rounds` (each the JSON of
/// the loadgen's `hold` or of `upgrade-client`, whose own CPU figures are named `prefix`_cpu_us
/// _per_…: "loadgen" or "client"): its CPU per connection opened and closed, and the server's
/// wake-ups per connection — a client whose requests arrive in batches wakes the server less
/// often, and each wake-up is a context switch the server pays for.
fn client_shape(rounds: &[&Value], prefix: &str) -> Value {
    let median = |key: String| {
        let v: Vec<Option<f64>> = rounds.iter().map(|r| r[key.as_str()].as_f64()).collect();
        median_spread(&v)["median"].clone()
    };
    json!({
        "cpu_us_per_upgrade": median(format!("{prefix}_cpu_us_per_upgrade")),
        "cpu_us_per_close": median(format!("{prefix}_cpu_us_per_close")),
        "server_wakeups_per_upgrade": median("server_wakeups_per_upgrade".into()),
        "server_wakeups_per_close": median("server_wakeups_per_close".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_ramps_are_medians_with_failures_summed() {
        let round = |up: f64, close: f64, failed: u64| {
            json!({"client": "c", "established": 10 - failed, "failed_to_open": failed,
                   "failed_to_close": 0, "closed_without_close_frame": 0, "upgrades_per_s": 100.0,
                   "server_cpu_us_per_upgrade": up, "server_cpu_us_per_close": close,
                   "client_cpu_seconds_ramp": 0.1, "first_error": if failed > 0 { json!("refused") } else { Value::Null }})
        };
        let (a, b, c) = (
            round(10.0, 30.0, 0),
            round(30.0, 10.0, 2),
            round(20.0, 20.0, 0),
        );
        let broken = json!({"error": "no connection upgraded"});
        let v = independent_ramps(&[&a, &b, &c, &broken]);
        assert_eq!(v["server_cpu_us_per_upgrade"], 20.0, "{v}");
        assert_eq!(v["server_cpu_us_per_close"], 20.0, "{v}");
        assert_eq!(v["server_cpu_us_per_upgrade_spread"]["min"], 10.0);
        assert_eq!(
            (v["rounds"].as_u64(), v["errors"].as_u64()),
            (Some(3), Some(1)),
            "{v}"
        );
        assert_eq!(
            (v["established"].as_u64(), v["failures"].as_u64()),
            (Some(28), Some(2))
        );
        assert_eq!(v["first_error"], "refused", "{v}");
        assert!(independent_ramps(&[&Value::Null, &Value::Null]).is_null());
    }

    fn row(server: &str, published: u64, p50: f64, per_cpu: f64) -> Value {
        json!({
            "server": server, "placement": "own", "subscribers": 18000, "topics": 1,
            "publish_rate": 60, "publish_via": "ws", "measure_seconds": 10.0,
            "published": published, "latency_us": {"p50": p50, "p99": 2.0 * p50},
            "deliveries_per_server_cpu_s": per_cpu,
        })
    }

    fn statuses(runs: &[Value]) -> Vec<(Value, Option<String>)> {
        fanout_targets(runs)
            .into_iter()
            .map(|t| (t["met"].clone(), t["why"].as_str().map(String::from)))
            .collect()
    }

    #[test]
    fn a_pair_where_both_kept_up_is_judged_on_its_ratios() {
        let runs = [
            row("holdfast", 598, 100.0, 2.0e6),
            row("uwebsockets", 601, 200.0, 1.0e6),
        ];
        let want = vec![(json!(true), None); 3];
        assert_eq!(statuses(&runs), want);
        let runs = [
            row("holdfast", 600, 300.0, 1.0e6),
            row("uwebsockets", 600, 200.0, 1.0e6),
        ];
        assert_eq!(statuses(&runs), vec![(json!(false), None); 3]);
        // The rate is the publisher's total over all topics: 1,000 topics at 2,000/s is
        // 20,000 publishes in 10 s, not 20M.
        let many = |server, published| {
            let mut r = row(server, published, 1000.0, 5.0e4);
            r["topics"] = json!(1000);
            r["publish_rate"] = json!(2000);
            r
        };
        let runs = [many("holdfast", 20_031), many("uwebsockets", 20_020)];
        let got = statuses(&runs);
        assert!(got.iter().all(|(_, why)| why.is_none()), "{got:?}");
    }

    #[test]
    fn eager_sends_run_beside_the_defaults_where_uwebsockets_is_judged() {
        let cases = [
            (18_000, 1, 60),
            (18_000, 1, 120),
            (10_000, 1, 10),
            (10_000, 1_000, 2_000),
        ];
        let pinning = (Some("1".to_string()), Some("0".to_string()));
        let steps = fanout_steps(&[Kind::Holdfast, Kind::Uws], &cases, true, pinning.clone());
        let eager: Vec<&FanoutStep> = steps.iter().filter(|s| s.server.flags.is_some()).collect();
        // The first two cases, both publishers, where each places itself (defaults) and
        // one worker confined beside uWebSockets confined alike.
        assert_eq!(eager.len(), 2 * 2 * 2, "{eager:#?}");
        for st in &eager {
            assert_eq!(st.server.kind, Kind::Holdfast);
            assert!(st.load.0 == 18_000, "{st:?}");
            match (&st.place, st.server.workers) {
                (Place::Own, None) | (Place::Shared(_), Some(1)) => {}
                other => panic!("an eager row placed unlike any uWebSockets row: {other:?}"),
            }
            // Every eager row has its uWebSockets row.
            assert!(steps.iter().any(|u| u.server.kind == Kind::Uws
                && u.place == st.place
                && u.via == st.via
                && u.load == st.load));
        }
        assert_eq!(
            eager[1].server.label(),
            format!("holdfast --workers 1 {EAGER_SENDS}")
        );
        // Without uWebSockets there is nothing to judge them against.
        let alone = fanout_steps(&[Kind::Holdfast], &cases, false, pinning);
        assert!(alone.iter().all(|s| s.server.flags.is_none()));
        assert_eq!(alone.len(), cases.len());
    }

    #[test]
    fn an_eager_row_is_judged_beside_the_defaults_on_its_own_figures() {
        let runs = [
            row("holdfast", 600, 150.0, 2.0e6),
            row("holdfast --fanout-pace-interval 0", 600, 300.0, 1.0e6),
            row("uwebsockets", 600, 200.0, 1.0e6),
        ];
        let t = fanout_targets(&runs);
        assert_eq!(t.len(), 6, "three goals for each holdfast row: {t:?}");
        let (eager, defaults): (Vec<_>, Vec<_>) = t.iter().partition(|v| {
            v["what"]
                .as_str()
                .unwrap()
                .contains("--fanout-pace-interval 0")
        });
        assert!(defaults.iter().all(|v| v["met"] == true), "{defaults:?}");
        assert!(eager.iter().all(|v| v["met"] == false), "{eager:?}");
    }

    #[test]
    fn rows_of_the_independent_client_are_judged_against_each_other_only() {
        let independent = |server, p50, per_cpu| {
            let mut r = row(server, 600, p50, per_cpu);
            r["independent"] = json!(true);
            r
        };
        let runs = [
            row("holdfast", 600, 100.0, 2.0e6),
            row("uwebsockets", 600, 200.0, 1.0e6),
            independent("holdfast", 500.0, 1.0e6),
            independent("uwebsockets", 250.0, 1.2e6),
        ];
        let t = fanout_targets(&runs);
        assert_eq!(
            t.len(),
            6,
            "two pairs of three goals, no cross pairs: {t:?}"
        );
        let (loadgen, other): (Vec<_>, Vec<_>) = t
            .iter()
            .partition(|v| !v["what"].as_str().unwrap().contains("independent client"));
        assert_eq!(loadgen.len(), 3);
        assert!(loadgen.iter().all(|v| v["met"] == true));
        assert!(other.iter().all(|v| v["met"] == false), "{other:?}");
    }

    #[test]
    fn a_collapsed_peer_is_not_judged_and_a_collapsed_holdfast_is_not_met() {
        // uWebSockets handled 36 of 600: its few timed messages would make every ratio "met".
        let runs = [
            row("holdfast", 600, 100.0, 2.0e6),
            row("uwebsockets", 36, 9.0e6, 1.0e5),
        ];
        for (met, why) in statuses(&runs) {
            assert_eq!(met, Value::Null);
            let why = why.expect("a reason");
            assert!(
                why.contains("uwebsockets did not keep up: 36 of 600"),
                "{why}"
            );
        }
        let runs = [
            row("holdfast", 300, 100.0, 2.0e6),
            row("uwebsockets", 600, 200.0, 1.0e6),
        ];
        for (met, why) in statuses(&runs) {
            assert_eq!(met, json!(false));
            assert!(why.expect("a reason").contains("holdfast did not keep up"));
        }
    }

    #[test]
    fn a_storm_row_is_its_median_round_and_recovered_only_if_every_round_was() {
        let round = |cpu: f64, recovery: f64, recovered: bool| {
            json!({
                "server_cpu_us_per_reconnect": cpu, "recovery_seconds": recovery,
                "recovered": recovered, "met": recovered, "lost": 10, "reconnected": 10,
                "series": [{"t": cpu}],
            })
        };
        let tries = [
            round(50.0, 0.9, true),
            round(30.0, 2.0, true),
            round(40.0, 0.7, true),
        ];
        let r = storm_row(Kind::Holdfast, 10, &tries);
        assert_eq!(r["rounds"], 3);
        assert_eq!(r["server_cpu_us_per_reconnect"], 40.0);
        assert_eq!(
            r["recovery_seconds"], 0.7,
            "the median round's own recovery"
        );
        assert_eq!(
            r["series"],
            json!([{"t": 40.0}]),
            "the median round is charted"
        );
        let sp = &r["server_cpu_us_per_reconnect_spread"];
        assert_eq!(
            (&sp["min"], &sp["max"], &sp["n"]),
            (&json!(30.0), &json!(50.0), &json!(3))
        );
        assert_eq!(r["recovery_seconds_spread"]["max"], 2.0);
        assert_eq!((&r["recovered"], &r["met"]), (&json!(true), &json!(true)));

        let mut tries = tries.to_vec();
        tries[0] = round(50.0, 60.0, false);
        let r = storm_row(Kind::Holdfast, 10, &tries);
        assert_eq!((&r["recovered"], &r["met"]), (&json!(false), &json!(false)));
    }
}
