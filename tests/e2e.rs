//! End-to-end tests: the release binary on ephemeral ports, driven by tokio-tungstenite (a
//! real client library) and, for input no library would send, raw sockets.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use holdfast::ws::OpCode;
use support::{raw_request, upgrade_request, Got, Raw, Server};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const T: Duration = Duration::from_secs(10);

/// The next message from a tungstenite client, within `T`.
async fn next_msg<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[test]
fn echo_text_binary_fragmented_and_ping() {
    let srv = Server::start(&[]);
    rt().block_on(async {
        let (mut ws, resp) = tokio_tungstenite::connect_async(srv.url("/echo"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
        for msg in [
            Message::text("héllo wörld"),
            Message::binary(vec![0u8, 1, 2, 255]),
            Message::text("x".repeat(70_000)),
            Message::binary(vec![7u8; 300_000]),
        ] {
            ws.send(msg.clone()).await.unwrap();
            let got = tokio::time::timeout(T, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(got, msg);
        }
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        let got = next_msg(&mut ws).await;
        assert_eq!(got, Message::Pong(b"are you there".to_vec().into()));
        ws.close(Some(CloseFrame {
            code: TCode::Library(4000),
            reason: "done".into(),
        }))
        .await
        .unwrap();
        // The server echoes the code and closes.
        let got = next_msg(&mut ws).await;
        match got {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4000),
            other => panic!("{other:?}"),
        }
    });
    srv.wait_metric(
        "holdfast_closes_total{code=\"other\",side=\"client\"}",
        |v| v == 1.0,
    );
    assert_eq!(srv.metric("holdfast_messages_received_total"), 4.0);
    assert_eq!(srv.metric("holdfast_upgrades_total"), 1.0);
    srv.wait_metric("holdfast_connections_open", |v| v == 0.0);
}

#[test]
fn fragmented_messages_with_interleaved_control_frames() {
    let srv = Server::start(&[]);
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    c.send_frame(false, OpCode::Text, "frag".as_bytes());
    c.send_frame(true, OpCode::Ping, b"mid");
    c.send_frame(false, OpCode::Continuation, "men".as_bytes());
    c.send_frame(true, OpCode::Continuation, "ted ✓".as_bytes());
    assert_eq!(c.recv(), Got::Pong(b"mid".to_vec()));
    assert_eq!(c.recv(), Got::Text("fragmented ✓".into()));
    // A message split mid-header across two TCP writes.
    let mut v = Vec::new();
    holdfast::ws::frame::encode_frame(
        &mut v,
        true,
        OpCode::Binary,
        Some([9, 9, 9, 9]),
        &[5u8; 1000],
    );
    c.stream.set_nodelay(true).unwrap(); // two writes, two segments
    c.send_raw(&v[..3]);
    c.send_raw(&v[3..]);
    assert_eq!(c.recv(), Got::Binary(vec![5u8; 1000]));
}

#[test]
fn oversize_message_closes_with_1009() {
    let srv = Server::start(&["--max-message", "1024"]);
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    c.send_frame(true, OpCode::Binary, &[0u8; 1024]);
    assert_eq!(c.recv(), Got::Binary(vec![0u8; 1024]));
    // Only the header of an oversize frame is needed for the verdict.
    let mut v = Vec::new();
    holdfast::ws::frame::encode_frame(
        &mut v,
        true,
        OpCode::Binary,
        Some([1, 1, 1, 1]),
        &[0u8; 1025],
    );
    c.send_raw(&v[..8]);
    assert_eq!(c.recv(), Got::Close(Some(1009), "message_too_big".into()));
    assert_eq!(c.recv(), Got::Eof);
    srv.wait_metric(
        "holdfast_protocol_errors_total{reason=\"message_too_big\"}",
        |v| v == 1.0,
    );
}

#[test]
fn invalid_utf8_closes_with_1007_and_others_keep_flowing() {
    let srv = Server::start(&[]);
    let mut good = Raw::connect(srv.addr);
    good.stream.set_read_timeout(Some(T)).unwrap();
    let mut bad = Raw::connect(srv.addr);
    bad.stream.set_read_timeout(Some(T)).unwrap();
    bad.send_frame(false, OpCode::Text, &[b'o', b'k', 0xE2, 0x82]);
    bad.send_frame(true, OpCode::Continuation, b"!"); // breaks the code point
    assert_eq!(bad.recv(), Got::Close(Some(1007), "invalid_utf8".into()));
    assert_eq!(bad.recv(), Got::Eof);
    good.send_frame(true, OpCode::Text, b"still here");
    assert_eq!(good.recv(), Got::Text("still here".into()));
}

#[test]
fn after_both_closes_the_server_closes_at_once_without_waiting_for_the_clients_fin() {
    // RFC 6455 §5.5.1: after sending and receiving a Close the endpoint MUST close the TCP
    // connection. The server does so as soon as its echo is out: the connection is gone
    // while this client still holds its socket open (lingering for the client's FIN would
    // keep it until the close deadline, 5 s here).
    let srv = Server::start(&["--drain-grace", "30"]);
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    let mut close = Vec::new();
    holdfast::ws::frame::encode_close(
        &mut close,
        Some(holdfast::ws::CloseCode(1000)),
        "bye",
        Some([9, 8, 7, 6]),
    );
    let asked = Instant::now();
    c.send_raw(&close);
    assert_eq!(c.recv(), Got::Close(Some(1000), String::new()));
    assert_eq!(c.recv(), Got::Eof, "the server's FIN follows its echo");
    loop {
        if srv.metric("holdfast_connections_open") == 0.0 {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "the connection outlived the close handshake: it waits for the client's FIN"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(srv.metric("holdfast_aborted_total"), 0.0);
    drop(c);
}

#[test]
fn a_message_followed_at_once_by_fin_is_echoed_and_the_eof_noticed() {
    // Data and the peer's FIN often arrive in one wake-up; the server must still see the EOF
    // (and free the connection) without waiting for its idle timeout (here 60 s).
    let srv = Server::start(&["--ping-interval", "30", "--idle-timeout", "60"]);
    for i in 0..20 {
        let mut c = Raw::connect(srv.addr);
        c.stream.set_read_timeout(Some(T)).unwrap();
        let words = format!("last words {i}");
        c.send_frame(true, OpCode::Text, words.as_bytes());
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.recv(), Got::Text(words));
        assert_eq!(
            c.recv(),
            Got::Eof,
            "connection {i} not closed after the client's FIN"
        );
    }
    srv.wait_metric("holdfast_connections_open", |v| v == 0.0);
}

#[test]
fn protocol_errors_close_with_1002() {
    let srv = Server::start(&[]);
    // Unmasked client frame.
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    c.send_raw(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(
        c.recv(),
        Got::Close(Some(1002), "unmasked_client_frame".into())
    );
    // Reserved opcode.
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    c.send_raw(&[0x83, 0x80, 0, 0, 0, 0]);
    assert_eq!(c.recv(), Got::Close(Some(1002), "reserved_opcode".into()));
    // Close code that may not be sent.
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    c.send_frame(true, OpCode::Close, &1005u16.to_be_bytes());
    assert_eq!(
        c.recv(),
        Got::Close(Some(1002), "invalid_close_code".into())
    );
}

#[test]
fn handshake_refusals_carry_their_status() {
    let srv = Server::start(&[]);
    let (_, head) = raw_request(srv.addr, &upgrade_request("/echo", "8"));
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13"));
    let (_, head) = raw_request(srv.addr, &upgrade_request("/nowhere", "13"));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let req = upgrade_request("/echo", "13").replace(support::KEY, "short==");
    let (_, head) = raw_request(srv.addr, &req);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (_, head) = raw_request(srv.addr, "POST /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    let huge = format!("GET /echo HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    let (_, head) = raw_request(srv.addr, &huge);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    srv.wait_metric(
        "holdfast_handshake_failures_total{reason=\"invalid_key\"}",
        |v| v == 1.0,
    );
    assert_eq!(
        srv.metric("holdfast_handshake_failures_total{reason=\"unsupported_websocket_version\"}"),
        1.0
    );
    assert_eq!(
        srv.metric("holdfast_rejected_total{limit=\"not_found\"}"),
        1.0
    );
}

#[test]
fn slowloris_is_closed_at_the_handshake_timeout() {
    let srv = Server::start(&["--handshake-timeout", "0.5"]);
    let (mut s, head) = raw_request(srv.addr, "GET /echo HTTP/1.1\r\nHost: slow\r\n");
    assert_eq!(head, "", "no answer to a partial head");
    let started = Instant::now();
    let mut b = [0u8; 16];
    use std::io::Read;
    s.set_read_timeout(Some(T)).unwrap();
    let n = s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    assert!(started.elapsed() < Duration::from_secs(5));
    srv.wait_metric("holdfast_handshake_timeouts_total", |v| v == 1.0);
}

#[test]
fn a_connection_is_taken_with_its_request_and_a_silent_one_when_the_deferral_ends() {
    // The kernel holds a connection until its client speaks (the default is 1 s; 3 s here
    // leaves the echo below seconds of room on a loaded machine).
    let srv = Server::start(&["--defer-accept", "3"]);
    let silent = std::net::TcpStream::connect(srv.addr).unwrap();
    let mut c = Raw::connect(srv.addr);
    c.send_frame(true, OpCode::Text, b"hi");
    assert_eq!(c.recv(), Got::Text("hi".into()));
    // The upgraded one is the only one taken: the silent one waits in the kernel, not in a
    // worker's slot (it would have been taken before the other's upgrade otherwise).
    assert_eq!(srv.metric("holdfast_accepted_total"), 1.0);
    // Taken when the period ends (the kernel's second SYN-ACK timeout, 3 s); then the
    // handshake timeout runs as for any connection.
    srv.wait_metric("holdfast_accepted_total", |v| v == 2.0);
    drop(silent);

    // --defer-accept 0: taken at the TCP handshake.
    let srv = Server::start(&["--defer-accept", "0"]);
    let _silent = std::net::TcpStream::connect(srv.addr).unwrap();
    srv.wait_metric("holdfast_accepted_total", |v| v == 1.0);
}

#[test]
fn silent_client_is_pinged_then_closed_for_idleness() {
    let srv = Server::start(&["--ping-interval", "0.3", "--idle-timeout", "0.8"]);
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    // A client that never answers: first pings, then the idle close.
    assert_eq!(c.recv(), Got::Ping(vec![]));
    let got = c.recv_non_ping();
    assert_eq!(got, Got::Close(Some(1001), "idle timeout".into()));
    srv.wait_metric("holdfast_idle_timeouts_total", |v| v == 1.0);
    assert!(srv.metric("holdfast_pings_sent_total") >= 1.0);
}

#[test]
fn responsive_client_survives_past_the_idle_timeout() {
    let srv = Server::start(&["--ping-interval", "0.2", "--idle-timeout", "0.5"]);
    rt().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(srv.url("/echo"))
            .await
            .unwrap();
        // tungstenite answers pings while we read; read for 3x the idle timeout.
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        let mut pings = 0;
        while let Ok(m) = tokio::time::timeout_at(until, ws.next()).await {
            match m.unwrap().unwrap() {
                Message::Ping(_) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings >= 2, "{pings} pings");
        ws.send(Message::text("alive")).await.unwrap();
        let got = loop {
            match tokio::time::timeout(T, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                Message::Ping(_) => continue,
                m => break m,
            }
        };
        assert_eq!(got, Message::text("alive"));
    });
    assert_eq!(srv.metric("holdfast_idle_timeouts_total"), 0.0);
}

#[test]
fn slow_consumer_is_closed_with_1008_and_memory_stays_bounded() {
    let srv = Server::start(&[
        "--max-outbound",
        "262144",
        "--max-message",
        "131072",
        "--sndbuf",
        "65536",
    ]);
    let rss_before = srv.rss();
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    c.stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Send 64 MiB of echo requests without reading the answers.
    let mut frame = Vec::new();
    holdfast::ws::frame::encode_frame(
        &mut frame,
        true,
        OpCode::Binary,
        Some([3, 3, 3, 3]),
        &[0u8; 65536],
    );
    let mut sent = 0;
    use std::io::Write;
    for _ in 0..1024 {
        if c.stream.write_all(&frame).is_err() {
            break; // the server closed on us
        }
        sent += 1;
    }
    srv.wait_metric("holdfast_slow_consumer_closes_total", |v| v == 1.0);
    let growth = srv.rss().saturating_sub(rss_before);
    assert!(
        growth < 32 << 20,
        "RSS grew {growth} bytes after {sent} frames"
    );
    // Reading now drains what was sent before the cap, then the 1008.
    let deadline = Instant::now() + T;
    loop {
        match c.recv() {
            Got::Binary(_) | Got::Ping(_) => assert!(Instant::now() < deadline),
            Got::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (Some(1008), "slow consumer"));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn drain_sends_1012_with_a_hint_to_everyone_and_exits_zero() {
    let mut srv = Server::start(&["--drain-window", "1", "--drain-grace", "2"]);
    let n = 40;
    let closes = rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..n {
            let (ws, _) = tokio_tungstenite::connect_async(srv.url("/echo"))
                .await
                .unwrap();
            clients.push(ws);
        }
        let (status, _) = srv.admin("GET", "/readyz");
        assert_eq!(status, 200);
        srv.signal("-TERM");
        let mut tasks = Vec::new();
        for mut ws in clients {
            tasks.push(tokio::spawn(async move {
                loop {
                    match tokio::time::timeout(T, ws.next()).await {
                        Ok(Some(Ok(Message::Close(f)))) => {
                            return f.map(|f| (u16::from(f.code), f.reason.to_string()))
                        }
                        Ok(Some(Ok(_))) => continue,
                        other => panic!("closed without a close frame: {other:?}"),
                    }
                }
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert_eq!(closes.len(), n);
    for c in &closes {
        let (code, reason) = c.as_ref().expect("a close frame with a code");
        assert_eq!(*code, 1012);
        assert!(
            reason.starts_with("{\"reason\":\"draining\",\"reconnect_after_ms\":"),
            "{reason}"
        );
    }
    assert_eq!(srv.wait_exit(T), 0);
}

#[test]
fn admin_endpoints_and_drain_via_api() {
    let mut srv = Server::start(&["--drain-window", "0.5", "--drain-grace", "0.5"]);
    assert_eq!(srv.admin("GET", "/healthz").0, 200);
    assert_eq!(srv.admin("GET", "/readyz").0, 200);
    assert_eq!(srv.admin("GET", "/nope").0, 404);
    let (_, metrics) = srv.admin("GET", "/metrics");
    for family in [
        "holdfast_connections{worker=\"0\"}",
        "holdfast_accepted_total",
        "holdfast_userspace_bytes_per_connection",
        "holdfast_outbound_queue_bytes",
        "holdfast_rejected_total{limit=\"max_connections\"}",
    ] {
        assert!(metrics.contains(family), "{family} missing");
    }
    // Hold one connection so the drain has something to wait for.
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    assert_eq!(srv.admin("GET", "/readyz").0, 503);
    match c.recv_non_ping() {
        Got::Close(Some(1012), _) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(srv.wait_exit(T), 0);
}

#[test]
fn connection_limit_answers_503() {
    let srv = Server::start(&["--max-connections", "2", "--workers", "1"]);
    let _a = Raw::connect(srv.addr);
    let _b = Raw::connect(srv.addr);
    let (_, head) = raw_request(srv.addr, &upgrade_request("/echo", "13"));
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("Retry-After:"));
    srv.wait_metric("holdfast_rejected_total{limit=\"max_connections\"}", |v| {
        v == 1.0
    });
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--ping-interval", "30", "--idle-timeout", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--idle-timeout"), "{err}");
}

#[test]
fn per_ip_cap_answers_429_and_other_addresses_still_connect() {
    let srv = Server::start(&["--max-per-ip", "2"]);
    let _a = Raw::connect(srv.addr);
    let _b = Raw::connect(srv.addr);
    let (_, head) = raw_request(srv.addr, &upgrade_request("/echo", "13"));
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(head.contains("Retry-After:"));
    // Another source address in 127.0.0.0/8 has its own allowance.
    rt().block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let stream = sock.connect(srv.addr).await.unwrap();
        let (_ws, resp) = tokio_tungstenite::client_async(srv.url("/echo"), stream)
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
    });
    srv.wait_metric("holdfast_rejected_total{limit=\"per_ip\"}", |v| v == 1.0);
    // Closing one frees a place for that address.
    drop(_a);
    let deadline = Instant::now() + T;
    loop {
        let (_, head) = raw_request(srv.addr, &upgrade_request("/echo", "13"));
        if head.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
    }
}

#[test]
fn accept_rate_limit_answers_503_with_retry_after() {
    let srv = Server::start(&["--accept-rate", "5", "--workers", "1"]);
    let mut statuses = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..8 {
        let (s, head) = raw_request(srv.addr, &upgrade_request("/echo", "13"));
        statuses.push(head[9..12].to_string());
        if head.starts_with("HTTP/1.1 503") {
            assert!(head.contains("Retry-After: 1"), "{head}");
        }
        keep.push(s);
    }
    // A burst of one second's worth passes, the rest is refused.
    assert_eq!(
        statuses.iter().filter(|s| *s == "101").count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "503").count(),
        3,
        "{statuses:?}"
    );
    srv.wait_metric("holdfast_rejected_total{limit=\"accept_rate\"}", |v| {
        v == 3.0
    });
}

#[test]
// Was an open defect: under CPU load (a `yes` per core, 1 run in 4 to 1 in 16) the client
// after the first ring's worth (64 with 256-slot tables) never got its 101. The cause:
// io_uring accepts wait on the listener exclusively (one wake-up per arriving connection);
// a wake-up taken by an accept of the old ring just before its cancellation was lost, and
// the new ring's accepts slept with the connection in the queue. Fixed by a probe accept
// (src/io/ring.rs `probe_accept`) after the old ring's last accept is gone and on any tick
// the listen queue is not empty: 0 failures in 24 loaded runs (1 in 16 before, same
// sitting). .ci/test still runs it alone (`-- --ignored`), with one retry, until it has a
// longer clean record.
#[ignore = "flaky beside other servers right after a relink; .ci/test runs it alone"]
fn a_worker_adds_rings_as_its_file_tables_fill() {
    // 256-slot tables: 700 connections on one worker need at least 4 rings.
    let srv = Server::start(&["--workers", "1", "--ring-files", "256"]);
    let n = 700;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        // Diagnostics for the open defect: when a client gets no 101, say what the server
        // accepted (so far: exactly one ring's worth, the next ring's accept never completes).
        let (stream, head) = raw_request(srv.addr, &upgrade_request("/echo", "13"));
        if !head.starts_with("HTTP/1.1 101") {
            let (_, m) = srv.admin("GET", "/metrics");
            let seen: Vec<&str> = m
                .lines()
                .filter(|l| {
                    [
                        "accepted_total",
                        "connections_open",
                        "rings",
                        "upgrades_total",
                    ]
                    .iter()
                    .any(|k| l.starts_with(&format!("holdfast_{k} ")))
                })
                .collect();
            panic!("client {i} got {head:?}; the server: {seen:?}");
        }
        clients.push(Raw::from_upgraded(stream));
    }
    srv.wait_metric("holdfast_websockets", |v| v == n as f64);
    // Every ring carries traffic: echo on each connection.
    for c in clients.iter_mut() {
        c.stream.set_read_timeout(Some(T)).unwrap();
        c.send_frame(true, OpCode::Text, b"ping?");
    }
    for c in clients.iter_mut() {
        assert_eq!(c.recv_non_ping(), Got::Text("ping?".into()));
    }
    assert!(srv.metric("holdfast_rings") >= 4.0);
    drop(clients);
    srv.wait_metric("holdfast_connections_open", |v| v == 0.0);
}

// A later ring is watched through its eventfd, which ring 0 polls. On this machine's
// kernel the eventfd signal for a message from a client came through an RCU callback,
// 5–20 ms late, every time: a connection on a later ring waited ~14 ms for each read
// (median; 0.1 ms on ring 0). A worker with several rings now reads their task-work flags
// at least every 2 ms (`TASK_WORK_CHECK` in src/io/mod.rs). Run with the other
// multi-ring test (`.ci/test`, `--ignored`): it needs the same 256-slot tables.
#[test]
#[ignore = "multi-ring: .ci/test runs it with the other multi-ring test"]
fn a_message_on_a_later_ring_is_read_when_it_arrives() {
    let srv = Server::start(&["--workers", "1", "--ring-files", "256"]);
    // Fill ring 0; the connections after it go to a later ring, the probe among them.
    let idle: Vec<Raw> = (0..300).map(|_| Raw::connect(srv.addr)).collect();
    srv.wait_metric("holdfast_websockets", |v| v == idle.len() as f64);
    assert!(srv.metric("holdfast_rings") >= 2.0);
    let mut probe = Raw::connect(srv.addr);
    probe.stream_timeout(T);
    probe.stream.set_nodelay(true).unwrap();
    let mut rtts = Vec::with_capacity(40);
    for _ in 0..40 {
        // Not synchronisation: the worker must have gone to sleep before the message
        // arrives, which is the case being tested (a busy worker reaps every ring anyway).
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        probe.send_frame(true, OpCode::Text, b"later ring");
        assert_eq!(probe.recv_non_ping(), Got::Text("later ring".into()));
        rtts.push(t.elapsed());
    }
    rtts.sort();
    // With the check: at most ~2 ms plus the echo. Without it: 13–14 ms at the median.
    assert!(
        rtts[rtts.len() / 2] < Duration::from_millis(6),
        "round trips on a later ring, sorted: {rtts:?}"
    );
    drop(idle);
}

#[test]
fn a_second_signal_exits_at_once() {
    // A long drain window: only the second signal can end it quickly.
    let mut srv = Server::start(&["--drain-window", "60", "--drain-grace", "60"]);
    let c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    srv.signal("-TERM");
    // The drain has begun once readiness flips.
    let deadline = Instant::now() + T;
    while srv.admin("GET", "/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "drain did not start");
    }
    srv.signal("-TERM");
    assert_eq!(srv.wait_exit(Duration::from_secs(5)), 130);
}

#[test]
fn the_admin_listener_can_be_turned_off() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin"));
    // "off": the server runs and serves WebSockets with no admin port.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--workers",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    let addr = first.trim_start_matches("listening on ").parse().unwrap();
    let _c = Raw::connect(addr);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_worker_that_dies_takes_the_process_down_with_its_cause() {
    // Worker 1 panics 0.5 s after start (fault injection): the process must not go on
    // serving with a worker's connections gone and /healthz green.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--workers",
            "2",
        ])
        .env("HOLDFAST_FAULT_WORKER_PANIC", "1")
        .env("HOLDFAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let status = child.wait().unwrap();
        let _ = tx.send((status.code(), text));
    });
    let (code, text) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server kept running with a dead worker");
    assert_eq!(code, Some(70), "{text}");
    assert!(
        text.contains("worker 1 failed (panic: injected fault"),
        "the cause is named: {text}"
    );
}

/// One client that upgrades, then leaves in the given way: `step` 0 = sends a Close and
/// resets at once; 1 = sends a Close, reads the server's Close echo, then resets; 2 = resets
/// without a Close; 3 = sends a Close and half-closes (FIN), then never reads again.
async fn leave_rudely(addr: std::net::SocketAddr, step: u8) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(upgrade_request("/echo", "13").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "no 101");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut close = Vec::new();
    holdfast::ws::frame::encode_close(
        &mut close,
        Some(holdfast::ws::CloseCode::NORMAL),
        "",
        Some([1, 2, 3, 4]),
    );
    if step != 2 {
        s.write_all(&close).await.unwrap();
    }
    if step == 1 {
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.unwrap(); // 0x88 0x02 + code
    }
    if step == 3 {
        s.shutdown().await.unwrap();
        std::mem::forget(s); // vanish: never read, never close (the test process holds it)
        return;
    }
    // SO_LINGER 0: close sends a reset. (Deprecated in tokio because a non-zero linger
    // blocks the thread on drop; a zero one returns at once.)
    #[allow(deprecated)]
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
}

