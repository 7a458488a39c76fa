//! The Markdown report: what ran, on what, the figures side by side (as ratios to
//! holdfast), the targets, and what limits each figure.

use std::fmt::Write as _;

use serde_json::{json, Value};

fn f(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if digits == 0 => format!("{:.0}", x),
        Some(x) => format!("{x:.digits$}"),
        None => "—".into(),
    }
}

/// Echo rounds compared at the same distance between the two CPUs (`crate::cpupair`): a
/// round is near where both its readings are under twice the smallest reading of the
/// section, far where both are over it. One line per server and connection count where
/// holdfast and that server both have rounds at a distance.
fn same_distance_lines(rows: &[Value]) -> Vec<String> {
    let detail = |x: &Value| x["rounds_detail"].as_array().cloned().unwrap_or_default();
    let readings = |d: &Value| -> Option<(f64, f64)> {
        let ns = &d["cpu_pair_round_trip_ns"];
        Some((ns[0].as_f64()?, ns[1].as_f64()?))
    };
    let smallest = rows
        .iter()
        .flat_map(detail)
        .filter_map(|d| readings(&d))
        .map(|(a, b)| a.min(b))
        .fold(f64::INFINITY, f64::min);
    if !smallest.is_finite() {
        return Vec::new();
    }
    let bound = 2.0 * smallest;
    // The median per-CPU figure of a row's rounds at one distance, and how many there were.
    let at = |x: &Value, near: bool| -> Option<(f64, usize)> {
        let v: Vec<Option<f64>> = detail(x)
            .iter()
            .filter(|d| {
                readings(d).is_some_and(|(a, b)| {
                    if near {
                        a.max(b) < bound
                    } else {
                        a.min(b) > bound
                    }
                })
            })
            .map(|d| d["messages_per_server_cpu_s"].as_f64())
            .collect();
        let m = super::rounds::median_spread(&v);
        Some((m["median"].as_f64()?, m["n"].as_u64()? as usize))
    };
    let mut lines = Vec::new();
    for x in rows.iter().filter(|x| x["server"] != "holdfast") {
        let Some(h) = rows
            .iter()
            .find(|y| y["server"] == "holdfast" && y["connections"] == x["connections"])
        else {
            continue;
        };
        let parts: Vec<String> = [(true, "near"), (false, "far")]
            .iter()
            .filter_map(|&(near, name)| {
                let ((hv, hn), (xv, xn)) = (at(h, near)?, at(x, near)?);
                Some(format!(
                    "{name}: holdfast {:.1}k ({hn} rounds) / {:.1}k ({xn}): {:.2}x",
                    hv / 1e3,
                    xv / 1e3,
                    hv / xv
                ))
            })
            .collect();
        if !parts.is_empty() {
            lines.push(format!(
                "{} × {}: {}",
                x["server"].as_str().unwrap_or(""),
                x["connections"],
                parts.join("; ")
            ));
        }
    }
    lines
}

fn ratio(a: &Value, b: &Value) -> String {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "—".into(),
    }
}

/// What the "lost / behind at the end" columns mean.
const BEHIND: &str = "Lost: messages a subscriber's stream skipped without a gap notice. Behind at the end: messages published to a subscriber's topic that it had not received when the settle (5 s after the last publish) ended — a server or client that fell behind, not a message dropped.";

/// A fan-out run's "lost / behind at the end" cells: messages skipped in a stream without a
/// gap notice, and messages published that had not arrived when the settle ended (behind,
/// not dropped). A run recorded before the two were told apart shows its total and "?".
fn lost_and_behind(run: &Value) -> String {
    match (
        run["lost_in_stream"].as_u64(),
        run["unreceived_at_end"].as_u64(),
    ) {
        (Some(lost), Some(behind)) => format!("{lost} / {behind}"),
        _ => format!("{} / ?", run["lost"]),
    }
}

/// A run's latency percentile `k` (recorded in µs) in ms: the median of its rounds with
/// their (min–max) when it had several.
fn latency_ms(run: &Value, k: &str) -> String {
    let ms = |v: &Value| Value::from(v.as_f64().map(|us| us / 1000.0));
    let Some(v) = super::rounds::latency_us(run, k) else {
        return "—".into();
    };
    let sp = &run["latency_rounds_us"][k];
    let sp = json!({"min": ms(&sp["min"]), "max": ms(&sp["max"]), "n": sp["n"]});
    spread_to(&Value::from(v / 1000.0), &sp, 1)
}

/// A figure with its rounds' (min–max) when there were several.
fn spread(v: &Value, sp: &Value) -> String {
    let digits = if v.as_f64().is_some_and(|x| x.abs() >= 1000.0) {
        0
    } else {
        1
    };
    spread_to(v, sp, digits)
}

/// [`spread`] with `digits` decimals.
fn spread_to(v: &Value, sp: &Value, digits: usize) -> String {
    match (sp["min"].as_f64(), sp["max"].as_f64()) {
        (Some(a), Some(b)) if sp["n"].as_u64().unwrap_or(0) > 1 => {
            format!(
                "{} ({}–{})",
                f(v, digits),
                f(&a.into(), digits),
                f(&b.into(), digits)
            )
        }
        _ => f(v, digits),
    }
}

/// Verdict lines: each target's ratio and whether it is met.
fn verdicts(o: &mut String, targets: &Value, title: &str) {
    let Some(t) = targets.as_array().filter(|t| !t.is_empty()) else {
        return;
    };
    let _ = writeln!(o, "\n{title}:\n");
    for x in t {
        let why = x["why"].as_str();
        let _ = writeln!(
            o,
            "- {}: {} (target {}) — **{}**{}",
            x["what"].as_str().unwrap_or(""),
            f(&x["ratio"], 3),
            x["target"].as_str().unwrap_or(""),
            match x["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "not met",
                None if why.is_some() => "not judged",
                None => "no figure",
            },
            why.map_or(String::new(), |w| format!(" ({w})"))
        );
    }
}

