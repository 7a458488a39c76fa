//! The admin listener against hostile and careless clients (issue 13, items 13 and 14):
//! bounded heads and requests, chunked bodies, persistent HTTP/1.1 connections, the bearer
//! token, browser requests, DNS-rebinding Host headers, and the observe-only listener.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::Server;

/// Send raw bytes to `addr`; return the status of the first answer and everything read
/// until the server closes (bounded by `within`).
fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn token_file(token: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("holdfast-admin-token-{}", std::process::id()));
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p
}

const T: Duration = Duration::from_secs(5);

#[test]
fn control_needs_the_token_and_browsers_are_refused() {
    let token = "s3cret-token-0123456789";
    let file = token_file(token);
    let srv = Server::start(&["--admin-token-file", file.to_str().unwrap()]);
    let post = |extra: &str| {
        exchange(
            srv.admin,
            format!("POST /drain HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
            T,
        )
    };
    let (status, text) = post("");
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("WWW-Authenticate: Bearer"), "{text}");
    assert_eq!(
        post("Authorization: Bearer wrong-token-0123456789\r\n").0,
        401
    );
    // A page in a browser: refused even with the right token (it could only have it by
    // accident, and no browser request belongs on the admin API).
    let with_origin = format!("Authorization: Bearer {token}\r\nOrigin: https://evil.example\r\n");
    assert_eq!(post(&with_origin).0, 403);
    // Observation needs no token.
    assert_eq!(srv.admin("GET", "/healthz").0, 200);
    assert_eq!(srv.admin("GET", "/readyz").0, 200);
    // The scheme's case does not matter (RFC 9110); a second Authorization is refused.
    let twice = format!("Authorization: Bearer {token}\r\nAuthorization: Bearer x\r\n");
    assert_eq!(post(&twice).0, 400);
    assert_eq!(srv.admin("GET", "/readyz").0, 200, "no drain happened");
    let (status, _) = post(&format!("Authorization: bearer {token}\r\n"));
    assert_eq!(status, 202);
    assert_eq!(srv.admin("GET", "/readyz").0, 503, "the drain started");
    let _ = std::fs::remove_file(file);
}

#[test]
fn without_a_token_control_is_loopback_only_and_host_must_name_this_machine() {
    let srv = Server::start(&[]);
    // A DNS-rebinding page would send its own name as Host.
    let (status, _) = exchange(
        srv.admin,
        b"POST /drain HTTP/1.1\r\nHost: evil.example:9090\r\nConnection: close\r\n\r\n",
        T,
    );
    assert_eq!(status, 403);
    assert_eq!(srv.admin("GET", "/readyz").0, 200, "no drain happened");
    // A non-loopback admin address without a token is refused at start-up.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token-file"), "{err}");
}

#[test]
fn the_observe_listener_serves_metrics_and_health_and_no_control() {
    let srv = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let m = srv.metrics.expect("metrics listener address");
    let get = |path: &str| {
        exchange(
            m,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
            T,
        )
    };
    assert_eq!(get("/healthz").0, 200);
    let (status, text) = get("/metrics");
    assert!(
        status == 200 && text.contains("holdfast_websockets"),
        "{text}"
    );
    let (status, _) = exchange(
        m,
        b"POST /drain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        T,
    );
    assert_eq!(status, 404);
    assert_eq!(get("/topics").0, 404);
}