#[test]
fn clients_that_close_and_reset_at_any_step_leave_no_connection_behind() {
    // Issue 13 item 1: clients sending Close and then resetting stayed counted as open for
    // ever (7-27% of 1,000 in the report). Every state of the close handshake is bounded and
    // every path ends in release: the gauges come back to zero.
    let srv = Server::start(&["--drain-grace", "2"]);
    rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..800u32 {
            let addr = srv.addr;
            tasks.push(tokio::spawn(leave_rudely(addr, (i % 4) as u8)));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    srv.wait_metric("holdfast_websockets", |v| v == 0.0);
    srv.wait_metric("holdfast_connections_open", |v| v == 0.0);
    assert_eq!(srv.metric("holdfast_upgrades_total"), 800.0);
}

#[test]
fn a_message_of_exactly_max_message_bytes_echoes_to_a_reading_client() {
    // Issue 13 item 7: with --max-outbound equal to --max-message, the echo of a maximal
    // message closed a reading client with 1008. The defaults now hold it.
    let srv = Server::start(&[]);
    let mut c = Raw::connect(srv.addr);
    c.stream.set_read_timeout(Some(T)).unwrap();
    let payload = vec![7u8; 1 << 20];
    c.send_frame(true, OpCode::Binary, &payload);
    match c.recv_non_ping() {
        Got::Binary(b) => assert_eq!(b.len(), 1 << 20),
        other => panic!("{other:?}"),
    }
    // And a configuration that could never deliver such a message is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "serve",
            "--max-outbound",
            "1048576",
            "--max-message",
            "1048576",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-outbound must be at least"));
}

#[test]
fn tls_or_garbage_on_the_plain_port_gets_400_at_once() {
    // Issue 13 item 11: 4 KiB of random bytes or a TLS ClientHello got no answer for more
    // than 5 s (the server waited for a line end).
    let srv = Server::start(&[]);
    let mut rng = holdfast::jitter::Jitter::new(7);
    let garbage: Vec<u8> = (0..4096).map(|_| (rng.next_u64() & 0xff) as u8).collect();
    let hello = [
        0x16u8, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ];
    for (bytes, want) in [(&garbage[..], "not_http"), (&hello[..], "plain HTTP")] {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
        // The answer must come well before any timeout the server has (handshake 10 s).
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(bytes);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains(want), "{text}");
    }
}