/// The holdfast row's value of `key` matching `same` (e.g. the same connection count).
fn holdfast<'a>(runs: &'a [Value], same: &dyn Fn(&Value) -> bool, key: &str) -> &'a Value {
    runs.iter()
        .find(|r| r["server"] == "holdfast" && same(r))
        .map_or(&Value::Null, |r| &r[key])
}

/// An upgrade row's last four cells: CPU per upgrade and per close (median with the
/// rounds' spread), each against holdfast's row `h` measured the same way.
fn cost_cells(x: &Value, h: &Value) -> String {
    let (up, close) = ("server_cpu_us_per_upgrade", "server_cpu_us_per_close");
    let spread_of = |k: &str| spread(&x[k], &x[format!("{k}_spread").as_str()]);
    format!(
        "{} | {} | {} | {}",
        spread_of(up),
        ratio(&x[up], &h[up]),
        spread_of(close),
        ratio(&x[close], &h[close])
    )
}

/// What a ramp's client looked like (`x["client_shape"]`, see the sections' `client_shape`): its
/// CPU-µs per connection opened / closed, and the server's wake-ups per connection opened /
/// closed — two cells.
fn client_cells(x: &Value) -> String {
    let c = &x["client_shape"];
    format!(
        "{} / {} | {} / {}",
        f(&c["cpu_us_per_upgrade"], 1),
        f(&c["cpu_us_per_close"], 1),
        f(&c["server_wakeups_per_upgrade"], 2),
        f(&c["server_wakeups_per_close"], 2)
    )
}

/// The machine's CPU: its model name, then the vendor, family, model and stepping that tell
/// apart generations sold under one name (reports from before they were recorded have the
/// name alone).
fn cpu_line(m: &Value) -> String {
    let name = m["cpu"].as_str().filter(|s| !s.is_empty()).unwrap_or("?");
    let mut ids = Vec::new();
    if let Some(v) = m["cpu_vendor"].as_str() {
        ids.push(v.to_string());
    }
    for (key, label) in [
        ("cpu_family", "family"),
        ("cpu_model", "model"),
        ("cpu_stepping", "stepping"),
    ] {
        if let Some(n) = m[key].as_u64() {
            ids.push(format!("{label} {n}"));
        }
    }
    if ids.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", ids.join(" "))
    }
}