#[test]
fn probes_may_ask_with_head_or_options_and_a_wrong_method_is_told_what_is_allowed() {
    // HEAD and OPTIONS were 405 (some load balancers probe with HEAD, HAProxy's `option
    // httpchk` with OPTIONS), and no 405 said which methods a path takes.
    let srv = Server::start(&[]);
    let mut s = TcpStream::connect(srv.admin).unwrap();
    let ask = |s: &mut TcpStream, method: &str, path: &str| {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        support::request_head(s, &req)
    };
    let header = |head: &str, name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    // HEAD: GET's head and length, no body; the next answer on the same connection starts
    // right after it (a body would be read as the next status line).
    let head = ask(&mut s, "HEAD", "/healthz");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(&head, "Content-Length:"), "3");
    let head = ask(&mut s, "HEAD", "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(header(&head, "Content-Length:").parse::<usize>().unwrap() > 1000);
    // OPTIONS on a probe: the probe's status, no body, and what the path allows.
    let head = ask(&mut s, "OPTIONS", "/readyz");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(&head, "Content-Length:"), "0");
    assert_eq!(header(&head, "Allow:"), "GET, HEAD, OPTIONS");
    // A wrong method, whether the parser knows it or not: 405 with Allow.
    for (method, path, allow) in [
        ("POST", "/healthz", "GET, HEAD, OPTIONS"),
        ("DELETE", "/metrics", "GET, HEAD, OPTIONS"),
        ("HEAD", "/publish", "POST, OPTIONS"),
        ("PUT", "/upgrade", "GET, HEAD, POST, OPTIONS"),
    ] {
        let head = ask(&mut s, method, path);
        assert!(head.starts_with("HTTP/1.1 405 "), "{method} {path}: {head}");
        assert_eq!(header(&head, "Allow:"), allow, "{method} {path}");
        if method != "HEAD" {
            let mut body = vec![0u8; header(&head, "Content-Length:").parse().unwrap()];
            s.read_exact(&mut body).unwrap();
        }
    }
    let head = ask(&mut s, "HEAD", "/nowhere");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    assert_eq!(header(&head, "Allow:"), "");
    // Draining: the probes say 503 however they ask.
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    for method in ["OPTIONS", "HEAD"] {
        let head = ask(&mut s, method, "/readyz");
        assert!(head.starts_with("HTTP/1.1 503 "), "{method}: {head}");
    }
}

#[test]
fn scrapes_that_come_together_share_a_render_and_none_is_older_than_its_request() {
    // Each admin connection has its own thread, and each scrape rendered at once: scrapers
    // in a loop on the observe listener (the one exposed) took every CPU the workers have.
    let srv = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let m = srv.metrics.expect("metrics listener address");
    let start = Instant::now();
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(m).unwrap();
                for _ in 0..25 {
                    let req = "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n";
                    let head = support::request_head(&mut s, req);
                    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap();
                    let mut body = vec![0u8; len.trim().parse().unwrap()];
                    s.read_exact(&mut body).unwrap();
                    assert!(String::from_utf8(body).unwrap().ends_with('\n'));
                }
            })
        })
        .collect();
    for t in scrapers {
        t.join().unwrap();
    }
    let ms = start.elapsed().as_millis() as f64;
    let asked = srv.metric("holdfast_metrics_scrapes_total");
    let rendered = srv.metric("holdfast_metrics_renders_total");
    assert_eq!(asked, 201.0, "the 200 scrapes and this one");
    // One render at a time, at most one per 50 ms from the first, and one for each of the
    // two reads above (each waits out the gap and renders, as it came after the last).
    assert!(rendered <= ms / 50.0 + 3.0, "{rendered} renders in {ms} ms");
    // A scrape right after another still sees what happened before it was asked.
    let before = srv.metric("holdfast_pubsub_published_total");
    assert_eq!(support::publish(srv.admin, "t", b"x", false).0, 200);
    assert_eq!(srv.metric("holdfast_pubsub_published_total"), before + 1.0);
}

#[test]
fn requests_are_bounded_in_size_time_and_framing() {
    let srv = Server::start(&["--admin-request-timeout", "1"]);
    // A 1 MiB request line: refused once the head passes its bound, not buffered whole.
    let rss = srv.rss();
    let mut line = b"GET /".to_vec();
    line.extend(std::iter::repeat_n(b'a', 1 << 20));
    let (status, _) = exchange(srv.admin, &line, T);
    assert_eq!(status, 431);
    assert!(srv.rss() < rss + (8 << 20), "the head was buffered");
    // Chunked bodies are refused with 411 (a publish used to succeed with an empty body).
    let (status, _) = exchange(
        srv.admin,
        b"POST /publish?topic=t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        T,
    );
    assert_eq!(status, 411);
    // One deadline for the whole request, however slowly it trickles: 408, and /healthz
    // answers meanwhile.
    let started = Instant::now();
    let mut slow = TcpStream::connect(srv.admin).unwrap();
    slow.set_read_timeout(Some(T)).unwrap();
    for b in b"GET /metr" {
        slow.write_all(&[*b]).unwrap();
        assert_eq!(srv.admin("GET", "/healthz").0, 200);
        std::thread::sleep(Duration::from_millis(150)); // the slow client's pace, not sync
    }
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // HTTP/1.1 connections persist unless the client says otherwise.
    let mut s = TcpStream::connect(srv.admin).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /readyz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut both = String::new();
    s.read_to_string(&mut both).unwrap();
    assert_eq!(both.matches("HTTP/1.1 200").count(), 2, "{both}");
}

