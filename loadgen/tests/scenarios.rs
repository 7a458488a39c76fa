//! Every loadgen scenario in small form against the real holdfast server and against a
//! tokio-tungstenite echo server built here, asserting the counts the loadgen reports — and,
//! for holdfast, that the server's own metrics agree. Plus bad targets: refused, non-101,
//! a server that never answers.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{
    finish_loadgen, loadgen, loadgen_under, n, spawn_loadgen, spawn_loadgen_on, Holdfast,
    TungsteniteEcho,
};

fn url(addr: impl std::fmt::Display) -> String {
    format!("ws://{addr}/echo")
}

#[test]
fn hold_against_holdfast_counts_agree_with_the_server() {
    let server = Holdfast::start(
        "127.0.0.1:0",
        &["--ping-interval", "0.5", "--idle-timeout", "5"],
    );
    let count = 3000;
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(&server.addr),
        "--connections",
        &count.to_string(),
        "--rate",
        "20000",
        "--duration",
        "1.5",
        "--hard-timeout",
        "60",
        "--ping-interval",
        "0.5",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(n(&v["established"]), count);
    assert_eq!(n(&v["held_at_end"]), count);
    assert!(n(&v["pings_answered"]) >= count, "{v}");
    // Our own pings (one per connection per 0.5 s over ≥ 1.5 s): every one answered but
    // those still in flight at the stop.
    let (sent, pongs) = (n(&v["pings_sent"]), n(&v["pongs_received"]));
    assert!(
        sent >= 2 * count && pongs <= sent && pongs + count >= sent,
        "{v}"
    );
    assert_eq!(n(&v["closes_and_statuses"]["close:1000"]), count, "{v}");
    assert!(v["connect_upgrade_latency_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["connect_upgrade_latency_us"]["hdr_v2_deflate_base64"]
        .as_str()
        .is_some_and(|s| s.len() > 20));
    assert!(v["machine"]["kernel"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
    // The server agrees: n upgrades, n clean client-initiated closes, nothing aborted.
    assert_eq!(server.metric("holdfast_upgrades_total"), count as f64);
    assert_eq!(
        server.metric("holdfast_closes_total{code=\"1000\",side=\"client\"}"),
        count as f64
    );
    assert_eq!(server.metric("holdfast_aborted_total"), 0.0);
}

/// The report places the loadgen with `taskset` (apart from the server, or beside it): its
/// engine threads must stay on the CPUs it was given. They used to be pinned to CPU t for
/// thread t whatever the mask, so a loadgen confined to the last CPU ran on the first.
#[test]
fn engine_threads_stay_on_the_cpus_the_loadgen_is_given() {
    let allowed = holdfast::topology::allowed_cpus();
    let last = allowed.last().copied().unwrap_or(0);
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let args = [
        "hold",
        "--url",
        &url(&server.addr),
        "--connections",
        "200",
        "--duration",
        "0.2",
        "--hard-timeout",
        "30",
        "--workers",
        "2",
    ];
    let cpu = last.to_string();
    let (code, v, out) = finish_loadgen(spawn_loadgen_on(Some(&cpu), &args));
    assert_eq!(code, 0, "{out}");
    assert_eq!(n(&v["held_at_end"]), 200, "{v}");
    assert_eq!(v["client_cpus"], serde_json::json!([last]), "{v}");
    // Unconfined, two threads spread over the first two CPUs it may use.
    let (code, v, out) = loadgen(&args);
    assert_eq!(code, 0, "{out}");
    let spread: Vec<usize> = allowed.iter().copied().take(2).collect();
    assert_eq!(v["client_cpus"], serde_json::json!(spread), "{v}");
}

#[test]
fn hold_against_tokio_tungstenite() {
    let peer = TungsteniteEcho::start();
    let count = 1000;
    // Paced for a one-thread peer on a loaded CI machine: 1,000 connects at once (the
    // default rate) once overflowed its accept queue and one handshake was reset.
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(peer.addr),
        "--connections",
        &count.to_string(),
        "--rate",
        "2000",
        "--concurrency",
        "200",
        "--duration",
        "0.5",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(n(&v["established"]), count);
    assert_eq!(n(&v["held_at_end"]), count);
    // tungstenite answers our Close with 1000: the loadgen counts every one.
    assert_eq!(n(&v["closes_and_statuses"]["close:1000"]), count, "{v}");
    assert_eq!(
        peer.upgrades.load(std::sync::atomic::Ordering::Relaxed),
        count
    );
}

#[test]
fn echo_closed_loop_against_holdfast() {
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let (code, v, out) = loadgen(&[
        "echo",
        "--url",
        &url(&server.addr),
        "--connections",
        "50",
        "--size",
        "32",
        "--warmup",
        "0.3",
        "--duration",
        "1",
        "--server-pid",
        &server.child.id().to_string(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["loop"], "closed");
    let trips = n(&v["round_trips"]);
    assert!(trips > 100, "{v}");
    assert_eq!(n(&v["echo_mismatch"]), 0);
    assert_eq!(n(&v["rtt_us"]["count"]), trips);
    assert!(v["rtt_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["rtt_us"]["p99"].as_f64() >= v["rtt_us"]["p50"].as_f64());
    assert!(v["server_cpu_seconds"].as_f64().unwrap() > 0.0, "{v}");
    // Every round trip measured passed through the server.
    assert!(server.metric("holdfast_messages_received_total") >= trips as f64);
}

#[test]
fn echo_open_loop_against_tokio_tungstenite_keeps_its_schedule() {
    let peer = TungsteniteEcho::start();
    let (code, v, out) = loadgen(&[
        "echo",
        "--url",
        &url(peer.addr),
        "--connections",
        "20",
        "--message-rate",
        "2000",
        "--warmup",
        "0.3",
        "--duration",
        "1.5",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["loop"], "open");
    // 2,000/s for 1.5 s: the schedule is kept (sends are driven by the clock, not replies).
    let sent = n(&v["messages_sent"]) as f64;
    assert!((2400.0..=3600.0).contains(&sent), "sent {sent}: {v}");
    let trips = n(&v["round_trips"]) as f64;
    assert!(trips >= sent * 0.9, "{v}");
    assert_eq!(n(&v["echo_mismatch"]), 0);
    assert_eq!(n(&v["sends_skipped_backlog"]), 0);
}

#[test]
fn storm_cut_against_holdfast_recovers_every_client() {
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let count = 1000;
    let (code, v, out) = loadgen(&[
        "storm",
        "--url",
        &url(&server.addr),
        "--connections",
        &count.to_string(),
        "--hold",
        "0.3",
        "--cause",
        "cut",
        "--base-ms",
        "200",
        "--duration",
        "30",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(n(&v["lost"]), count);
    assert_eq!(n(&v["reconnected"]), count);
    assert_eq!(n(&v["closes_and_statuses"]["close:cut_by_loadgen"]), count);
    let recovery = v["recovery_seconds"].as_f64().unwrap();
    assert!(recovery > 0.0 && recovery < 30.0, "{v}");
    // Full jitter: one delay per attempt, first delays spread over [0, 200 ms).
    let d = &v["reconnect_delay_ms"];
    assert_eq!(n(&d["count"]), n(&v["reconnect_attempts"]));
    assert!(n(&d["count"]) >= count);
    assert!(d["p50"].as_f64().unwrap() < 150.0, "{d}");
    // The server upgraded every first connection and every reconnect, nothing else, and no
    // reconnect failed. (Before the server waited for its shutdowns to complete before
    // closing a slot, ~1 in 2,000 reconnects was cut by a previous connection's late
    // shutdown: see `push_shutdown` in the worker.)
    assert_eq!(n(&v["failed_total"]), 0, "{v}");
    assert_eq!(server.metric("holdfast_upgrades_total"), (2 * count) as f64);
}

#[test]
fn storm_without_jitter_reconnects_all_at_the_same_delay() {
    let peer = TungsteniteEcho::start();
    let count = 500;
    let (code, v, out) = loadgen(&[
        "storm",
        "--url",
        &url(peer.addr),
        "--connections",
        &count.to_string(),
        "--hold",
        "0.2",
        "--base-ms",
        "100",
        "--no-jitter",
        "--duration",
        "30",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(n(&v["reconnected"]), count);
    let d = &v["reconnect_delay_ms"];
    // Every first delay is the base: the herd.
    assert!((d["p50"].as_f64().unwrap() - 100.0).abs() < 1.0, "{d}");
    assert_eq!(d["p50"], d["max"]);
    assert_eq!(
        peer.upgrades.load(std::sync::atomic::Ordering::Relaxed),
        2 * count
    );
}

#[test]
fn storm_drain_and_restart_every_client_sees_1012_and_comes_back() {
    let first = Holdfast::start(
        "127.0.0.1:0",
        &["--drain-window", "0.5", "--drain-grace", "0.5"],
    );
    let (addr, admin) = (first.addr.clone(), first.admin.clone());
    let count = 600;
    let run = spawn_loadgen(&[
        "storm",
        "--url",
        &url(&addr),
        "--connections",
        &count.to_string(),
        "--hold",
        "0.3",
        "--cause",
        "drain",
        "--admin",
        &admin,
        "--base-ms",
        "100",
        "--cap-ms",
        "1000",
        "--max-attempts",
        "30",
        "--duration",
        "40",
    ]);
    // The loadgen drains the server; it exits once drained. Start its replacement on the
    // same address, as a rolling restart would.
    let status = first.wait_exit(Duration::from_secs(40));
    assert!(
        status.is_some_and(|s| s.success()),
        "drained server: {status:?}"
    );
    let second = Holdfast::start(&addr, &[]);
    let (code, v, out) = finish_loadgen(run);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(n(&v["closes_and_statuses"]["close:1012"]), count, "{v}");
    assert_eq!(n(&v["lost"]), count);
    assert_eq!(n(&v["reconnected"]), count);
    assert_eq!(second.metric("holdfast_upgrades_total"), count as f64);
}

#[test]
fn a_run_that_would_measure_nothing_is_refused_before_it_starts() {
    // `hold --connections 0` held nothing until its hard timeout; `--rate nan` ramped
    // nothing; both then reported zeros as if measured.
    let target = url("127.0.0.1:9");
    for (args, says) in [
        (
            vec!["hold", "--connections", "0"],
            "--connections must be at least 1",
        ),
        (
            vec!["hold", "--connections", "1", "--rate", "NaN"],
            "--rate must be",
        ),
        (
            vec!["echo", "--connections", "1", "--message-rate", "inf"],
            "--message-rate must be",
        ),
        (
            vec!["hold", "--connections", "1", "--concurrency", "0"],
            "--concurrency must be",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--url", &target, "--hard-timeout", "10"]);
        let (code, _, out) = loadgen(&all);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
}

#[test]
fn bad_targets_are_counted_by_reason_and_the_run_stays_bounded() {
    // Nothing listening: every attempt refused, exit code 1 (not everything established).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap();
    drop(free);
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(closed),
        "--connections",
        "200",
        "--duration",
        "0.2",
        "--hard-timeout",
        "30",
    ]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(n(&v["failures"]["refused"]), 200, "{v}");
    assert_eq!(n(&v["established"]), 0);

    // A server that answers 403, and one that accepts and never answers.
    let forbid = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (fa, sa) = (forbid.local_addr().unwrap(), silent.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in forbid.incoming().take(50) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let held = std::thread::spawn(move || {
        // Accept and keep the sockets, never answering.
        silent.incoming().take(50).collect::<Vec<_>>()
    });
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(fa),
        "--connections",
        "50",
        "--duration",
        "0.2",
        "--hard-timeout",
        "30",
    ]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(n(&v["failures"]["http_status"]), 50, "{v}");
    assert_eq!(n(&v["closes_and_statuses"]["http:403"]), 50, "{v}");
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(sa),
        "--connections",
        "50",
        "--handshake-timeout",
        "0.5",
        "--duration",
        "0.2",
        "--hard-timeout",
        "30",
    ]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(n(&v["failures"]["timeout"]), 50, "{v}");
    drop(held);
}

/// A raw server that completes the upgrade for `connections` clients, writes `after`, then
/// closes each socket — or, with `keep`, keeps them open and never reads again (they are
/// handed to the returned receiver, which owns them until it is dropped).
fn misbehaving_server(
    connections: usize,
    after: &'static [u8],
    keep: bool,
) -> (
    std::net::SocketAddr,
    std::sync::mpsc::Receiver<Vec<std::net::TcpStream>>,
) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accept = holdfast::ws::handshake::accept_key(holdfast_loadgen::target::KEY.as_bytes());
    let accept = String::from_utf8(accept.to_vec()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().take(connections) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            let _ = s.write_all(after);
            if keep {
                held.push(s);
            }
        }
        let _ = tx.send(held);
    });
    (addr, rx)
}

#[test]
fn bad_servers_protocol_errors_early_close_and_a_server_that_stops_reading() {
    // A masked frame from a server breaks RFC 6455 §5.1: counted as protocol_error.
    let (masked, _) = misbehaving_server(30, &[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2], false);
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(masked),
        "--connections",
        "30",
        "--duration",
        "0.5",
        "--hard-timeout",
        "30",
    ]);
    // Established, then lost: not a failure to connect, but not held either — the run
    // says so (it used to end "failures: none" with status 0).
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        n(&v["closes_and_statuses"]["close:protocol_error"]),
        30,
        "{v}"
    );
    assert_eq!(n(&v["established"]), 30, "{v}");
    assert_eq!(n(&v["lost_after_established"]), 30, "{v}");
    assert!(out.contains("30 lost after being established"), "{out}");

    // Upgrade, then close at once: counted as eof.
    let (closer, _) = misbehaving_server(30, b"", false);
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(closer),
        "--connections",
        "30",
        "--duration",
        "0.5",
        "--hard-timeout",
        "30",
    ]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(n(&v["closes_and_statuses"]["close:eof"]), 30, "{v}");
    assert_eq!(n(&v["lost_after_established"]), 30, "{v}");

    // Upgrade, then never read: an open-loop echo keeps its schedule until each
    // connection's unsent backlog is full, then skips sends (counted), and ends on time.
    let (deaf, sockets) = misbehaving_server(4, b"", true);
    let started = std::time::Instant::now();
    let (code, v, out) = loadgen(&[
        "echo",
        "--url",
        &url(deaf),
        "--connections",
        "4",
        "--size",
        "60000",
        "--message-rate",
        "2000",
        "--warmup",
        "0.2",
        "--duration",
        "2",
        "--close-timeout",
        "1",
        "--hard-timeout",
        "30",
    ]);
    assert_eq!(code, 1, "no round trip can be measured: {out}");
    assert!(n(&v["sends_skipped_backlog"]) > 0, "{v}");
    assert_eq!(n(&v["round_trips"]), 0);
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(sockets);
}

#[test]
fn a_closed_loop_echo_keeps_one_message_in_flight_per_connection() {
    // A server that upgrades and never answers: a closed loop sends each connection's
    // first message and then waits for its reply. It used to start round trips again each
    // time the run moved on (steady, measuring, stopped): three messages in flight per
    // connection by the end, two while measuring.
    let (deaf, sockets) = misbehaving_server(4, b"", true);
    let (code, v, out) = loadgen(&[
        "echo",
        "--url",
        &url(deaf),
        "--connections",
        "4",
        "--size",
        "32",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
        "--close-timeout",
        "0.5",
        "--hard-timeout",
        "30",
    ]);
    assert_eq!(code, 1, "no round trip can be measured: {out}");
    assert_eq!(v["loop"], "closed");
    assert_eq!(
        n(&v["messages_sent"]),
        0,
        "nothing more while measuring: {v}"
    );
    // What each connection sent, read back after the run: one data message (and the
    // loadgen's Close at the end).
    let held = sockets.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(held.len(), 4);
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut bytes = Vec::new();
        let _ = s.read_to_end(&mut bytes);
        let mut data = 0;
        let mut at = 0;
        while at + 2 <= bytes.len() {
            let len = usize::from(bytes[at + 1] & 0x7f);
            assert!(len < 126, "small frames only: {bytes:?}");
            if bytes[at] & 0x0f == 0x2 {
                data += 1;
            }
            at += 2 + 4 + len;
        }
        assert_eq!(data, 1, "data messages sent on one connection: {bytes:?}");
    }
}

#[test]
fn connections_take_several_targets_in_turn() {
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let peer = TungsteniteEcho::start();
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &url(&server.addr),
        "--url",
        &url(peer.addr),
        "--connections",
        "1000",
        "--duration",
        "0.3",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(n(&v["established"]), 1000);
    assert_eq!(server.metric("holdfast_upgrades_total"), 500.0);
    assert_eq!(
        peer.upgrades.load(std::sync::atomic::Ordering::Relaxed),
        500
    );
}

#[test]
fn sigterm_ends_the_run_early_with_a_clean_close_and_a_report() {
    use std::io::BufRead;
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let json = std::env::temp_dir().join(format!("loadgen-sigterm-{}.json", std::process::id()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast-loadgen"))
        .args(["hold", "--url", &url(&server.addr), "--connections", "500"])
        .args(["--duration", "300", "--hard-timeout", "600", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Progress lines arrive once a second; the first `hold` line means the ramp is done.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let held = lines
        .by_ref()
        .take(60)
        .map_while(Result::ok)
        .any(|l| l.trim_start().starts_with("hold"));
    assert!(held, "the ramp did not finish");
    let started = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for _ in lines {}
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "did not stop early"
    );
    assert_eq!(status.code(), Some(0));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(n(&v["established"]), 500);
    assert_eq!(n(&v["closes_and_statuses"]["close:1000"]), 500, "{v}");
}

/// A reader that went away (`holdfast-loadgen … | head -3`) ends the run quietly with status
/// 0: `println!` panicked on the broken pipe with a backtrace and status 101.
#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let (reader, writer) = std::io::pipe().unwrap();
    // The read end is gone before the loadgen writes: every write gets EPIPE.
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast-loadgen"))
        .args(["hold", "--url", &url(&server.addr), "--connections", "50"])
        .args(["--duration", "0.2", "--hard-timeout", "60"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A fan-out run's summary: nothing lost, duplicated, reordered or out of step, nor any of
/// `also`.
fn delivered_whole(v: &serde_json::Value, also: &[&str]) {
    let every = [
        "lost_in_stream",
        "lost_at_end",
        "duplicates",
        "reordered",
        "gaps",
    ];
    for k in every.iter().chain(also) {
        assert_eq!(n(&v[*k]), 0, "{k}: {v}");
    }
}

#[test]
fn fanout_through_the_admin_api_delivers_everything_once_in_order() {
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let (code, v, out) = loadgen(&[
        "fanout",
        "--url",
        &format!("ws://{}/ws", server.addr),
        "--connections",
        "1000",
        "--topics",
        "4",
        "--publish-rate",
        "100",
        "--admin",
        &server.admin,
        "--warmup",
        "0.3",
        "--duration",
        "1",
        "--server-pid",
        &server.child.id().to_string(),
    ]);
    assert_eq!(code, 0, "{out}");
    let published = n(&v["published_total"]);
    assert!(published >= 100, "{v}");
    delivered_whole(&v, &["publish_errors"]);
    // 250 subscribers per topic, topics taken in turn: every message reached 250.
    assert_eq!(n(&v["messages_received"]), published * 250, "{v}");
    assert_eq!(
        server.metric("holdfast_pubsub_deliveries_total"),
        (published * 250) as f64
    );
    assert_eq!(
        server.metric("holdfast_pubsub_published_total"),
        published as f64
    );
    let timed = n(&v["deliveries_timed"]);
    assert!(timed > 0 && timed <= n(&v["messages_received"]), "{v}");
    assert!(
        v["publish_to_delivery_us"]["p99"].as_f64() >= v["publish_to_delivery_us"]["p50"].as_f64()
    );
    assert!(
        v["deliveries_per_server_cpu_s"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    // Reads in the window: each took at least one frame (a delivery or a server ping:
    // these frames are far smaller than a read's buffer), and the ratio is theirs.
    let (reads, deliveries) = (
        n(&v["client_reads"]),
        n(&v["deliveries_during_measurement"]),
    );
    assert!(reads > 0, "{v}");
    assert!(reads <= deliveries + n(&v["pings_answered"]), "{v}");
    let per_read = v["deliveries_per_read"].as_f64().unwrap();
    assert!(
        (per_read * reads as f64 - deliveries as f64).abs() < 1.0,
        "{v}"
    );
}

/// A worker saturated by a fan-out on a CPU it shares with what reads it (its one worker and
/// the loadgen both on CPU 0) paces by spacing its subscribers' sends — the defaults'
/// `--fanout-pace-interval` — delivers everything once and in order, and sends eagerly again
/// once the publishing stops.
#[test]
fn a_worker_saturated_on_a_shared_cpu_spaces_its_sends_and_goes_eager_when_the_load_ends() {
    let server = Holdfast::start(
        "127.0.0.1:0",
        &["--workers", "1", "--max-connections", "10000"],
    );
    let pid = server.child.id().to_string();
    // 5,000 subscribers × 100/s: 500,000 deliveries a second, more than the worker sends
    // eagerly on half a CPU.
    let mut run = spawn_loadgen_on(
        Some("0"),
        &[
            "fanout",
            "--url",
            &format!("ws://{}/ws", server.addr),
            "--connections",
            "5000",
            "--publish-rate",
            "100",
            "--admin",
            &server.admin,
            "--warmup",
            "1",
            "--duration",
            "4",
            "--server-pid",
            &pid,
        ],
    );
    let gauge = "holdfast_workers_spacing";
    let interval = "holdfast_worker_spacing_interval_seconds{worker=\"0\"}";
    let mut spaced = false;
    // The run is bounded (warmup, duration, settle); so is this watch.
    for _ in 0..1200 {
        if !run.running() {
            break;
        }
        if server.metric(gauge) == 1.0 {
            spaced = true;
            // Sized to the gap between eager sends, within the defaults' 195 ms (0 when the
            // spacing ended between the two reads).
            let iv = server.metric(interval);
            assert!(iv == 0.0 || (0.02..=0.195).contains(&iv), "interval {iv}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, v, out) = finish_loadgen(run);
    assert_eq!(code, 0, "{out}");
    delivered_whole(&v, &["publish_errors"]);
    assert!(spaced, "the worker never spaced its sends: {v}");
    assert!(server.metric("holdfast_workers_pacing") <= 1.0);
    assert!(server.metric("holdfast_fanout_spaced_sends_total") > 0.0);
    assert!(server.metric("holdfast_fanout_deferred_deliveries_total") > 0.0);
    // Nothing published now: the next tick finds too few deliveries and ends the spacing.
    let eager = (0..100).any(|_| {
        let off = server.metric(gauge) == 0.0;
        if !off {
            std::thread::sleep(Duration::from_millis(50));
        }
        off
    });
    assert!(eager, "still spacing 5 s after the load ended");
    assert_eq!(server.metric(interval), 0.0, "no interval while eager");
}

#[test]
fn fanout_through_a_client_connection_and_its_refusal_when_not_allowed() {
    let server = Holdfast::start("127.0.0.1:0", &["--client-publish"]);
    let (code, v, out) = loadgen(&[
        "fanout",
        "--url",
        &format!("ws://{}/ws", server.addr),
        "--connections",
        "200",
        "--topics",
        "2",
        "--publish-rate",
        "200",
        "--publish-via",
        "ws",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["publish_via"], "ws");
    assert!(n(&v["deliveries_timed"]) > 0, "{v}");
    assert_eq!(n(&v["lost_in_stream"]) + n(&v["duplicates"]), 0, "{v}");
    // Without --client-publish the server refuses; the loadgen says so and fails.
    let strict = Holdfast::start("127.0.0.1:0", &[]);
    let (code, v, _) = loadgen(&[
        "fanout",
        "--url",
        &format!("ws://{}/ws", strict.addr),
        "--connections",
        "10",
        "--publish-rate",
        "50",
        "--publish-via",
        "ws",
        "--warmup",
        "0.1",
        "--duration",
        "0.3",
        "--settle",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(n(&v["publish_errors"]) > 0, "{v}");
    assert_eq!(n(&v["messages_received"]), 0);
}

fn tls_fixture(name: &str) -> String {
    format!(
        "{}/../tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn hold_echo_and_a_storm_over_wss_with_and_without_resumption() {
    let (cert, key) = (tls_fixture("server.pem"), tls_fixture("server.key"));
    let server = Holdfast::start("127.0.0.1:0", &["--tls-cert", &cert, "--tls-key", &key]);
    let port = server.addr.rsplit_once(':').unwrap().1.to_string();
    let wss = format!("wss://localhost:{port}/echo");
    let ca = tls_fixture("ca.pem");
    // Echo over TLS: every reply is the message sent (the stamp is checked).
    let (code, v, out) = loadgen(&[
        "echo",
        "--url",
        &wss,
        "--tls-ca",
        &ca,
        "--connections",
        "20",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(n(&v["established"]), 20, "{v}");
    assert_eq!(n(&v["tls_handshakes"]["full"]), 20, "{v}");
    assert!(n(&v["round_trips"]) > 100, "{v}");
    assert_eq!(n(&v["echo_mismatch"]), 0, "{v}");
    // A storm: 300 first connections (full handshakes), cut, and 300 reconnects that come
    // back with their tickets (resumed) — or, with resumption off, full again.
    for (resumption, want_resumed) in [("on", 300), ("off", 0)] {
        let before = server.metric("holdfast_tls_handshakes_total{kind=\"resumed\"}");
        let (code, v, out) = loadgen(&[
            "storm",
            "--url",
            &wss,
            "--tls-ca",
            &ca,
            "--tls-resumption",
            resumption,
            "--connections",
            "300",
            "--hold",
            "0.3",
            "--cause",
            "cut",
            "--base-ms",
            "200",
            "--duration",
            "30",
            "--hard-timeout",
            "90",
        ]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(n(&v["reconnected"]), 300, "{v}");
        assert_eq!(n(&v["tls_handshakes"]["resumed"]), want_resumed, "{v}");
        assert_eq!(n(&v["tls_handshakes"]["full"]), 600 - want_resumed, "{v}");
        // The server saw the same.
        let after = server.metric("holdfast_tls_handshakes_total{kind=\"resumed\"}");
        assert_eq!(after - before, want_resumed as f64);
    }
    // Fan-out over wss://: every message once, in order.
    let (code, v, out) = loadgen(&[
        "fanout",
        "--url",
        &format!("wss://localhost:{port}/ws"),
        "--tls-ca",
        &ca,
        "--connections",
        "200",
        "--topics",
        "2",
        "--publish-rate",
        "50",
        "--admin",
        &server.admin,
        "--warmup",
        "0.3",
        "--duration",
        "1",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(n(&v["published_total"]) >= 50, "{v}");
    delivered_whole(&v, &[]);
    // A client that does not trust the certificate: every attempt fails, counted as a
    // protocol failure, and the run ends.
    let other = tls_fixture("server2.pem");
    let (code, v, _) = loadgen(&[
        "hold",
        "--url",
        &wss,
        "--tls-ca",
        &other,
        "--connections",
        "5",
        "--duration",
        "0.5",
        "--hard-timeout",
        "30",
    ]);
    assert_ne!(code, 0);
    assert_eq!(n(&v["established"]), 0, "{v}");
    assert_eq!(
        n(&v["closes_and_statuses"]["close:tls_handshake_failed"]),
        5,
        "{v}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.metric("holdfast_tls_failures_total{reason=\"peer_alert\"}") < 5.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not see 5 alerts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_lone_tls_opening_is_read_within_the_task_work_check() {
    // One opening in flight at a time over wss://: each waits for the two ends' work (a TLS
    // handshake and an upgrade, under a millisecond of CPU each here) and for the loadgen to
    // see the server's two answers: the eventfd's signal for them comes through an RCU
    // callback 5–20 ms late, so the loadgen reads its rings' task-work flag every 2 ms.
    // Without that check: 28 ms per opening at the median.
    let (cert, key) = (tls_fixture("server.pem"), tls_fixture("server.key"));
    let server = Holdfast::start("127.0.0.1:0", &["--tls-cert", &cert, "--tls-key", &key]);
    let port = server.addr.rsplit_once(':').unwrap().1.to_string();
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &format!("wss://localhost:{port}/echo"),
        "--tls-ca",
        &tls_fixture("ca.pem"),
        "--connections",
        "40",
        "--concurrency",
        "1",
        "--workers",
        "1",
        "--duration",
        "0.2",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(n(&v["established"]), 40, "{v}");
    let p50 = v["connect_upgrade_latency_us"]["p50"].as_f64().unwrap();
    assert!(p50 < 15_000.0, "connect+upgrade p50 {p50} µs: {v}");
}

/// An open-loop echo against a fresh holdfast on one loadgen thread, run by `wrapper`: its
/// report.
fn open_loop_echo(
    wrapper: &[&str],
    connections: usize,
    rate: usize,
    seconds: f64,
) -> serde_json::Value {
    let server = Holdfast::start("127.0.0.1:0", &[]);
    let (connections, rate, seconds) = (
        connections.to_string(),
        rate.to_string(),
        seconds.to_string(),
    );
    let args = [
        "echo",
        "--url",
        &url(&server.addr),
        "--connections",
        &connections,
        "--workers",
        "1",
        "--message-rate",
        &rate,
        "--warmup",
        "0.3",
        "--duration",
        &seconds,
        "--hard-timeout",
        "60",
    ];
    let (code, v, out) = loadgen_under(wrapper, &args);
    assert_eq!(code, 0, "{out}");
    v
}

#[test]
fn open_loop_round_trips_are_timed_from_when_each_message_was_due() {
    // 20 messages a second: one every 50 ms. A message sent an interval after its time (as
    // the schedule did) carried that interval into its round trip.
    let v = open_loop_echo(&[], 5, 20, 1.5);
    assert!(n(&v["round_trips"]) >= 20, "{v}");
    let p50 = v["rtt_us"]["p50"].as_f64().unwrap();
    assert!(
        p50 < 25_000.0,
        "round trip p50 {p50} µs, the interval is 50 ms: {v}"
    );
}

#[test]
fn a_thread_with_several_rings_reads_each_one_when_its_input_arrives() {
    // A 1,000-descriptor soft limit: 1,500 connections on one thread take two rings. The
    // second ring's input is read within the task-work check (2 ms), not at the 50 ms sweep
    // or its own next send (it was 15–20 ms at 100 messages a second).
    let v = open_loop_echo(&["prlimit", "--nofile=1000:"], 1500, 100, 2.0);
    assert_eq!(n(&v["engines"]), 2, "{v}");
    assert!(n(&v["round_trips"]) >= 150, "{v}");
    let p90 = v["rtt_us"]["p90"].as_f64().unwrap();
    assert!(p90 < 10_000.0, "round trip p90 {p90} µs: {v}");
}

#[test]
fn long_poll_hold_and_fanout_agree_with_the_server() {
    let server = Holdfast::start("127.0.0.1:0", &["--poll-hold", "1"]);
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &format!("http://{}/poll?topics=quiet", server.addr),
        "--connections",
        "500",
        "--rate",
        "20000",
        "--duration",
        "2.5",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(n(&v["established"]), 500, "{v}");
    assert_eq!(n(&v["held_at_end"]), 500, "{v}");
    // Each client: the first answer at once (where to poll from), then one per hold.
    let polls = n(&v["long_polls_answered"]);
    assert!(polls >= 1000, "{v}");
    let answered = server.metric("holdfast_long_polls_answered_total");
    assert!(
        answered >= polls as f64,
        "server {answered} < loadgen {polls}"
    );
    assert_eq!(n(&v["failed_total"]), 0, "{v}");

    let (code, v, out) = loadgen(&[
        "fanout",
        "--url",
        &format!("http://{}/poll", server.addr),
        "--connections",
        "400",
        "--topics",
        "2",
        "--publish-rate",
        "50",
        "--admin",
        &server.admin,
        "--warmup",
        "0.3",
        "--duration",
        "1.5",
        "--server-pid",
        &server.child.id().to_string(),
    ]);
    assert_eq!(code, 0, "{out}");
    let published = n(&v["published_total"]);
    assert!(published >= 50, "{v}");
    delivered_whole(&v, &["misnumbered"]);
    assert_eq!(n(&v["messages_received"]), published * 200, "{v}");
    assert!(
        server.metric("holdfast_pubsub_deliveries_total") >= (published * 200) as f64,
        "{v}"
    );
}

#[test]
fn a_fast_long_poll_ramp_through_small_file_tables_loses_no_connection() {
    // 512-slot tables (move on at 320 live): 4,000 long polls at 40,000/s need 8 or
    // more rings, and every client connects twice (the first answer is at once). Accepts that
    // completed while a batch of them was still being handled used to push the accepting
    // ring's table past its headroom: ENFILE, and the kernel reset those connections.
    let server = Holdfast::start(
        "127.0.0.1:0",
        &["--workers", "1", "--ring-files", "512", "--poll-hold", "30"],
    );
    let (code, v, out) = loadgen(&[
        "hold",
        "--url",
        &format!("http://{}/poll?topics=quiet", server.addr),
        "--connections",
        "4000",
        "--rate",
        "40000",
        "--duration",
        "1",
        "--hard-timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}");
    let refused = server.metric("holdfast_rejected_total{limit=\"accept_resources\"}");
    assert_eq!(refused, 0.0, "accepts into a full file table: {v}");
    assert_eq!(n(&v["established"]), 4000, "{v}");
    assert_eq!(n(&v["held_at_end"]), 4000, "{v}");
    // 4,000 held in 512-slot tables need at least 8 rings.
    let rings = server.metric("holdfast_rings");
    assert!(rings >= 8.0, "{rings} rings");
}