/// Render the report.
pub(super) fn render(r: &Value) -> String {
    let mut o = String::new();
    let m = &r["machine"];
    let _ = writeln!(
        o,
        "# Holdfast report: {} ({})\n",
        r["report"].as_str().unwrap_or(""),
        r["date"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        o,
        "- Command: `{}`{}\n- Machine: {}, {} CPUs, {}, Linux {}, RLIMIT_NOFILE {}\n- Target: {}; tuning profile: {}\n- Peers: {}{}\n- Took {} s. Server, load generator and peers share this machine: every throughput figure has the server's CPU time beside it ({}), and those per-CPU figures are the ones that compare fairly.\n",
        r["command"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
        if r["quick"] == true {
            " (**quick**: small sizes that show the report's shape and that every part runs — \
             not figures to compare: at 2,000 connections fixed costs (buffer pools, slab \
             growth) dominate bytes per connection, peaks and charts have a handful of points)"
        } else {
            ""
        },
        cpu_line(m),
        m["cores"],
        m["memory"].as_str().unwrap_or("?").split_whitespace().collect::<Vec<_>>().join(" "),
        m["kernel"].as_str().unwrap_or("?"),
        m["rlimit_nofile_soft"],
        r["target"].as_str().unwrap_or("?"),
        r["tuning_profile"].as_str().unwrap_or("none (nothing system-wide was changed)"),
        r["peers"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        r["peers_skipped"].as_array().filter(|a| !a.is_empty()).map(|a| format!(" (skipped: {})", a.iter().map(|p| format!("{} — {}", p["peer"].as_str().unwrap_or(""), p["why"].as_str().unwrap_or(""))).collect::<Vec<_>>().join("; "))).unwrap_or_default(),
        r["elapsed_seconds"],
        match m["cpu_meter"].as_str() {
            Some("task-clock") => "task-clock counters: on-CPU time measured at each context switch",
            Some(other) => other,
            // Reports from before the meter was named.
            None => "the scheduler's clock",
        },
    );
    let charts: Vec<String> = r["charts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let chart = |o: &mut String, key: &str| {
        for c in charts.iter().filter(|c| c.contains(key)) {
            let _ = writeln!(o, "![{c}]({c})\n");
        }
    };
    let runs = |sec: &str| r[sec]["runs"].as_array().cloned().unwrap_or_default();

    if r["density"].is_object() {
        let _ = writeln!(o, "## Density: bytes per idle connection\n");
        let _ = writeln!(o, "RSS delta / N is the server's userspace. The kernel figure sums the slab caches that grew during the step (active objects × object size, from /proc/slabinfo) over N: it covers both ends of each loopback connection (both ends hold the same socket objects), so the server's share is half. The `Slab` delta of /proc/meminfo is shown as a cross-check: it includes slab page overhead, and reads low when caches of an earlier step are still being freed. Held through the loadgen's `hold` (heartbeats on).\n");
        let _ = writeln!(o, "| server | N | held | userspace B/conn | kernel B/conn: pair / **server share** | cross-check: Slab delta, pair | peak upgrades/s | server CPU-µs/upgrade | caches that grew most (B/conn) |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        for x in runs("density") {
            if let Some(why) = x["skipped"].as_str() {
                let _ = writeln!(
                    o,
                    "| {} | {} | skipped: {why} | | | | | | |",
                    x["server"].as_str().unwrap_or(""),
                    x["connections"]
                );
                continue;
            }
            let caches = x["slab_caches_grown"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .take(4)
                        .map(|c| {
                            format!(
                                "{} {}",
                                c["cache"].as_str().unwrap_or(""),
                                f(&c["bytes_per_connection"], 0)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} / **{}** | {} | {} | {} | {caches} |",
                x["server"].as_str().unwrap_or(""),
                x["connections"],
                x["held"],
                f(&x["userspace_bytes_per_connection"], 1),
                f(&x["kernel_bytes_per_connection_pair"], 0),
                f(&x["kernel_bytes_per_connection_server_share"], 0),
                f(&x["kernel_slab_delta_bytes_per_connection_pair"], 0),
                f(&x["peak_upgrades_per_s"], 0),
                f(&x["server_cpu_us_per_upgrade"], 1)
            );
        }
        verdicts(&mut o, &r["density"]["targets"], "Targets");
        let _ = writeln!(o, "\nThe holdfast constants feed `holdfast plan` (docs/capacity-planning.md). Limits: memory (both ends on one node), `ulimit -n` for the fd-based peers, the ramp's CPU (both ends' TCP setup).\n");
        chart(&mut o, "bytes-per-connection");
        chart(&mut o, "connections");
    }

    if r["echo"].is_object() {
        let e = &r["echo"];
        let _ = writeln!(
            o,
            "## Echo and upgrades (pinned: server on CPU {}, loadgen on CPU {}, one thread each)\n",
            e["pinning"]["server_cpu"].as_str().unwrap_or("—"),
            e["pinning"]["loadgen_cpu"].as_str().unwrap_or("—")
        );
        let _ = writeln!(o, "Each row twice per round, the server fresh each time: driven by the loadgen (io_uring, one thread, 32-byte messages, one in flight per connection) and by an independent client (`holdfast-bench echo-client`: tokio current-thread, epoll, one task per connection, no code shared with the loadgen), both pinned to the same CPU. Client CPU seconds beside each: a client that sleeps between messages makes the server pay wake-ups. With several rounds a row is the median round, (min–max) of the rounds beside the per-CPU figures; the rounds are interleaved over every row, so that the host's drift falls on all alike.\n");
        let _ = writeln!(o, "| server | connections | msgs/s | server CPU s | **msgs per server-CPU-s** | vs holdfast | loadgen CPU s | independent client: msgs per server-CPU-s (client CPU s) | RTT p50 / p99 / p99.9 µs |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        let rs = runs("echo");
        for x in &rs {
            let c = x["connections"].clone();
            let h = holdfast(&rs, &|y| y["connections"] == c, "messages_per_server_cpu_s");
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} / {} / {} |",
                x["server"].as_str().unwrap_or(""),
                c,
                f(&x["messages_per_s"], 0),
                f(&x["server_cpu_seconds"], 2),
                spread(
                    &x["messages_per_server_cpu_s"],
                    &x["messages_per_server_cpu_s_spread"]
                ),
                ratio(&x["messages_per_server_cpu_s"], h),
                f(&x["loadgen_cpu_seconds"], 2),
                spread(
                    &x["independent_client"]["messages_per_server_cpu_s"],
                    &x["independent_client"]["spread"]
                ),
                f(&x["independent_client"]["client_cpu_seconds"], 2),
                f(&x["rtt_us"]["p50"], 0),
                f(&x["rtt_us"]["p99"], 0),
                f(&x["rtt_us"]["p99.9"], 0)
            );
        }
        let floor = e["floor"].as_array().cloned().unwrap_or_default();
        if !floor.is_empty() {
            let _ = writeln!(o, "\n`holdfast-io-floor` is holdfast's rings with only an echo's upgrade and framing above them (`holdfast-bench echo-floor`). What separates it from uWebSockets is the io layer and the kernel's loopback path; what separates holdfast from it is holdfast's own layers above the rings.\n");
        }
        for x in &floor {
            let _ = writeln!(
                o,
                "- {} connections: the floor {} msgs per server-CPU-s, {}x uWebSockets'; holdfast at {}x its floor.",
                x["connections"],
                f(&x["messages_per_server_cpu_s"], 0),
                f(&x["floor_over_uwebsockets"], 2),
                f(&x["holdfast_over_floor"], 2)
            );
        }
        if rs
            .iter()
            .any(|x| x["rounds_detail"].as_array().is_some_and(|d| !d.is_empty()))
        {
            let _ = writeln!(o, "\nEach round beside how far apart the two CPUs were: the round trip of one cache line between them just before and just after it (`holdfast-bench` pins two threads and bounces an atomic; `crate::cpupair`). A host may put two vCPUs on cores that share a last-level cache or not, and move them: on the guest of `bench/results/2026-12-07-new-guest-57-notes.md` ~55–85 ns or ~380–420 ns, and every server's echo rounds sat on two levels 1.3–1.5x apart with it. Compare servers between rounds at the same distance.\n");
            for x in &rs {
                let rounds: Vec<String> = x["rounds_detail"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let ns = &d["cpu_pair_round_trip_ns"];
                        format!(
                            "{}k @ {} / {} ns",
                            f(
                                &json!(d["messages_per_server_cpu_s"].as_f64().map(|v| v / 1e3)),
                                1
                            ),
                            f(&ns[0], 0),
                            f(&ns[1], 0)
                        )
                    })
                    .collect();
                let _ = writeln!(
                    o,
                    "- {} × {}: {}",
                    x["server"].as_str().unwrap_or(""),
                    x["connections"],
                    rounds.join("; ")
                );
            }
            let same = same_distance_lines(&rs);
            if !same.is_empty() {
                let _ = writeln!(o, "\nAt the same distance (near: both readings under twice the section's smallest; far: both over it; a round whose distance moved is left out), medians of the rounds, holdfast against each server:\n");
                for line in same {
                    let _ = writeln!(o, "- {line}");
                }
            }
        }
        let _ = writeln!(o, "\nUpgrades and closes: each round a fresh server, the servers in turn, a ramp of the given connections, a 0.5 s hold, then every connection closes (the loadgen's Close, the server's echo, TCP close; the server's CPU is read once a 50 ms window holds under 0.5 ms of it); medians of the rounds with (min–max).\n");
        let _ = writeln!(o, "| server | upgrades | rounds | peak upgrades/s | **server CPU-µs per upgrade** | vs holdfast | **server CPU-µs per close** | vs holdfast | client CPU-µs per upgrade / close | server wake-ups per upgrade / close |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
        let ups = r["echo"]["upgrades"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for x in &ups {
            let h = ups
                .iter()
                .find(|u| u["server"] == "holdfast")
                .unwrap_or(&Value::Null);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                x["server"].as_str().unwrap_or(""),
                x["established"],
                x["rounds"].as_u64().unwrap_or(1),
                f(&x["peak_upgrades_per_s"], 0),
                cost_cells(x, h),
                client_cells(x)
            );
        }
        // The same ramps by the independent client (its upgrades/s are the ramp's average,
        // not a peak), each compared with holdfast's row by the same client.
        let inds: Vec<Value> = ups
            .iter()
            .map(|x| x["independent_client"].clone())
            .collect();
        for (x, i) in ups.iter().zip(&inds) {
            if i.is_null() {
                continue;
            }
            let h = ups
                .iter()
                .position(|u| u["server"] == "holdfast")
                .map_or(&Value::Null, |k| &inds[k]);
            let errors = match i["errors"].as_u64() {
                Some(n) if n > 0 => format!(" ({n} rounds failed: {})", i["first_error"]),
                _ => String::new(),
            };
            let _ = writeln!(
                o,
                "| {}, independent client{} | {} | {} | {} (average) | {} | {} |",
                x["server"].as_str().unwrap_or(""),
                errors,
                i["established"],
                i["rounds"].as_u64().unwrap_or(0),
                f(&i["upgrades_per_s"], 0),
                cost_cells(i, h),
                client_cells(i)
            );
        }
        if inds.iter().any(|i| !i.is_null()) {
            let _ = writeln!(
                o,
                "\nIndependent client: `holdfast-bench upgrade-client` (tokio current-thread, epoll, one task per connection; no code shared with the loadgen), on the loadgen's CPU, the same server fresh after each loadgen ramp; its upgrades column is every connection it opened over all rounds."
            );
        }
        if !ups.is_empty() {
            let _ = writeln!(
                o,
                "\nWhat each client looked like: its own CPU per connection opened and closed, and how often the server slept and was woken per connection (voluntary context switches of its threads, from /proc). The same server pays more per upgrade where it is woken more often: a client whose requests arrive in batches wakes it once per batch."
            );
        }
        verdicts(
            &mut o,
            &e["targets"],
            "Targets (holdfast against the peers)",
        );
        let _ = writeln!(o, "\nLimits: loopback TCP (most of an upgrade's CPU is the kernel's connection setup, both ends on one machine); the loadgen's one core.\n");
        chart(&mut o, "rtt-cdf");
    }

    if r["tls"].is_object() {
        let _ = writeln!(o, "## TLS: what setting up a connection costs\n");
        if let Some(lib) = r["tls"]["uws_tls_library"].as_str() {
            let _ = writeln!(o, "uWebSockets (`uwebsockets-tls`) is built with {lib}: its TLS is that library's, with uSockets' settings (TLS 1.2 and up, the library's session tickets and cipher choice).\n");
        }
        let _ = writeln!(o, "One pinned worker (uWebSockets: its one thread, serving the same certificate); the loadgen (one thread, pinned to the other CPU) ramps connections over wss:// (the test certificate: ECDSA P-256) or ws://, 16 in flight. Server CPU per connection covers TCP accept, the TLS handshake and the WebSocket upgrade. `off`: every handshake full; `always`: every connection resumes with a session ticket an earlier one received (TLS 1.3 PSK with (EC)DHE: no certificate or signature, still a key exchange). Each round the same server is then started fresh for the independent client (`holdfast-bench upgrade-client`: tokio current-thread, epoll, its own rustls client and ticket cache, no code shared with the loadgen), on the loadgen's CPU, also 16 in flight.\n");
        let _ = writeln!(
            o,
            "| server | resumption | server CPU-µs per connection: loadgen | independent client |"
        );
        let _ = writeln!(o, "|---|---|---|---|");
        for x in r["tls"]["summary"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                x["server"].as_str().unwrap_or(""),
                x["resumption"].as_str().unwrap_or("—"),
                spread(&x["loadgen"]["median"], &x["loadgen"]),
                spread(&x["upgrade_client"]["median"], &x["upgrade_client"]),
            );
        }
        let _ = writeln!(o, "\nEvery round:\n");
        let _ = writeln!(o, "| server | resumption | client | round | established | handshakes full / resumed | server CPU-µs per connection | connections per server-CPU-s | connect p50 / p99 µs | client CPU-µs per connection | server wake-ups per connection |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
        for x in runs("tls") {
            let client = x["client"].as_str().unwrap_or("loadgen");
            let latency = format!(
                "{} / {}",
                f(&x["connect_upgrade_latency_us"]["p50"], 0),
                f(&x["connect_upgrade_latency_us"]["p99"], 0)
            );
            let established = match x["error"].as_str() {
                Some(e) => format!("{} ({e})", x["established"]),
                None => x["established"].to_string(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {client} | {} | {established} | {} / {} | {} | {} | {latency} | {} | {} |",
                x["server"].as_str().unwrap_or(""),
                x["resumption"].as_str().unwrap_or("—"),
                x["round"],
                f(&x["tls_handshakes"]["full"], 0),
                f(&x["tls_handshakes"]["resumed"], 0),
                f(&x["server_cpu_us_per_connection"], 1),
                f(&x["connections_per_server_cpu_s"], 0),
                f(&x["client_shape"]["cpu_us_per_upgrade"], 1),
                f(&x["client_shape"]["server_wakeups_per_upgrade"], 2),
            );
        }
        verdicts(
            &mut o,
            &r["tls"]["targets"],
            "Targets against uWebSockets (the same certificate and clients)",
        );
        let _ = writeln!(o);
    }

    if r["fanout"].is_object() {
        let _ = writeln!(o, "## Pub/sub fan-out\n");
        let _ = writeln!(o, "Server and loadgen share the cores: each row has both CPU figures (seconds over the measurement), so a row where the loadgen ran short of CPU shows it. Placement: `own` is where each puts itself (holdfast pins its workers to the CPUs in order, one worker to the first; uWebSockets' thread goes where the scheduler puts it; the loadgen pins engine thread t to CPU t); the other rows confine the server (and the loadgen) with `taskset`. On loopback the sender also runs the receiver's TCP input, and a receiver woken on the other CPU costs an interrupt: placement moves the cost per delivery by up to half, so one holdfast worker is compared with uWebSockets placed alike, never across placements. *Client unread* is what the kernel held delivered to the client and not yet read, summed over its sockets every 3 s with `ss` and given in ms of the client's reading: the part of the latency that is the client's own (a client short of CPU reads late). *Deliveries per client read* is how the server batched: while the client keeps up (little unread) a read takes one server send, so it is frames per send — the trade between latency and CPU, since on loopback each send costs about the same whatever it carries.\n");
        let rounds = runs("fanout")
            .iter()
            .filter_map(|x| x["rounds"].as_u64())
            .max()
            .unwrap_or(1);
        if rounds > 1 {
            let _ = writeln!(o, "Rows of the loadgen are each the median of {rounds} rounds (each on fresh servers, the rounds interleaved over every row so that the host's drift falls on all alike): deliveries per server-CPU-s and latency percentiles are the medians of the rounds' own figures with their (min–max), the other rates and CPU seconds medians too; *published* is the round that published least (a server behind in any round is judged behind), losses, duplicates, reordering and gaps are summed over the rounds, and the chart pools every round's deliveries. The independent client's rows are made from their rounds alike (interleaved after the loadgen's), their publishes refused and unanswered summed.\n");
        }
        if runs("fanout").iter().any(|x| {
            x["server"]
                .as_str()
                .is_some_and(|n| n.contains(super::EAGER_SENDS))
        }) {
            let _ = writeln!(o, "Holdfast's defaults space a subscriber's sends while a worker paces (`--fanout-pace-interval`, 195 ms; docs/operations.md): when over the last 100 ms it never waited for work, delivered at least 50,000 messages a second and ran less than three quarters of that time (the loadgen shares its CPU). Then each subscriber's sends go at most once per interval, at a phase spread over it, so a message that follows another within the interval waits for its recipient's phase, and each send carries what was published meanwhile: p50 about half the interval, p99 about the interval. The worker sends eagerly again once its deliveries fall below that or a second passes in which it waited for its CPU less than a tenth of the time it ran. Rows named `{}` are holdfast with eager sends (pacing pauses turns instead; the defaults until the forty-ninth sitting): judged on the same goals, they show what spacing buys in CPU and costs in latency. 195 ms is the longest interval below a Linux client's minimum retransmission timeout (200 ms): above it every send draws an immediate ACK from the client, which loopback charges to the server (docs/benchmarks.md, forty-second and forty-fourth sittings). *vs holdfast* is against holdfast's defaults placed alike.\n", super::EAGER_SENDS);
        }
        let _ = writeln!(o, "| server | placement | topics × subscribers | publishes/s asked (via) | published | deliveries/s | **deliveries per server-CPU-s** | vs holdfast | latency p50 / p99 / p99.9 ms | lost / behind at the end / dup / reordered / gaps | server / loadgen CPU-s | client unread, median / max ms | deliveries per client read |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let rs = runs("fanout");
        for x in &rs {
            // Against holdfast placed alike: its defaults where each places itself, its
            // one worker where the servers are confined.
            let h = rs
                .iter()
                .find(|y| {
                    super::sections::is_holdfast_ws(y) && super::sections::same_fanout_case(y, x)
                })
                .map_or(&Value::Null, |y| &y["deliveries_per_server_cpu_s"]);
            let ms = |k: &str| latency_ms(x, k);
            // The independent client counts no reordering or gap notices, and its CPU is
            // its own.
            let independent = x["independent"] == true;
            let (label, client_cpu) = if independent {
                (
                    " (independent client)",
                    format!("{} (client)", f(&x["client_cpu_seconds"], 2)),
                )
            } else {
                ("", f(&x["loadgen_cpu_seconds"], 2))
            };
            let or_dash = |v: &Value| {
                if v.is_null() {
                    "—".to_string()
                } else {
                    v.to_string()
                }
            };
            let _ = writeln!(
                o,
                "| {}{label} | {} | {} × {} | {} ({}) | {} | {} | {} | {} | {} / {} / {} | {} / {} / {} / {} | {} / {client_cpu} | {} / {} | {} |",
                x["server"].as_str().unwrap_or(""),
                x["placement"].as_str().unwrap_or("own"),
                x["topics"],
                x["subscribers"],
                x["publish_rate"],
                x["publish_via"].as_str().unwrap_or("admin"),
                x["published"],
                f(&x["deliveries_per_s"], 0),
                spread_to(
                    &x["deliveries_per_server_cpu_s"],
                    &x["deliveries_per_server_cpu_s_spread"],
                    0
                ),
                ratio(&x["deliveries_per_server_cpu_s"], h),
                ms("p50"),
                ms("p99"),
                ms("p99.9"),
                lost_and_behind(x),
                x["duplicates"],
                or_dash(&x["reordered"]),
                or_dash(&x["gaps"]),
                f(&x["server_cpu_seconds"], 2),
                f(&x["client_unread"]["median_ms"], 0),
                f(&x["client_unread"]["max_ms"], 0),
                f(&x["deliveries_per_read"], 1),
            );
        }
        let independent: Vec<&Value> = rs.iter().filter(|x| x["independent"] == true).collect();
        if !independent.is_empty() {
            let _ = writeln!(o, "\nThe `independent client` rows: the first case again, each server fresh and where it puts itself, driven by `holdfast-bench fanout-client` (tokio, two threads, epoll, one task per subscriber, frames read by hand, text parsed by serde's derive, its own publisher thread; no client code shared with the loadgen). They are judged against each other only. It needs more CPU per delivery than the loadgen on the cores the server shares, so its latency holds more of its own reading (*client unread*); a server that leaves it less CPU is charged for that. Deliveries per read: a server send's worth while the client keeps up, more when its sockets held a backlog.\n");
            let _ = writeln!(o, "| server | publish via | client CPU-s | deliveries per read | client unread, median / max MB | publishes unanswered | publishes refused | errors |");
            let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
            for x in independent {
                let u = &x["client_unread"];
                let mb = |k: &str| f(&Value::from(u[k].as_f64().map(|b| b / 1e6)), 1);
                let errors = match x["errors"].as_object() {
                    Some(e) if !e.is_empty() => x["errors"].to_string(),
                    _ => "none".into(),
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} / {} | {} | {} | {errors} |",
                    x["server"].as_str().unwrap_or(""),
                    x["publish_via"].as_str().unwrap_or(""),
                    f(&x["client_cpu_seconds"], 2),
                    f(&x["deliveries_per_read"], 1),
                    mb("median_bytes"),
                    mb("max_bytes"),
                    x["publishes_unanswered"],
                    x["publishes_refused"],
                );
            }
        }
        verdicts(
            &mut o,
            &r["fanout"]["targets"],
            "Targets against uWebSockets (holdfast's defaults against uWebSockets where the scheduler puts it; one holdfast worker, uWebSockets' thread count, against uWebSockets placed alike; a pair where uWebSockets handled under 90% of the publishes asked is not judged — the goals hold at the rates it sustains)",
        );
        let _ = writeln!(o, "\n{BEHIND}");
        let _ = writeln!(o, "\nLimits: the kernel's TCP send per delivery on loopback (the sender also runs the receiver's TCP processing), and the load generator's receiving on the same cores.\n");
        chart(&mut o, "fanout-cdf");
    }

    if r["storm"].is_object() {
        let _ = writeln!(
            o,
            "## Reconnect storm (every client cut at once; backoff 100 ms–5 s, full jitter)\n"
        );
        let _ = writeln!(o, "Each step ran in rounds, the steps in turn, each on a fresh server; a row is the round with the median server CPU per reconnect (the lower middle of an even count), its recovery time and CPU shown with the (min–max) of every round.\n");
        let _ = writeln!(o, "| server | clients | rounds | lost | reconnected | recovered (every round) | time to full recovery s | peak connects/s | server CPU s (event to recovery) | **server CPU-µs per reconnect** | loadgen CPU s (event to recovery) | server wake-ups per reconnect |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for x in runs("storm") {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                x["server"].as_str().unwrap_or(""),
                x["connections"],
                x["rounds"].as_u64().unwrap_or(1),
                x["lost"],
                x["reconnected"],
                x["recovered"],
                spread_to(&x["recovery_seconds"], &x["recovery_seconds_spread"], 2),
                f(&x["peak_connects_per_s_after_event"], 0),
                f(&x["server_cpu_seconds_storm"], 2),
                spread(
                    &x["server_cpu_us_per_reconnect"],
                    &x["server_cpu_us_per_reconnect_spread"]
                ),
                f(&x["loadgen_cpu_seconds_storm"], 2),
                f(&x["server_wakeups_per_reconnect"], 2)
            );
        }
        verdicts(
            &mut o,
            &r["storm"]["targets"],
            "Targets (holdfast against the peers)",
        );
        let _ = writeln!(o, "\nLimits: connect throughput of both ends on two cores; fd-based peers are capped below `ulimit -n`.\n");
        chart(&mut o, "storm");
    }
    if r["transports"].is_object() {
        let t = &r["transports"];
        let _ = writeln!(
            o,
            "## Transports: WebSocket, server-sent events, long-poll
"
        );
        if let Some(why) = t["skipped"].as_str() {
            let _ = writeln!(
                o,
                "Skipped: {why}
"
            );
        }
        let _ = writeln!(o, "Each rung on a fresh holdfast, driven by the same load generator speaking its protocol. Density: idle subscribers of one topic (`/ws?topics=idle`, `/sse?topics=idle`, `/poll?topics=idle`; a poll is held `--poll-hold`, 20 s, then asked again from its cursor on a new connection). Fan-out: the admin API publishing to one topic; long-poll clients poll again after every answer (messages handed to a worker together share one answer).
");
        let _ = writeln!(o, "| rung | N | held | userspace B/conn | vs WebSocket | kernel B/conn (server share) | server CPU-µs/connect |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        let dens = t["density"].as_array().cloned().unwrap_or_default();
        let ws = dens
            .iter()
            .find(|x| x["server"] == "holdfast")
            .map_or(Value::Null, |x| x["userspace_bytes_per_connection"].clone());
        for x in &dens {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                x["path"].as_str().unwrap_or(""),
                x["connections"],
                x["held"],
                f(&x["userspace_bytes_per_connection"], 1),
                ratio(&x["userspace_bytes_per_connection"], &ws),
                f(&x["kernel_bytes_per_connection_server_share"], 0),
                f(&x["server_cpu_us_per_upgrade"], 1)
            );
        }
        let _ = writeln!(o, "
| rung | subscribers × msgs/s | deliveries/s | **deliveries per server-CPU-s** | vs WebSocket | latency p50 / p99 ms | lost / behind at the end / dup / reordered / gaps | loadgen CPU-s |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
        let fan = t["fanout"].as_array().cloned().unwrap_or_default();
        for x in &fan {
            let h = holdfast(
                &fan,
                &|y| y["subscribers"] == x["subscribers"] && y["publish_rate"] == x["publish_rate"],
                "deliveries_per_server_cpu_s",
            );
            let ms = |k: &str| latency_ms(x, k);
            // The columns every row shares, then how it counted losses and its client's CPU.
            let (label, checks, client) = if x["independent"] == true {
                (
                    " (independent client)",
                    format!(
                        "{} out of order, {} short of the window",
                        x["out_of_order"], x["short_of_window"]
                    ),
                    format!("{} (client)", f(&x["client_cpu_seconds"], 1)),
                )
            } else {
                (
                    "",
                    format!(
                        "{} / {} / {} / {}",
                        lost_and_behind(x),
                        x["duplicates"],
                        x["reordered"],
                        x["gaps"]
                    ),
                    f(&x["loadgen_cpu_seconds"], 1),
                )
            };
            let _ = writeln!(
                o,
                "| {}{label} | {} × {} | {} | {} | {} | {} / {} | {checks} | {client} |",
                x["server"].as_str().unwrap_or(""),
                x["subscribers"],
                x["publish_rate"],
                f(&x["deliveries_per_s"], 0),
                spread_to(
                    &x["deliveries_per_server_cpu_s"],
                    &x["deliveries_per_server_cpu_s_spread"],
                    0
                ),
                ratio(&x["deliveries_per_server_cpu_s"], h),
                ms("p50"),
                ms("p99"),
            );
        }
        let _ = writeln!(o, "\n{BEHIND}");
        let _ = writeln!(o, "
The independent client (`holdfast-bench poll-client`: tokio, two threads, connections kept between polls, answers parsed by serde's derive, its own publisher thread; no code shared with the loadgen) drives the long-poll rung again on a fresh server at the largest rate: its server CPU per delivery says whether the loadgen's figure is what another client would see; its latency is its own. The `per-poll connections` row is the loadgen with a new connection for every poll (`--poll-connections per-poll`: clients behind a proxy that does not keep connections).

Limits: an event is written per subscriber (its id is that subscriber's cursor), where a WebSocket shares one encoded frame; a long poll costs a request and a JSON answer per delivery batch (and a TCP connection each, without keep-alive). A kept poller asks again as soon as it is answered, so at low rates it polls once per message: fewer messages per answer than a per-poll client, and lower latency.
");
    }
    if r["backplane"].is_object() {
        let b = &r["backplane"];
        let _ = writeln!(o, "## Backplane: three nodes on one Redis\n");
        let _ = writeln!(o, "{} subscribers of one topic, spread evenly over three holdfast nodes (one worker each) sharing one `redis-server` (no persistence); the publisher posts to the first node's admin API; rates are stepped up until delivery falls behind (deliveries < 95% of subscribers × rate, or p99 ≥ 2 s). Each delivery's number is checked against the number the publisher was given (`misnumbered`). The same rates on one node (memory engine, one worker) beside them. CPU per publish = the process's CPU over the measurement / messages published (each process's CPU clock, read every 100 ms). All of it — nodes, Redis, the load generator receiving every delivery — shares two cores, so this shows the backplane's cost and correctness, not scale-out: on a real fleet each node has its own machine. {BEHIND}\n", b["subscribers"]);
        let _ = writeln!(o, "| setup | msgs/s | deliveries/s | p50 ms | p99 ms | lost / behind at the end / dup / reordered / gaps | misnumbered (checked) | CPU µs per publish: nodes (each) / redis | node cores |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        let rows = |key: &str| b[key].as_array().cloned().unwrap_or_default();
        for (label, key) in [
            ("light load", "light"),
            ("3 nodes + redis", "fleet"),
            ("1 node", "single_node"),
        ] {
            for x in rows(key) {
                let label = match x["setup"].as_str() {
                    Some(setup) => format!("{label}: {setup}, {} subscribers", x["subscribers"]),
                    None => label.to_string(),
                };
                let cpu = &x["cpu"];
                let nodes: Vec<String> = ["node1", "node2", "node3"]
                    .iter()
                    .filter(|n| cpu[**n].is_object())
                    .map(|n| f(&cpu[*n]["us_per_publish"], 0))
                    .collect();
                let cores: Vec<String> = ["node1", "node2", "node3"]
                    .iter()
                    .filter(|n| cpu[**n].is_object())
                    .map(|n| f(&cpu[*n]["cores"], 2))
                    .collect();
                let _ = writeln!(
                    o,
                    "| {label} | {} | {} | {} | {} | {} / {} / {} / {} | {} ({}) | {} / {} | {} |",
                    x["publish_rate"],
                    f(&x["deliveries_per_s"], 0),
                    x["p50_us"]
                        .as_f64()
                        .map_or("-".into(), |v| format!("{:.1}", v / 1e3)),
                    x["p99_us"]
                        .as_f64()
                        .map_or("-".into(), |v| format!("{:.1}", v / 1e3)),
                    lost_and_behind(&x),
                    x["duplicates"],
                    x["reordered"],
                    x["gaps"],
                    x["misnumbered"],
                    x["numbers_checked"],
                    nodes.join(" + "),
                    if cpu["redis"].is_object() {
                        f(&cpu["redis"]["us_per_publish"], 0)
                    } else {
                        "-".into()
                    },
                    cores.join(" + "),
                );
            }
        }
        let rs = &b["resume"];
        let _ = writeln!(o, "\n**Resume elsewhere after a drain**: {} clients subscribed on node 2 while node 1 published {} msgs/s; node 2 drained (1012 spread over {} s); each client resumed on node 3 from its last number. All back {} s after the drain started; away per client p50 {} ms, p99 {} ms, max {} ms; recovered {} of {}; lost {}, duplicates {} (of {} messages each).\n",
            rs["clients"], rs["publish_rate"], rs["drain_window_s"], f(&rs["all_resumed_after_s"], 2), f(&rs["away_ms_p50"], 1), f(&rs["away_ms_p99"], 1), f(&rs["away_ms_max"], 1), rs["recovered"], rs["clients"], rs["lost"], rs["duplicates"], rs["published"]);
    }
    if r["handover"].is_object() {
        handover(&mut o, &r["handover"]);
    }
    o
}

/// The hand-over section: the live upgrade, then the drain restart at the same N.
fn handover(o: &mut String, h: &Value) {
    let _ = writeln!(o, "## Deploys: live upgrade vs drain restart\n");
    if let Some(why) = h["skipped"].as_str() {
        let _ = writeln!(o, "Skipped: {why}\n");
        return;
    }
    let u = &h["upgrade"];
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("-".into(), |b| format!("{:.0}", b / 1048576.0))
    };
    let _ = writeln!(
        o,
        "Live upgrade (`POST /upgrade`: the new process takes the listeners, the topics and \
         every connection with its state). {} idle subscribers held by one load generator, \
         {} more taking a topic at 20 msgs/s checked message by message by another.\n",
        u["connections"], u["fanout"]["subscribers"]
    );
    let _ = writeln!(o, "| figure | value |\n|---|---|");
    for (k, v) in [
        ("state", u["upgrade_status"]["state"].to_string()),
        (
            "wall time (request → old process gone), s",
            f(&u["upgrade_seconds"], 3),
        ),
        ("connections per s", f(&u["connections_per_s"], 0)),
        (
            "connections taken over by the new process",
            u["adopted_by_new_process"].to_string(),
        ),
        (
            "held before / at the end",
            format!("{} / {}", u["held_before"], u["held_at_end"]),
        ),
        ("connections lost", u["connections_lost"].to_string()),
        (
            "messages published / lost / behind at the end / duplicated / reordered / gaps",
            format!(
                "{} / {} / {} / {} / {}",
                u["fanout"]["published"],
                lost_and_behind(&u["fanout"]),
                u["fanout"]["duplicates"],
                u["fanout"]["reordered"],
                u["fanout"]["gaps"]
            ),
        ),
        (
            "publishes refused while numbering moved (503, retried by publishers)",
            u["fanout"]["publish_errors"].to_string(),
        ),
        ("RSS old before, MiB", mib(&u["rss_old_before_bytes"])),
        ("peak RSS old + new, MiB", mib(&u["peak_rss_both_bytes"])),
        ("RSS new after, MiB", mib(&u["rss_new_after_bytes"])),
        (
            "peak kernel slab growth, MiB",
            mib(&u["slab_growth_peak_bytes"]),
        ),
    ] {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    let d = &h["drain_restart"];
    let _ = writeln!(
        o,
        "\nDrain restart of the same node: `POST /drain` (1012 with a reconnect hint spread over \
         a {} s window) while a second process takes the port; clients reconnect with \
         backoff and full jitter.\n",
        d["drain_window_s"]
    );
    let _ = writeln!(o, "| figure | value |\n|---|---|");
    for (k, v) in [
        ("held before the event", d["held_before_event"].to_string()),
        ("connections closed by the restart", d["lost"].to_string()),
        ("reconnected", d["reconnected"].to_string()),
        (
            "time until every client is back, s",
            f(&d["recovery_seconds"], 1),
        ),
        (
            "peak reconnects per s",
            f(&d["peak_connects_per_s_after_event"], 0),
        ),
    ] {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    let _ = writeln!(o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cpu_line_names_the_generation_where_it_was_recorded() {
        let m = json!({"cpu": "AMD EPYC", "cpu_vendor": "AuthenticAMD", "cpu_family": 26,
                       "cpu_model": 2, "cpu_stepping": 1});
        assert_eq!(
            cpu_line(&m),
            "AMD EPYC (AuthenticAMD family 26 model 2 stepping 1)"
        );
        // A report from before the numbers were recorded, or a CPU without them.
        assert_eq!(cpu_line(&json!({"cpu": "AMD EPYC"})), "AMD EPYC");
        let partial = json!({"cpu": "", "cpu_vendor": null, "cpu_family": 8});
        assert_eq!(cpu_line(&partial), "? (family 8)");
    }

    #[test]
    fn echo_rounds_compare_only_at_the_same_distance_between_the_cpus() {
        let round = |v: f64, a: f64, b: f64| json!({"messages_per_server_cpu_s": v, "cpu_pair_round_trip_ns": [a, b]});
        let rows = vec![
            json!({"server": "holdfast", "connections": 100, "rounds_detail": [
                round(200e3, 60.0, 60.0), round(150e3, 400.0, 400.0), round(180e3, 400.0, 60.0)]}),
            json!({"server": "uwebsockets", "connections": 100, "rounds_detail": [
                round(190e3, 62.0, 58.0), round(140e3, 410.0, 400.0), round(145e3, 390.0, 420.0)]}),
            // No holdfast row at this count: nothing to compare it with.
            json!({"server": "uwebsockets", "connections": 1000, "rounds_detail": [
                round(150e3, 60.0, 60.0)]}),
        ];
        let lines = same_distance_lines(&rows);
        // Near: 200k against 190k; far: 150k against the median of 140k and 145k; the round
        // whose distance moved (400 → 60 ns) is in neither.
        assert_eq!(
            lines,
            [
                "uwebsockets × 100: near: holdfast 200.0k (1 rounds) / 190.0k (1): 1.05x; \
              far: holdfast 150.0k (1 rounds) / 142.5k (2): 1.05x"
            ]
        );
        // Without readings there is nothing to say.
        let bare = vec![json!({"server": "holdfast", "connections": 100})];
        assert!(same_distance_lines(&bare).is_empty());
    }

    #[test]
    fn a_spread_shows_its_ends_as_finely_as_its_median() {
        let sp = json!({"min": 9.965, "max": 10.185, "median": 10.019, "n": 5});
        assert_eq!(spread(&json!(10.019), &sp), "10.0 (10.0–10.2)");
        let sp = json!({"min": 363066.2, "max": 372325.7, "n": 3});
        assert_eq!(spread(&json!(366838.4), &sp), "366838 (363066–372326)");
        assert_eq!(
            spread(&json!(4.5), &json!({"min": 4.5, "max": 4.5, "n": 1})),
            "4.5"
        );
    }

    #[test]
    fn the_upgrade_section_shows_lost_and_behind_apart() {
        let run = |fanout: Value| {
            let mut o = String::new();
            handover(&mut o, &json!({"upgrade": {"fanout": fanout}}));
            o
        };
        let split = run(json!({"published": 90, "lost": 7, "lost_in_stream": 0,
            "unreceived_at_end": 7, "duplicates": 0, "reordered": 0, "gaps": 0}));
        assert!(split.contains("| 90 / 0 / 7 / 0 / 0 / 0 |"), "{split}");
        // A run recorded before the two were told apart shows its total and "?".
        let summed = run(json!({"published": 90, "lost": 7, "duplicates": 0,
            "reordered": 0, "gaps": 0}));
        assert!(summed.contains("| 90 / 7 / ? / 0 / 0 / 0 |"), "{summed}");
    }
}
