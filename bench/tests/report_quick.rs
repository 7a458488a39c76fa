//! `holdfast-bench all --quick` runs inside the test command: the report is produced, with
//! every section, its charts and a Markdown summary, and its figures agree with each other.
//! Nothing here asserts speed.

use std::process::Command;

use holdfast_bench::report::EAGER_SENDS;
use serde_json::Value;

/// The reports run one at a time: each measures a machine it must not share with the other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `holdfast-bench SECTION --quick` into a fresh directory; returns the directory, the
/// report's file stem and its JSON.
fn quick(section: &str, name: &str) -> (std::path::PathBuf, String, Value) {
    quick_with(section, name, &[])
}

/// [`quick`] with more arguments.
fn quick_with(section: &str, name: &str, extra: &[&str]) -> (std::path::PathBuf, String, Value) {
    let dir = std::env::temp_dir().join(format!("holdfast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
        .args([section, "--quick", "--name", name, "--out"])
        .arg(&dir)
        .args(extra)
        .output()
        .expect("run holdfast-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "quick {section} report took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let stem = format!("{}-{name}", holdfast_bench::today());
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap())
            .unwrap();
    (dir, stem, r)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn quick_report_is_complete_and_consistent() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, stem, r) = quick("all", "quick-test");
    assert_eq!(r["quick"], true);
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
    let runs = |s: &str| r[s]["runs"].as_array().cloned().unwrap_or_default();

    // Density: every connection asked for was held, and the byte figures are sane and agree.
    let d = runs("density");
    assert!(d.iter().any(|x| x["server"] == "holdfast"), "{d:?}");
    for x in d.iter().filter(|x| x["skipped"].is_null()) {
        assert_eq!(x["held"], x["connections"], "{x}");
        let user = num(&x["userspace_bytes_per_connection"]);
        assert!(user > 0.0, "{x}");
        let pair = num(&x["kernel_bytes_per_connection_pair"]);
        let share = num(&x["kernel_bytes_per_connection_server_share"]);
        assert!(pair > 1000.0 && (share - pair / 2.0).abs() <= 1.0, "{x}");
        // The pair figure is the sum of the caches that grew; the top ones are listed.
        let top: f64 = x["slab_caches_grown"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| num(&c["bytes_per_connection"]))
            .sum();
        assert!(top > 0.0 && top <= pair + 8.0, "{x}");
    }

    // Echo: the same connection counts for every server; measured round trips are the
    // histogram's count; per-CPU figures match their parts.
    let e = runs("echo");
    assert!(e.len() >= 2);
    for x in &e {
        assert_eq!(x["failed_total"], 0, "{x}");
        let trips = num(&x["round_trips"]);
        assert!(trips > 0.0);
        assert_eq!(num(&x["rtt_us"]["count"]), trips);
        let cpu = num(&x["server_cpu_seconds"]);
        if cpu > 0.0 {
            let per = num(&x["messages_per_server_cpu_s"]);
            assert!((per - trips / cpu).abs() / per < 0.01, "{x}");
        }
        // Every round is listed with how far apart the two pinned CPUs were around it, and
        // the row's figure is one of its rounds'.
        let rounds = x["rounds_detail"].as_array().unwrap();
        assert_eq!(rounds.len() as u64, x["rounds"].as_u64().unwrap(), "{x}");
        assert!(
            rounds
                .iter()
                .any(|d| d["messages_per_server_cpu_s"] == x["messages_per_server_cpu_s"]),
            "{x}"
        );
        if r["echo"]["pinning"]["server_cpu"].is_string() {
            for d in rounds {
                let ns = d["cpu_pair_round_trip_ns"].as_array().unwrap();
                assert_eq!(ns.len(), 2, "{d}");
                assert!(ns.iter().all(|t| num(t) > 1.0), "{d}");
            }
        }
    }
    // holdfast's io floor ran beside holdfast at every connection count (the same checks
    // above held for it), and its summary line is its row's figure.
    let counts: Vec<&Value> = e
        .iter()
        .filter(|x| x["server"] == "holdfast")
        .map(|x| &x["connections"])
        .collect();
    let floor = r["echo"]["floor"].as_array().unwrap();
    assert_eq!(floor.len(), counts.len(), "{floor:?}");
    for fl in floor {
        let row = e
            .iter()
            .find(|x| x["server"] == "holdfast-io-floor" && x["connections"] == fl["connections"])
            .unwrap_or_else(|| panic!("no floor row for {fl}"));
        assert_eq!(
            fl["messages_per_server_cpu_s"],
            row["messages_per_server_cpu_s"]
        );
        assert!(num(&fl["holdfast_over_floor"]) > 0.0, "{fl}");
    }
    // Upgrades and closes: each server's ramps were also made by the independent client
    // (over TLS too), every connection of every round opened and closed cleanly.
    let ups = r["echo"]["upgrades"].as_array().unwrap();
    assert!(ups.iter().any(|x| x["server"] == "holdfast"), "{ups:?}");
    assert!(ups.iter().any(|x| x["server"] == "holdfast-tls"), "{ups:?}");
    for x in ups {
        let i = &x["independent_client"];
        assert_eq!(
            (i["errors"].as_u64(), i["failures"].as_u64()),
            (Some(0), Some(0)),
            "{x}"
        );
        assert_eq!(i["rounds"], x["rounds"], "{x}");
        assert_eq!(
            num(&i["established"]),
            num(&x["connections"]) * num(&x["rounds"]),
            "{x}"
        );
        assert!(num(&i["server_cpu_us_per_upgrade"]) > 0.0, "{x}");
        assert!(num(&i["server_cpu_us_per_close"]) > 0.0, "{x}");
        // What each client looked like beside its figures: its own CPU per connection and
        // the server's wake-ups per connection (a wake-up may serve many connections).
        for c in [&x["client_shape"], &i["client_shape"]] {
            assert!(num(&c["cpu_us_per_upgrade"]) > 0.0, "{x}");
            assert!(num(&c["cpu_us_per_close"]) > 0.0, "{x}");
            let wakes = num(&c["server_wakeups_per_upgrade"]);
            assert!(wakes > 0.0 && wakes < 10.0, "{x}");
            assert!(num(&c["server_wakeups_per_close"]) >= 0.0, "{x}");
        }
    }
    for t in r["echo"]["targets"].as_array().unwrap() {
        // A target is judged from its ratio, whichever way it came out.
        if let (Some(ratio), Some(met)) = (t["ratio"].as_f64(), t["met"].as_bool()) {
            let target = t["target"].as_str().unwrap();
            let (want_high, bound) = match target.split_once(' ') {
                Some((">=", b)) => (true, b),
                Some(("<=", b)) => (false, b),
                _ => panic!("target {target:?}"),
            };
            let bound: f64 = bound.parse().unwrap();
            assert_eq!(
                met,
                if want_high {
                    ratio >= bound
                } else {
                    ratio <= bound
                },
                "{t}"
            );
        }
    }

    // Fan-out: nothing lost, duplicated or reordered, and the deliveries add up.
    let f = runs("fanout");
    assert!(f.iter().any(|x| x["server"] == "holdfast"));
    for x in &f {
        for k in ["lost", "duplicates", "reordered", "gaps"] {
            assert_eq!(x[k], 0, "{k}: {x}");
        }
        // Lost in the stream and behind at the end are told apart, and add up to lost.
        assert_eq!(
            num(&x["lost_in_stream"]) + num(&x["unreceived_at_end"]),
            num(&x["lost"]),
            "{x}"
        );
        assert!(num(&x["deliveries"]) > 0.0, "{x}");
        // How the server batched, from the client's reads (loadgen and independent client).
        assert!(num(&x["deliveries_per_read"]) > 0.0, "{x}");
        assert!(num(&x["latency_us"]["count"]) > 0.0, "{x}");
        assert!(
            num(&x["latency_us"]["p99"]) >= num(&x["latency_us"]["p50"]),
            "{x}"
        );
    }

    // TLS: every row was ramped by the loadgen and by the independent client, whose
    // handshakes were full or resumed as asked and whose connections all closed cleanly.
    let tls = runs("tls");
    for resumption in [Value::Null, "off".into(), "always".into()] {
        for client in ["loadgen", "upgrade-client"] {
            let rows: Vec<&Value> = tls
                .iter()
                .filter(|x| x["resumption"] == resumption && x["client"] == client)
                .collect();
            assert!(
                !rows.is_empty(),
                "no {client} row for {resumption}: {tls:?}"
            );
            for x in rows {
                assert_eq!(x["established"], x["connections"], "{x}");
                assert!(num(&x["server_cpu_us_per_connection"]) > 0.0, "{x}");
                let (full, resumed) = (
                    &x["tls_handshakes"]["full"],
                    &x["tls_handshakes"]["resumed"],
                );
                match resumption.as_str() {
                    None => assert!(full.as_u64().unwrap_or(0) == 0, "{x}"),
                    Some("off") => assert_eq!(
                        (full, resumed.as_u64()),
                        (&x["established"], Some(0)),
                        "{x}"
                    ),
                    _ => assert!(num(resumed) > num(full), "most resume: {x}"),
                }
                if client == "upgrade-client" {
                    assert_eq!(x["failures"], 0, "{x}");
                    assert_eq!(x["met"], true, "{x}");
                }
                // Both clients' openings are timed, and what each client cost itself and
                // how often it woke the server are beside the server's figure.
                let lat = &x["connect_upgrade_latency_us"];
                assert!(
                    num(&lat["p99"]) >= num(&lat["p50"]) && num(&lat["p50"]) > 0.0,
                    "{x}"
                );
                assert!(num(&x["client_shape"]["cpu_us_per_upgrade"]) > 0.0, "{x}");
                assert!(
                    num(&x["client_shape"]["server_wakeups_per_upgrade"]) > 0.0,
                    "{x}"
                );
            }
        }
    }
    let summary = r["tls"]["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 3, "{summary:?}");
    for x in summary {
        for client in ["loadgen", "upgrade_client"] {
            assert!(num(&x[client]["median"]) > 0.0, "{x}");
        }
    }

    // Transports: every rung held every subscriber and lost nothing in fan-out.
    let t = &r["transports"];
    let rungs: Vec<&str> = t["density"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            assert_eq!(x["held"], x["connections"], "{x}");
            assert!(num(&x["userspace_bytes_per_connection"]) > 0.0, "{x}");
            x["server"].as_str().unwrap()
        })
        .collect();
    assert_eq!(rungs, ["holdfast", "holdfast-sse", "holdfast-poll"]);
    let mut independent = 0;
    for x in t["fanout"].as_array().unwrap() {
        if x["independent"] == true {
            // The long-poll rung again, driven by the independent client: every message
            // in order, no failed poll, the server's cost measured.
            independent += 1;
            assert_eq!(x["server"], "holdfast-poll", "{x}");
            assert_eq!(x["out_of_order"], 0, "{x}");
            assert_eq!(x["errors"], 0, "{x}");
            assert!(num(&x["deliveries_per_server_cpu_s"]) > 0.0, "{x}");
        } else {
            for k in ["lost", "duplicates", "reordered", "gaps"] {
                assert_eq!(x[k], 0, "{k}: {x}");
            }
        }
        assert!(num(&x["deliveries"]) > 0.0, "{x}");
    }
    assert_eq!(
        independent, 1,
        "the long-poll rung is checked by the independent client"
    );

    // Storm: every client came back.
    for x in runs("storm") {
        assert_eq!(x["recovered"], true, "{x}");
        assert_eq!(x["reconnected"], x["lost"], "{x}");
        // The server's cost of the storm is measured (the server's own /proc figures).
        assert!(num(&x["server_cpu_us_per_reconnect"]) >= 0.0, "{x}");
        // In rounds: the row's figure is one of its rounds'.
        let sp = &x["server_cpu_us_per_reconnect_spread"];
        assert_eq!(x["rounds"], 2, "{x}");
        assert_eq!(sp["n"], 2, "{x}");
        let cpu = num(&x["server_cpu_us_per_reconnect"]);
        assert!(cpu == num(&sp["min"]) || cpu == num(&sp["max"]), "{x}");
        // The client beside it: the loadgen's CPU over the same span, the server's wake-ups.
        assert!(num(&x["loadgen_cpu_seconds_storm"]) > 0.0, "{x}");
        assert!(num(&x["server_wakeups_per_reconnect"]) >= 0.0, "{x}");
    }

    // Charts and the Markdown report exist and name each other.
    let md = std::fs::read_to_string(dir.join(format!("{stem}.md"))).unwrap();
    // The machine line names the CPU's family and model where the kernel prints them, as
    // this machine's /proc/cpuinfo does.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(family) = cpuinfo.lines().find_map(|l| {
        l.strip_prefix("cpu family")
            .map(|v| v.trim_start_matches([' ', '\t', ':']))
    }) {
        assert_eq!(r["machine"]["cpu_family"].to_string(), family.trim());
        assert!(md.contains(&format!("family {}", family.trim())), "{md}");
    }
    assert!(
        md.contains("| lost / behind at the end / dup / reordered / gaps |")
            && md.contains("Behind at the end: messages published"),
        "the fan-out tables tell lost from behind and say what each is"
    );
    for heading in [
        "## Density",
        "## Echo",
        "## Pub/sub fan-out",
        "## Reconnect storm",
        "## Transports",
    ] {
        assert!(md.contains(heading), "{heading} missing");
    }
    let charts = r["charts"].as_array().unwrap();
    assert!(charts.len() >= 4, "{charts:?}");
    for c in charts {
        let c = c.as_str().unwrap();
        let svg = std::fs::read_to_string(dir.join(c)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{c}");
        assert!(md.contains(c), "{c} not in the report");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `holdfast-bench backplane --quick`: three nodes on a real redis-server (the test command
/// installs it); every delivery's number agrees with the publisher's, and drained clients
/// resume on another node with nothing lost.
#[test]
fn quick_backplane_report_checks_numbers_and_resume() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, stem, r) = quick("backplane", "bp-test");
    let b = &r["backplane"];
    for key in ["light", "fleet", "single_node"] {
        let rows = b[key].as_array().unwrap();
        assert!(!rows.is_empty(), "{key}");
        for x in rows {
            assert!(num(&x["numbers_checked"]) > 0.0, "{x}");
            assert_eq!(num(&x["misnumbered"]), 0.0, "{x}");
            assert_eq!(num(&x["lost"]), 0.0, "{x}");
            assert!(num(&x["deliveries_per_s"]) > 0.0, "{x}");
        }
    }
    let fleet = &b["fleet"][0]["cpu"];
    for p in ["node1", "node2", "node3", "redis"] {
        assert!(fleet[p].is_object(), "no CPU figure for {p}: {fleet}");
    }
    let rs = &b["resume"];
    assert_eq!(rs["recovered"], rs["clients"], "{rs}");
    assert_eq!(
        (num(&rs["lost"]), num(&rs["duplicates"])),
        (0.0, 0.0),
        "{rs}"
    );
    let md = std::fs::read_to_string(dir.join(format!("{stem}.md"))).unwrap();
    assert!(md.contains("## Backplane"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The TLS section against uWebSockets built with OpenSSL (when its source is here): its
/// rows stand beside holdfast-tls with both clients and both resumption settings, its
/// handshakes full or resumed as asked, and a verdict per client and setting has a figure.
#[test]
fn tls_against_uwebsockets_has_its_rows_and_verdicts() {
    let Some(src) = holdfast_bench::report::uws::test_source(env!("CARGO_MANIFEST_DIR").as_ref())
    else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let src = src.display().to_string();
    let (_dir, stem, r) = quick_with(
        "tls",
        "tls-uws-test",
        &["--peers", "uwebsockets", "--uws-src", &src],
    );
    let runs = r["tls"]["runs"].as_array().cloned().unwrap_or_default();
    for resumption in ["off", "always"] {
        for client in ["loadgen", "upgrade-client"] {
            let x = runs
                .iter()
                .find(|x| {
                    x["server"] == "uwebsockets-tls"
                        && x["resumption"] == resumption
                        && x["client"] == client
                })
                .unwrap_or_else(|| panic!("no {client} row for {resumption}: {runs:?}"));
            assert_eq!(x["established"], x["connections"], "{x}");
            assert!(num(&x["server_cpu_us_per_connection"]) > 0.0, "{x}");
            let (full, resumed) = (
                num(&x["tls_handshakes"]["full"]),
                num(&x["tls_handshakes"]["resumed"]),
            );
            if resumption == "off" {
                assert_eq!((full, resumed), (num(&x["established"]), 0.0), "{x}");
            } else {
                assert!(resumed > full, "most resume: {x}");
            }
        }
    }
    let targets = r["tls"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4, "{targets:?}");
    for t in targets {
        assert!(num(&t["ratio"]) > 0.0, "{t}");
        assert!(t["met"].is_boolean(), "{t}");
    }
    let md = std::fs::read_to_string(_dir.join(format!("{stem}.md"))).unwrap();
    assert!(
        md.contains("server CPU per TLS connection (resumed, median of rounds), independent client, holdfast / uwebsockets"),
        "{md}"
    );
}

/// The fan-out section against uWebSockets (built from source when a source is here):
/// every uWebSockets row has its holdfast row placed alike — holdfast's defaults beside
/// uWebSockets where the scheduler puts it, one holdfast worker beside uWebSockets confined
/// the same way — and each confined row ran where it says (read back from /proc and from
/// the loadgen's own threads). Comparing across placements measured the placement: on
/// loopback it moves the cost per delivery by up to half.
#[test]
fn fanout_against_uwebsockets_compares_servers_placed_alike() {
    let Some(src) = holdfast_bench::report::uws::test_source(env!("CARGO_MANIFEST_DIR").as_ref())
    else {
        return;
    };
    let cpus = holdfast::topology::allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("one CPU: every run shares it, there is no placement to compare");
        return;
    }
    let (first, last) = (cpus[0], cpus[cpus.len() - 1]);
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let src = src.display().to_string();
    let (_dir, _stem, r) = quick_with(
        "fanout",
        "placement-test",
        &[
            "--peers",
            "uwebsockets",
            "--uws-src",
            &src,
            "--fanout-rounds",
            "2",
        ],
    );
    let runs = r["fanout"]["runs"].as_array().cloned().unwrap_or_default();
    // Each of the loadgen's rows is the median of its two rounds, with the spread of the
    // figures it is judged on; the independent client's alike.
    for x in &runs {
        assert_eq!(x["rounds"], 2, "{x}");
        assert_eq!(x["deliveries_per_server_cpu_s_spread"]["n"], 2, "{x}");
        let p50 = &x["latency_rounds_us"]["p50"];
        assert_eq!(p50["n"], 2, "{x}");
        let (lo, mid, hi) = (num(&p50["min"]), num(&p50["median"]), num(&p50["max"]));
        assert!(lo <= mid && mid <= hi, "{x}");
        // The chart's histogram pools both rounds: its tail reaches the worse round's (the
        // independent client gives percentiles only: its row keeps the median round's).
        if x["independent"] != true {
            let tail = num(&x["latency_rounds_us"]["p99.9"]["max"]);
            assert!(num(&x["latency_us"]["max"]) >= tail * 0.999, "{x}");
        }
    }
    let shared = format!("server on CPU {first}, loadgen on all");
    let apart = format!("server on CPU {last}, loadgen on CPU {first}");
    let uws: Vec<&Value> = runs
        .iter()
        .filter(|x| x["server"] == "uwebsockets")
        .collect();
    for place in ["own", shared.as_str(), apart.as_str()] {
        assert!(
            uws.iter().any(|x| x["placement"] == place),
            "{place}: {runs:?}"
        );
    }
    let case = |x: &Value| {
        (
            x["subscribers"].clone(),
            x["topics"].clone(),
            x["publish_rate"].clone(),
            x["publish_via"].clone(),
            x["placement"].clone(),
            x["independent"].clone(),
        )
    };
    for u in &uws {
        let beside: Vec<&Value> = runs
            .iter()
            .filter(|h| {
                h["server"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("holdfast"))
                    && case(h) == case(u)
            })
            .collect();
        let mut want = vec![if u["placement"] == "own" {
            "holdfast".to_string()
        } else {
            "holdfast --workers 1".to_string()
        }];
        // Holdfast with eager sends beside its defaults in the one-topic case (quick runs
        // have two cases, both among the first two), where uWebSockets is placed as it is
        // and confined beside it, never alone on a CPU.
        if u["topics"] == 1 && u["placement"] != apart {
            want.push(format!("{} {EAGER_SENDS}", want[0]));
        }
        let got: Vec<&str> = beside
            .iter()
            .map(|h| h["server"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{u}");
    }
    // Eager sends deliver everything too.
    for x in runs.iter().filter(|x| {
        x["server"]
            .as_str()
            .is_some_and(|s| s.contains(EAGER_SENDS))
    }) {
        assert!(x["deliveries"].as_f64().unwrap() > 0.0, "{x}");
        assert_eq!(x["lost"], 0, "{x}");
        assert_eq!(x["unreceived_at_end"], 0, "{x}");
    }
    for x in &runs {
        let (server_cpus, client_cpus) = (&x["server_cpus"], &x["client_cpus"]);
        if x["placement"] == shared {
            assert_eq!(server_cpus, &serde_json::json!([first]), "{x}");
        } else if x["placement"] == apart {
            assert_eq!(server_cpus, &serde_json::json!([last]), "{x}");
            assert_eq!(client_cpus, &serde_json::json!([first]), "{x}");
        } else {
            assert_eq!(x["placement"], "own", "{x}");
        }
    }
    // Every verdict names its pairing: one worker only ever against uWebSockets placed
    // alike, and with the placement in its name.
    let targets = r["fanout"]["targets"].as_array().unwrap();
    let mut one_worker = 0;
    for t in targets {
        let what = t["what"].as_str().unwrap();
        if what.contains("--workers 1") {
            one_worker += 1;
            assert!(what.contains(&shared) || what.contains(&apart), "{t}");
        }
    }
    assert!(one_worker > 0, "{targets:?}");
    // The first case again with the independent client, both servers and both publishers,
    // judged against each other only.
    let independent: Vec<&Value> = runs.iter().filter(|x| x["independent"] == true).collect();
    let mut seen: Vec<(String, String)> = independent
        .iter()
        .map(|x| {
            assert!(x["deliveries"].as_f64().unwrap() > 0.0, "{x}");
            assert_eq!(x["lost"], 0, "{x}");
            assert!(x["client"].as_str().unwrap().contains("fanout-client"));
            let s = |k: &str| x[k].as_str().unwrap().to_string();
            (s("server"), s("publish_via"))
        })
        .collect();
    seen.sort();
    let eager = format!("holdfast {EAGER_SENDS}");
    let want: Vec<(String, String)> = [
        ("holdfast", "admin"),
        ("holdfast", "ws"),
        (eager.as_str(), "admin"),
        (eager.as_str(), "ws"),
        ("uwebsockets", "admin"),
        ("uwebsockets", "ws"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, want);
    let judged = targets
        .iter()
        .filter(|t| t["what"].as_str().unwrap().contains("independent client"))
        .count();
    assert_eq!(
        judged, 12,
        "two publishers × two holdfast rows × three goals: {targets:?}"
    );
}

/// A reader that went away ends `holdfast-bench` quietly with status 0: the peer's
/// `listening on` line panicked on the broken pipe with a backtrace and status 101.
#[test]
fn a_closed_stdout_ends_a_peer_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    // The read end is gone before the peer writes: every write gets EPIPE.
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
        .args(["peer", "fastwebsockets", "--listen", "127.0.0.1:0"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    // Bounded: a peer that ignored the closed pipe would serve until killed.
    let Ok(out) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the peer went on serving with its stdout closed");
    };
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