#[test]
fn connections_arriving_during_a_drain_are_refused_at_once() {
    // Issue 13 item 15: the drain cancelled accepts but kept the listeners open, so new
    // connections waited unanswered in the backlog until the process exited.
    //
    // Each attempt sends its request, as every HTTP client does, before it waits: a
    // connection whose handshake completes in the instant its listener closes is dropped
    // by Linux without a reset (the child socket cannot inherit the closing listener's
    // port; traced: SYN_RECV -> CLOSE, no RST), so the client believes it is connected
    // until it writes, and its first write is answered by a reset at once. Waiting
    // without writing would time out on that kernel race, which no server can prevent
    // short of keeping its listeners open (see docs/operations.md, "Graceful drain").
    let srv = Server::start(&["--drain-window", "8", "--drain-grace", "8"]);
    let held = Raw::connect(srv.addr); // keeps the drain (and the process) going
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    let deadline = Instant::now() + Duration::from_secs(3);
    let refused = loop {
        assert!(
            Instant::now() < deadline,
            "connections were still taken during the drain"
        );
        let prompt = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            )
        };
        match std::net::TcpStream::connect(srv.addr) {
            // Refused, or reset when the SYN races the listener's close: prompt either way.
            Err(e) if prompt(&e) => break true,
            Err(e) => panic!("{e}"),
            Ok(s) => {
                // Accepted by a listener not closed yet: it must not hang there. It gets a
                // 503, a close or a reset — within the drain's first tick, not 2 s.
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let request = upgrade_request("/echo", "13");
                if let Err(e) = (&s).write_all(request.as_bytes()) {
                    assert!(prompt(&e), "{e}");
                    continue;
                }
                let mut b = [0u8; 1];
                let r = (&s).read(&mut b);
                assert!(
                    !matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
                    "a connection sat unanswered during the drain"
                );
            }
        }
    };
    assert!(refused);
    drop(held);
}

