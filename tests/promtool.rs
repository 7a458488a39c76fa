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
