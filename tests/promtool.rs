//! The exposition passes `promtool check metrics` (Prometheus' own linter: names, types,
//! HELP, units and `_total` only on counters), with every family present: the server is
//! started with pub/sub and echo traffic first so labelled series exist.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use holdfast::ws::OpCode;
use support::{publish, Raw, Server};

#[test]
fn the_metrics_pass_promtool_check_metrics() {
    let srv = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let mut echo = Raw::connect(srv.addr);
    echo.send_frame(true, OpCode::Text, b"hi");
    assert_eq!(echo.recv_non_ping(), support::Got::Text("hi".into()));
    let _sub = Raw::connect_to(srv.addr, "/ws?topics=promtool");
    let (status, _) = publish(srv.admin, "promtool", b"x", false);
    assert_eq!(status, 200);
    // The histograms show what happened (published by the workers once a tick).
    srv.wait_metric("holdfast_publish_delivery_seconds_count", |v| v >= 1.0);
    srv.wait_metric("holdfast_handshake_seconds_count", |v| v >= 2.0);
    srv.wait_metric("holdfast_send_queue_bytes_count", |v| v >= 2.0);
    let inf = srv.metric("holdfast_handshake_seconds_bucket{le=\"+Inf\"}");
    assert_eq!(inf, srv.metric("holdfast_handshake_seconds_count"));
    for addr in [srv.admin, srv.metrics.expect("observe listener")] {
        let (code, body) = support::http(addr, "GET", "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("holdfast_connections_open "), "renamed gauge");
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian: prometheus) is installed by the test command");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "promtool:\n{text}"
        );
    }
}

/// Every `holdfast_…` name the shipped alert rules and dashboard use.
fn names_used(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("holdfast_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        // A family's histogram series are named after it.
        let family = name.trim_end_matches("_bucket");
        if !out.iter().any(|n| n == family) {
            out.push(family.to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_shipped_rules_pass_promtool_and_name_only_metrics_the_server_exports() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/prometheus");
    for args in [
        &["check", "rules", "holdfast.rules.yml"][..],
        &["test", "rules", "holdfast.rules.test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let srv = Server::start(&[]);
    let (_, body) = support::http(srv.admin, "GET", "/metrics");
    let exported: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let rules = std::fs::read_to_string(format!("{dir}/holdfast.rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tuning/grafana/holdfast.json"
    ))
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    assert!(parsed["panels"].as_array().unwrap().len() >= 8);
    for name in names_used(&rules).into_iter().chain(names_used(&dashboard)) {
        assert!(
            exported.contains(&name.as_str()),
            "{name} is used by the rules or the dashboard but not exported"
        );
    }
}