#[test]
fn the_connection_cap_is_global_whatever_worker_takes_a_connection() {
    // Issue 13 item 10: the cap was divided by the worker count, so with an uneven
    // SO_REUSEPORT spread connections under the cap were refused while one worker was
    // at its share. 200 connections over 2 workers must all be held, the 201st refused.
    let srv = Server::start(&["--workers", "2", "--max-connections", "200"]);
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(Raw::connect(srv.addr));
    }
    let (_, head) = raw_request(srv.addr, &upgrade_request("/echo", "13"));
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    srv.wait_metric("holdfast_websockets", |v| v == 200.0);
    drop(held.pop());
    // A place is free again.
    srv.wait_metric("holdfast_websockets", |v| v == 199.0);
    held.push(Raw::connect(srv.addr));
}

#[test]
fn over_the_per_ip_cap_silent_connections_are_refused_at_accept() {
    // Issue 13 item 8: with --max-per-ip 5 one address held 300 silent connections, because
    // the refusal waited for a request head. Now the sixth connection gets its 429 when it is
    // accepted, without sending a byte, and the server holds at most five from that address.
    let srv = Server::start(&["--max-per-ip", "5"]);
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(std::net::TcpStream::connect(srv.addr).unwrap());
    }
    srv.wait_metric("holdfast_connections_open", |v| v == 5.0);
    // All twenty at once: a silent connection reaches the server when the kernel's deferral
    // ends (--defer-accept, 1 s), and twenty in turn would outlast the five's handshake
    // timeout, after which the cap no longer refuses.
    let refused: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(srv.addr).unwrap())
        .collect();
    for mut s in refused {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    }
    srv.wait_metric("holdfast_connections_open", |v| v == 5.0);
    srv.wait_metric("holdfast_rejected_total{limit=\"per_ip\"}", |v| v == 20.0);
    drop(silent);
}