/// A request a proxy in front could frame or read differently is refused whole (one 400,
/// the connection closed), never served as two requests or as the other reading.
#[test]
fn a_request_that_could_be_read_two_ways_is_refused_whole() {
    let srv = Server::start(&[]);
    let next = "GET /topics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let publish = "POST /publish?topic=smuggled HTTP/1.1\r\nHost: localhost\r\n";
    for (head, reason) in [
        // The space before the colon hid the length: the body was served as a request.
        (
            format!("{publish}Content-Length : {}\r\n\r\n{next}", next.len()),
            "malformed_header",
        ),
        (
            format!("{publish}Content-Length: 1\r\nContent-Length: 5\r\n\r\nx{next}"),
            "duplicate_header",
        ),
        (
            format!("{publish}Content-Length: +1\r\n\r\nx{next}"),
            "invalid_content_length",
        ),
        // The DNS-rebinding check read the last Host.
        (
            "POST /drain HTTP/1.1\r\nHost: evil.example\r\nHost: localhost\r\n\r\n".into(),
            "duplicate_header",
        ),
    ] {
        let (status, text) = exchange(srv.admin, head.as_bytes(), T);
        assert_eq!(status, 400, "{head:?}: {text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "one answer: {text}");
        assert!(text.ends_with(&format!("{reason}\n")), "{text}");
    }
    // A parameter given twice: which one counts is left to the reader, so neither does.
    let twice = "POST /publish?topic=smuggled&topic=other HTTP/1.1\r\nHost: localhost\r\n\
                 Content-Length: 1\r\nConnection: close\r\n\r\nx";
    let (status, text) = exchange(srv.admin, twice.as_bytes(), T);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("duplicate_parameter topic"), "{text}");
    // `members=false` listed the members.
    let (status, text) = srv.admin("GET", "/presence?topic=presence:lobby&members=false");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("bad_parameter members (0 or 1)"), "{text}");
    assert_eq!(
        srv.admin("GET", "/presence?topic=presence:lobby&members=0")
            .0,
        200
    );
    assert_eq!(srv.admin("GET", "/readyz").0, 200, "no drain happened");
    let (_, topics) = srv.admin("GET", "/topics");
    assert!(
        !topics.contains("smuggled"),
        "nothing was published: {topics}"
    );
    // HTTP/1.0 without a Host is still served (HAProxy's default health check).
    let (status, text) = exchange(srv.admin, b"GET /healthz HTTP/1.0\r\n\r\n", T);
    assert_eq!(status, 200, "{text}");
}

