//! The independent upgrade and close client against a real holdfast (and the uWebSockets
//! peer where its source is here): every connection upgrades, then closes with the whole
//! closing handshake, as the server counts it.

use std::io::{Read, Write};
use std::process::Command;

use holdfast_bench::report::procs::{tls_fixture, Kind, Server};
use serde_json::Value;

const CONNECTIONS: u64 = 400;

fn run_client(url: &str, pid: u32, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
        .args(["upgrade-client", "--url", url])
        .args(["--connections", &CONNECTIONS.to_string(), "--rate", "4000"])
        .args(["--hold", "0.2", "--server-pid", &pid.to_string()])
        .args(extra)
        .output()
        .expect("the client runs")
}

/// The client's JSON summary for a run against `server`'s /echo, checked whole.
fn measured(server: &Server, what: &str) -> Value {
    measured_at(server, &format!("ws://{}/echo", server.addr), &[], what)
}

/// [`measured`] at `url` with more client arguments.
fn measured_at(server: &Server, url: &str, extra: &[&str], what: &str) -> Value {
    let out = run_client(url, server.pid(), extra);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{what}: {k} in {v}"))
    };
    assert_eq!(n("established"), CONNECTIONS, "{what}: {v}");
    assert_eq!(n("closed_cleanly"), CONNECTIONS, "{what}: {v}");
    let failures = n("failed_to_open") + n("failed_to_close") + n("closed_without_close_frame");
    assert_eq!(failures, 0, "{what}: {v}");
    for k in ["server_cpu_us_per_upgrade", "server_cpu_us_per_close"] {
        let us = v[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: {k} in {v}"));
        assert!(us > 0.0 && us < 10_000.0, "{what}: {k} {us}: {v}");
    }
    v
}

/// The client Closes with 1000 holdfast counted (`holdfast_closes_total`, admin port).
fn client_closes(server: &Server) -> Option<u64> {
    let text = metrics(server.admin.as_deref().expect("admin address"));
    text.lines()
        .find_map(|l| l.strip_prefix("holdfast_closes_total{code=\"1000\",side=\"client\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// holdfast's Prometheus text from its admin port.
fn metrics(admin: &str) -> String {
    let mut s = std::net::TcpStream::connect(admin).expect("the admin port");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("the metrics");
    out
}

#[test]
fn every_connection_upgrades_and_closes_with_the_closing_handshake() {
    let server = Server::start(Kind::Holdfast, None, Some(1), &[]).expect("holdfast starts");
    measured(&server, "holdfast");
    // The server saw each Close come from the client with 1000, and echoed it.
    assert_eq!(client_closes(&server), Some(CONNECTIONS));
}

/// The client over wss://: its own rustls client, trusting the test CA, against holdfast's
/// TLS listener; full handshakes when resumption is off, resumed ones when asked.
fn over_tls(server: &Server, resumption: &str) -> Value {
    let ca = tls_fixture("ca.pem");
    measured_at(
        server,
        &format!("{}/echo", server.url_base()),
        &[
            "--concurrency",
            "8",
            "--tls-ca",
            &ca,
            "--tls-resumption",
            resumption,
        ],
        resumption,
    )
}

#[test]
fn over_tls_handshakes_are_full_or_resumed_as_asked() {
    let server = Server::start(Kind::HoldfastTls, None, Some(1), &[]).expect("holdfast starts");
    let off = over_tls(&server, "off");
    assert_eq!(off["tls_handshakes"]["full"], CONNECTIONS, "{off}");
    assert_eq!(off["tls_handshakes"]["resumed"], 0, "{off}");
    // Every close of holdfast's came with close_notify before its FIN (RFC 8446 6.1).
    assert_eq!(off["closes_without_close_notify"], 0, "{off}");
    let always = over_tls(&server, "always");
    let resumed = always["tls_handshakes"]["resumed"].as_u64().unwrap();
    // Most resume: an opening finds no ticket only when the client's cache (a few tickets
    // per server, one more from each handshake) was emptied by the openings in flight.
    assert!(resumed >= CONNECTIONS * 3 / 4, "{always}");
    assert_eq!(always["closes_without_close_notify"], 0, "{always}");
    // The server's CPU was measured both ways.
    let us = |v: &Value| v["server_cpu_us_per_upgrade"].as_f64().unwrap();
    assert!(us(&off) > 0.0 && us(&always) > 0.0, "{off} {always}");
    // The server counted every client Close.
    assert_eq!(client_closes(&server), Some(2 * CONNECTIONS));
}

#[test]
fn wss_without_a_ca_is_refused_before_connecting() {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
        .args(["upgrade-client", "--url", "wss://localhost:9/echo"])
        .output()
        .expect("the client runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wss:// needs --tls-ca"), "{err}");
}

#[test]
fn a_refused_upgrade_is_named() {
    let server = Server::start(Kind::Holdfast, None, Some(1), &[]).expect("holdfast starts");
    let out = run_client(
        &format!("ws://{}/no-such-path", server.addr),
        server.pid(),
        &[],
    );
    assert!(!out.status.success(), "nothing upgraded: a failed run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no connection upgraded: upgrade refused: HTTP/1.1 404"),
        "{err}"
    );
}

#[test]
fn the_uwebsockets_peer_is_measured_alike() {
    let Some(server) = Server::start_test_uws(env!("CARGO_MANIFEST_DIR").as_ref()) else {
        return;
    };
    measured(&server, "uwebsockets");
}

/// uWebSockets built with OpenSSL serves the same certificate: the same client opens and
/// closes every connection over wss://, full handshakes when resumption is off and resumed
/// ones (OpenSSL's session tickets) when asked — what the TLS section measures beside
/// holdfast-tls.
#[test]
fn the_uwebsockets_tls_peer_handshakes_full_or_resumed_as_asked() {
    let Some(src) = holdfast_bench::report::uws::test_source(env!("CARGO_MANIFEST_DIR").as_ref())
    else {
        return;
    };
    holdfast_bench::report::uws::prepare_tls(&src, None).expect("the TLS peer builds");
    let server = Server::start(Kind::UwsTls, None, None, &[]).expect("the TLS peer starts");
    assert!(server.url_base().starts_with("wss://localhost:"));
    let off = over_tls(&server, "off");
    assert_eq!(off["tls_handshakes"]["full"], CONNECTIONS, "{off}");
    assert_eq!(off["tls_handshakes"]["resumed"], 0, "{off}");
    let always = over_tls(&server, "always");
    let resumed = always["tls_handshakes"]["resumed"].as_u64().unwrap();
    assert!(resumed >= CONNECTIONS * 3 / 4, "{always}");
}