#[test]
fn a_ping_flood_is_answered_up_to_the_allowance_then_closed_with_1008() {
    // Issue 13 item 17: pings were answered without any bound.
    let srv = Server::start(&["--max-client-pings", "100"]);
    let mut c = support::Raw::connect(srv.addr);
    let mut flood = Vec::new();
    for i in 0..150u8 {
        holdfast::ws::frame::encode_frame(&mut flood, true, OpCode::Ping, Some([9; 4]), &[i]);
    }
    c.send_raw(&flood);
    let mut pongs = 0;
    let close = loop {
        match c.recv() {
            Got::Pong(_) => pongs += 1,
            Got::Close(code, reason) => break (code, reason),
            other => panic!("unexpected {other:?} after {pongs} pongs"),
        }
        assert!(pongs <= 100, "more pongs than the allowance");
    };
    assert_eq!(pongs, 100);
    assert_eq!(close.0, Some(1008));
    assert!(close.1.contains("ping flood"), "{}", close.1);
    assert_eq!(srv.metric("holdfast_ping_flood_closes_total"), 1.0);
    // Others are not affected.
    let mut other = support::Raw::connect(srv.addr);
    other.send_frame(true, OpCode::Text, b"still here");
    assert_eq!(other.recv_non_ping(), Got::Text("still here".into()));
}

