//! The independent fan-out client against a real holdfast (and the uWebSockets peer where
//! its source is here): every message published in the window reaches every subscriber,
//! numbered in order, timed, with both publishers.

use std::process::Command;

use holdfast_bench::report::procs::{Kind, Server};
use serde_json::Value;

const SUBSCRIBERS: u64 = 40;

/// Run the client against `server` publishing via `via`; its JSON summary.
fn client(server: &Server, via: &str) -> Value {
    let out = run_client(server, via, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON summary")
}

/// Run the client against `server` publishing via `via` at 50/s, with `extra` arguments.
fn run_client(server: &Server, via: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
        .args([
            "fanout-client",
            "--url",
            &format!("ws://{}/ws", server.addr),
        ])
        .args(["--admin", server.admin.as_deref().expect("admin address")])
        .args(["--subscribers", &SUBSCRIBERS.to_string(), "--sources", "4"])
        .args(["--publish-rate", "50", "--publish-via", via])
        .args(["--warmup", "0.5", "--duration", "2", "--settle", "1"])
        .args(["--server-pid", &server.pid().to_string()])
        .args(extra)
        .output()
        .expect("the client runs")
}

fn check(v: &Value, what: &str) {
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{what}: {k} in {v}"))
    };
    assert_eq!(n("subscribed"), SUBSCRIBERS, "{what}: {v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{what}: {v}");
    assert_eq!(n("unfinished_subscribers"), 0, "{what}: {v}");
    assert_eq!((n("lost"), n("repeated")), (0, 0), "{what}: {v}");
    assert_eq!(n("behind_at_end"), 0, "{what}: {v}");
    // 50/s for 2 s: about 100 in the window, each to every subscriber, each timed.
    let window = v["deliveries"].as_u64().unwrap() / SUBSCRIBERS;
    assert!(
        (80..=120).contains(&window),
        "{what}: {window} per subscriber: {v}"
    );
    assert_eq!(
        v["deliveries"].as_u64().unwrap() % SUBSCRIBERS,
        0,
        "{what}: every window message to every subscriber: {v}"
    );
    assert_eq!(v["latency_ms"]["count"], v["deliveries"], "{what}: {v}");
    let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 1_000.0, "{what}: p50 {p50} ms: {v}");
    assert!(
        v["server_cpu_seconds"].as_f64().unwrap() > 0.0,
        "{what}: {v}"
    );
}

#[test]
fn every_window_message_reaches_every_subscriber_with_either_publisher() {
    let server =
        Server::start(Kind::Holdfast, None, None, &["--client-publish"]).expect("holdfast starts");
    for via in ["admin", "ws"] {
        check(&client(&server, via), &format!("holdfast via {via}"));
    }
}

#[test]
fn the_uwebsockets_peer_is_measured_alike() {
    let Some(server) = Server::start_test_uws(env!("CARGO_MANIFEST_DIR").as_ref()) else {
        return;
    };
    for via in ["admin", "ws"] {
        check(&client(&server, via), &format!("uwebsockets via {via}"));
    }
}

#[test]
fn a_server_that_refuses_is_named() {
    // Nothing listens on port 1: every subscriber fails, and the client says why.
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
        .args([
            "fanout-client",
            "--url",
            "ws://127.0.0.1:1/ws",
            "--admin",
            "127.0.0.1:1",
        ])
        .args([
            "--subscribers",
            "3",
            "--warmup",
            "0",
            "--duration",
            "0.2",
            "--settle",
            "0",
        ])
        .output()
        .expect("the client runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no subscriber subscribed") && err.contains("refused"),
        "{err}"
    );
}

#[test]
fn back_pressure_refusals_are_counted_and_publishing_goes_on() {
    // One worker whose delivery queue holds one message: of five publishes read together,
    // the first is queued and the other four are refused (`overloaded`) before the worker
    // takes it. The client counts them, publishes on, and what was numbered reaches every
    // subscriber whole.
    let server = Server::start(
        Kind::Holdfast,
        None,
        None,
        &["--client-publish", "--workers", "1", "--publish-queue", "1"],
    )
    .expect("holdfast starts");
    let out = run_client(&server, "ws", &["--publish-burst", "5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    let (published, refused) = (n("published"), n("publishes_refused"));
    assert_eq!(n("publish_burst"), 5, "{v}");
    assert_eq!(published % 5, 0, "whole bursts: {v}");
    assert!(refused > 0, "none refused: {v}");
    // Some were taken: the first of a burst finds the queue empty unless the worker has
    // not yet taken the last burst's first (a loaded machine), so not always exactly 4 of 5.
    assert!(refused < published, "{v}");
    assert_eq!(n("publishes_unanswered"), 0, "{v}");
    let why = v["refusal"].as_str().unwrap_or_default();
    assert!(why.starts_with("overloaded"), "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert_eq!(n("unfinished_subscribers"), 0, "{v}");
    assert_eq!((n("lost"), n("repeated")), (0, 0), "{v}");
    assert_eq!(n("behind_at_end"), 0, "{v}");
    assert_eq!(n("deliveries") % SUBSCRIBERS, 0, "{v}");
    assert!(n("deliveries") > 0, "{v}");
    assert!(
        n("deliveries") / SUBSCRIBERS <= published - refused,
        "only numbered publishes are delivered: {v}"
    );
}

#[test]
fn a_refusal_that_is_not_back_pressure_ends_the_run() {
    // Client publishing off: `publish_disabled` is the setup's fault, not the server's load.
    let server = Server::start(Kind::Holdfast, None, None, &[]).expect("holdfast starts");
    let out = run_client(&server, "ws", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("publish refused") && err.contains("publish_disabled"),
        "{err}"
    );
}