/// Issue 18: one structured line per closed or refused connection, JSON or text.
#[test]
fn every_closed_and_refused_connection_gets_a_structured_log_line() {
    let s = Server::start_logging(
        &["--log-format", "json", "--workers", "1"],
        "warn,holdfast::close=info",
    );
    let mut ws = support::Raw::connect(s.addr);
    let port = ws.stream.local_addr().unwrap().port();
    ws.send_frame(true, holdfast::ws::OpCode::Text, b"hello");
    assert!(matches!(ws.recv(), support::Got::Text(t) if t == "hello"));
    let mut close = 4001u16.to_be_bytes().to_vec();
    close.extend(b"bye now");
    ws.send_frame(true, holdfast::ws::OpCode::Close, &close);
    assert!(matches!(ws.recv(), support::Got::Close(Some(4001), _)));
    drop(ws);
    let line = s.wait_log(T, |l| l.contains("connection closed"));
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let f = &v["fields"];
    assert_eq!(v["target"], "holdfast::close");
    assert_eq!(f["peer"], format!("127.0.0.1:{port}"));
    assert_eq!(f["transport"], "websocket");
    assert_eq!(f["code"], 4001);
    assert_eq!(f["reason"], "bye now");
    assert_eq!(f["side"], "client");
    assert_eq!(f["messages_in"], 1);
    assert_eq!(f["messages_out"], 1);
    assert_eq!(f["sample_1_in"], 1);
    assert_eq!(f["suppressed"], 0);
    // In: the request head, the text frame (11 B) and the Close (15 B); out: the 101, the
    // echo (7 B) and the Close's echo (4 B).
    let bytes_in = f["bytes_in"].as_u64().unwrap();
    assert!(bytes_in > 26 + 100, "{bytes_in}");
    let bytes_out = f["bytes_out"].as_u64().unwrap();
    assert!(bytes_out > 11 + 100, "{bytes_out}");
    assert!(f["lifetime_ms"].as_u64().is_some());
    assert!(f["conn"].as_str().unwrap().starts_with("0-"));

    // A refusal: an unknown path gets 404, and its line names the limit and the status.
    let (stream, head) = support::raw_request(s.addr, &support::upgrade_request("/nowhere", "13"));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    drop(stream);
    let line = s.wait_log(T, |l| l.contains("connection refused"));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["status"], 404);
    assert_eq!(v["fields"]["limit"], "not_found");

    // A peer that leaves without a Close: 1006, side client.
    let ws = support::Raw::connect(s.addr);
    drop(ws);
    let line = s.wait_log(T, |l| l.contains("connection closed"));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["code"], 1006);
    assert_eq!(v["fields"]["side"], "client");
    assert!(s.metric("holdfast_close_log_lines_total") >= 3.0);
    // Both WebSockets' lifetimes (the refused request was never one), each well under 10 s.
    s.wait_metric("holdfast_connection_lifetime_seconds_count", |v| v == 2.0);
    let under_10s = s.metric("holdfast_connection_lifetime_seconds_bucket{le=\"10\"}");
    assert_eq!(under_10s, 2.0);
}

/// The close log's rate: past it, lines are suppressed, counted, and the next line says so.
#[test]
fn the_close_log_rate_bounds_the_lines_and_states_what_it_suppressed() {
    let s = Server::start_logging(
        &["--close-log-rate", "10", "--workers", "1"],
        "warn,holdfast::close=info",
    );
    let ticks = || s.metric("holdfast_worker_ticks_total{worker=\"0\"}");
    // 20 connections, one per 100 ms tick (paced by the worker's tick counter): 10/s is
    // within the rate, so every one is traced.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(support::Raw::connect(s.addr));
        let t = ticks();
        s.wait_metric("holdfast_worker_ticks_total{worker=\"0\"}", |v| v > t);
    }
    assert_eq!(s.metric("holdfast_close_log_untraced_total"), 0.0);
    // All leave at once: the line bucket (one second of the rate) writes about 10.
    drop(held);
    let counted = || {
        s.metric("holdfast_close_log_lines_total") + s.metric("holdfast_close_log_suppressed_total")
    };
    let deadline = std::time::Instant::now() + T;
    while counted() < 20.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 20 closes",
            counted()
        );
        std::thread::yield_now();
    }
    let lines = s.metric("holdfast_close_log_lines_total");
    let suppressed = s.metric("holdfast_close_log_suppressed_total");
    assert!(
        (10.0..=12.0).contains(&lines),
        "{lines} lines, {suppressed} suppressed"
    );
    // The bucket refills: a later close is logged and states how many were suppressed.
    let mut line = None;
    for _ in 0..20 {
        drop(support::Raw::connect(s.addr));
        line = s.try_log(Duration::from_millis(500), |l| {
            l.contains("connection closed") && !l.contains("suppressed=0")
        });
        if line.is_some() {
            break;
        }
    }
    let line = line.expect("a line stating the suppressed count");
    let n: f64 = line
        .split("suppressed=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("suppressed=N");
    assert!(
        n >= suppressed,
        "{line}: at least the {suppressed} counted before"
    );
}