#[test]
fn over_the_memory_budget_the_largest_partial_messages_are_closed_with_1009() {
    // Issue 13 item 9: each connection could keep up to --max-message of a partial message
    // with no process-wide bound (100 slow senders added 104 MiB).
    let budget = 16 << 20;
    let srv = Server::start(&["--workers", "1", "--memory-budget", &budget.to_string()]);
    let mut clients: Vec<support::Raw> = (0..60).map(|_| support::Raw::connect(srv.addr)).collect();
    for c in &mut clients {
        // The first fragment of a message that is never finished.
        c.send_frame(false, OpCode::Binary, &[5; 256 << 10]);
    }
    let shed = srv.wait_metric("holdfast_memory_shed_total{held=\"partial\"}", |v| v >= 1.0);
    let partial = srv.wait_metric("holdfast_memory_used_bytes{kind=\"partial\"}", |v| {
        v <= budget as f64
    });
    assert!(
        partial > 0.0,
        "the connections under the budget keep their messages"
    );
    // Each client, one at a time: either it was shed (1009, its message dropped) or it
    // finishes its message and gets it back whole.
    let (mut closed, mut echoed) = (0, 0);
    for c in &mut clients {
        c.send_frame(true, OpCode::Continuation, b"!");
        match c.recv_non_ping() {
            Got::Close(Some(1009), reason) => {
                assert!(reason.contains("memory budget"), "{reason}");
                closed += 1;
            }
            Got::Binary(b) => {
                assert_eq!(b.len(), (256 << 10) + 1);
                echoed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        closed as f64,
        srv.metric("holdfast_memory_shed_total{held=\"partial\"}")
    );
    assert!(
        closed as f64 >= shed && echoed > 0,
        "closed {closed}, echoed {echoed}"
    );
    assert_eq!(
        srv.metric("holdfast_closes_total{code=\"1009\",side=\"server\"}"),
        closed as f64
    );
    drop(clients);
    srv.wait_metric("holdfast_memory_used_bytes{kind=\"partial\"}", |v| v == 0.0);
    srv.wait_metric("holdfast_memory_used_bytes{kind=\"outbound\"}", |v| {
        v == 0.0
    });
}

#[test]
fn flags_take_units_and_a_bad_unit_is_named() {
    let srv = Server::start(&[
        "--ping-interval",
        "500ms",
        "--idle-timeout",
        "2m",
        "--max-message",
        "64KiB",
        "--max-outbound",
        "1MiB",
        "--max-connections",
        "10k",
    ]);
    let mut c = Raw::connect(srv.addr);
    // 64 KiB echoes; one byte more is over --max-message (1009).
    c.send_frame(true, OpCode::Binary, &[1; 64 << 10]);
    assert_eq!(c.recv_non_ping(), Got::Binary(vec![1; 64 << 10]));
    c.send_frame(true, OpCode::Binary, &[1; (64 << 10) + 1]);
    assert!(matches!(c.recv_non_ping(), Got::Close(Some(1009), _)));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--drain-window", "10 parsecs"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown duration unit `parsecs`"), "{err}");
}