/// Read one answer (head and `Content-Length` body) from a keep-alive connection.
fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.ends_with(b"\r\n\r\n") {
        assert!(Instant::now() < deadline, "no answer head");
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed inside a head");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[test]
fn a_server_leaving_answers_the_admin_request_it_is_reading_and_closes_idle_keep_alives() {
    // A long request deadline: an idle keep-alive connection that held the exit up until
    // then would make the exit below miss its bound.
    let mut srv = Server::start_logging(
        &[
            "--admin-request-timeout",
            "60",
            "--drain-window",
            "0.2",
            "--drain-grace",
            "0.2",
        ],
        "info",
    );
    let get = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // Connected first (so accepted before the two below, which get answers), never sends.
    let mut silent = TcpStream::connect(srv.admin).unwrap();
    let mut busy = TcpStream::connect(srv.admin).unwrap();
    let mut idle = TcpStream::connect(srv.admin).unwrap();
    for s in [&mut busy, &mut idle] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(get).unwrap();
        assert!(read_answer(s).starts_with("HTTP/1.1 200"));
    }
    // `busy` has begun its next request when the server is told to leave.
    busy.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    srv.signal("-TERM");
    srv.wait_log(Duration::from_secs(10), |l| {
        l.contains("answering the admin connections open before exiting")
    });
    // The server waits for the rest, answers it and ends the connection with it.
    busy.write_all(b"Host: localhost\r\n\r\n").unwrap();
    let mut rest = String::new();
    busy.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.contains("Connection: close"), "{rest}");
    // The idle one is closed rather than waited for, and so (after a short grace) is the
    // one that never sent a request: neither holds the exit for the 60 s deadline.
    let mut b = [0u8; 1];
    assert_eq!(
        idle.read(&mut b).unwrap(),
        0,
        "an idle keep-alive is closed"
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match silent.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a silent connection was kept: {other:?}"),
    }
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), 0);
}

/// Fifty-sixth sitting: a full admin listener (64 connections) closes the connection that
/// has waited longest on its client instead of refusing the newcomer, so silent or dripping
/// connections cannot hold `/healthz` at 503. Before, 64 silent connections did, for a whole
/// request deadline at a time.
#[test]
fn a_full_admin_listener_makes_room_by_closing_the_connection_waiting_longest() {
    let srv = Server::start_logging(&["--metrics-listen", "127.0.0.1:0"], "warn");
    let probe = |addr: SocketAddr| {
        exchange(
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            T,
        )
    };
    // The oldest: a request dripped slowly (its first bytes only).
    let mut drip = TcpStream::connect(srv.admin).unwrap();
    drip.set_read_timeout(Some(T)).unwrap();
    drip.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // Then 63 that send nothing: the listener holds 64.
    let mut silent: Vec<TcpStream> = (0..63)
        .map(|_| {
            let s = TcpStream::connect(srv.admin).unwrap();
            s.set_read_timeout(Some(T)).unwrap();
            s
        })
        .collect();
    // A client that keeps its connection: served at once (the drip made room)...
    let mut kept = support::kept(srv.admin);
    let (status, _, body) = support::ask(&mut kept, "/healthz", "");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // ...and the drip was told why its request was given up.
    let (status, head, body) = support::read_answer(&mut drip);
    assert_eq!(status, 408, "{head}");
    assert!(body.contains("admin listener is full"), "{body}");
    // A probe now closes the oldest silent connection, not the younger kept one.
    assert_eq!(probe(srv.admin).0, 200);
    assert!(
        support::closed_quietly(&mut silent[0]),
        "the oldest kept its place"
    );
    let (status, _, _) = support::ask(&mut kept, "/readyz", "");
    assert_eq!(
        status, 200,
        "the kept connection was closed before older ones"
    );
    // Counted and logged; the observe listener's own room was never touched.
    let displaced = srv.metric("holdfast_admin_connections_displaced_total{listener=\"admin\"}");
    assert!(displaced >= 2.0, "{displaced}");
    let m = srv.metrics.expect("metrics listener address");
    assert_eq!(probe(m).0, 200);
    let observe = srv.metric("holdfast_admin_connections_displaced_total{listener=\"observe\"}");
    assert_eq!(observe, 0.0);
    assert_eq!(
        srv.metric("holdfast_admin_connections_refused_total{listener=\"admin\"}"),
        0.0
    );
    let line = srv.wait_log(T, |l| l.contains("admin listener full"));
    assert!(line.contains("waited_ms"), "{line}");
    // The first line of its kind: nothing suppressed before it (the field is named as the
    // close log's is).
    assert!(line.contains("suppressed=0"), "{line}");
}