#[test]
fn a_second_server_on_a_taken_port_is_refused_unless_asked_to_share() {
    // Through SO_REUSEPORT a second server silently took half the new connections.
    let srv = Server::start(&[]);
    let port = srv.addr.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--listen", &port, "--admin", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use by another process"), "{err}");
    // On purpose, it joins.
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--listen", &port, "--admin", "off", "--share-port"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(second.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let _ = second.kill();
    let _ = second.wait();
}

/// A server started on the port of one that was just killed starts: io_uring releases a
/// dead process's sockets in a kernel worker after the process is gone (3–9 ms here with
/// one connection open), and the taken-port check refused such a restart as a second server.
#[test]
fn a_server_started_at_once_on_the_port_of_one_just_killed_starts() {
    for round in 0..3 {
        let mut srv = Server::start(&[]);
        let addr = srv.addr.to_string();
        // A connection open, so the dying ring holds more than its listener.
        let _client = Raw::connect(srv.addr);
        srv.signal("-KILL");
        srv.wait_exit(Duration::from_secs(10));
        let mut next = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .args([
                "serve",
                "--listen",
                &addr,
                "--admin",
                "off",
                "--workers",
                "1",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(next.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let _ = next.kill();
        let status = next.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut next.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            line.starts_with("listening on"),
            "round {round}: {line:?} {status} {err}"
        );
    }
}

#[test]
fn userspace_bytes_per_connection_agrees_with_the_processs_rss() {
    // Issue 18: the gauge read 52 B while RSS grew 385–673 B per connection (it left out
    // the buffer pools and part of each connection's cost).
    let srv = Server::start(&[]);
    let before = srv.rss();
    let n = 2000;
    let clients: Vec<Raw> = (0..n).map(|_| Raw::connect(srv.addr)).collect();
    srv.wait_metric("holdfast_websockets", |v| v == n as f64);
    let grown = srv.rss().saturating_sub(before) as f64 / n as f64;
    let gauge = srv.metric("holdfast_userspace_bytes_per_connection");
    let state = srv.metric("holdfast_connection_state_bytes_per_connection");
    eprintln!("userspace gauge {gauge} B, RSS growth {grown} B per connection");
    assert!(
        (gauge - grown).abs() <= 0.25 * grown + 64.0,
        "gauge {gauge} B vs RSS growth {grown} B per connection"
    );
    assert!(state <= gauge, "the state part ({state} B) is part of it");
    drop(clients);
}

/// Every duration flag at its longest (ten years) starts a server that serves — a deadline
/// made of each is made without overflow — and one longer is refused at start-up naming the
/// flag: `--poll-hold 1e30` (or `--admin-request-timeout`, `--upgrade-timeout`) once
/// stopped the server with a panic in `Duration::from_secs_f64`.
#[test]
fn durations_at_their_longest_serve_and_longer_ones_are_refused_by_name() {
    let long = "3650d";
    let srv = Server::start(&[
        "--admin-request-timeout",
        long,
        "--handshake-timeout",
        long,
        "--ping-interval",
        "3649d",
        "--idle-timeout",
        long,
        "--drain-window",
        long,
        "--drain-grace",
        long,
        "--upgrade-timeout",
        long,
        "--poll-hold",
        long,
        "--history-ttl",
        long,
        "--presence-ttl",
        long,
        "--topic-idle-expiry",
        long,
        "--auth-leeway",
        long,
    ]);
    assert_eq!(srv.admin("GET", "/healthz").0, 200);
    let mut ws = Raw::connect_to(srv.addr, "/ws?topics=t");
    assert!(matches!(ws.recv(), Got::Text(t) if t.contains("subscribed")));
    // A poll held for its ten years, answered by a publish.
    let mut poll = support::kept(srv.addr);
    let first = support::ask_kept(&mut poll, "/poll?topics=t");
    support::send_poll(&mut poll, "t", &support::cursor_of(&first));
    srv.wait_metric("holdfast_long_polls_total", |v| v >= 2.0);
    assert_eq!(support::publish(srv.admin, "t", b"hi", false).0, 200);
    let (status, _, body) = support::read_answer(&mut poll);
    assert!(status == 200 && body.contains("hi"), "{status} {body}");
    assert!(matches!(ws.recv(), Got::Text(t) if t.contains("hi")));
    for flag in [
        "--poll-hold",
        "--admin-request-timeout",
        "--upgrade-timeout",
    ] {
        let (code, err) = support::serve_refused(&[flag, "1e30"]);
        assert_eq!(code, Some(2), "{flag}: {err}");
        assert!(
            err.contains(flag) && err.contains("longer than ten years"),
            "{flag}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
