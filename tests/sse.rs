//! Server-sent events on the same io_uring workers: a plain `GET /sse?topics=…` answered as
//! a `text/event-stream`, events whose ids are the stream's cursor, `Last-Event-ID` resume,
//! heartbeats, the drain's reconnect hint, and what a hostile client can and cannot do.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{publish, Server};

/// One event as the client sees it.
#[derive(Debug, Default, Clone)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: String,
    retry: Option<u64>,
    comment: bool,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

struct Stream {
    r: BufReader<TcpStream>,
    head: String,
}

/// Open `GET path` with extra header lines; returns the stream after the response head.
fn open(addr: SocketAddr, path: &str, headers: &str) -> Stream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    Stream { r, head }
}

impl Stream {
    /// The next event, comment or retry block (None at the end of the stream).
    fn next(&mut self) -> Option<Event> {
        let mut e = Event::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).ok()? == 0 {
                return any.then_some(e);
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if any {
                    return Some(e);
                }
                continue;
            }
            any = true;
            if line.starts_with(':') {
                e.comment = true;
            } else if let Some(v) = line.strip_prefix("id: ") {
                e.id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                e.event = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("retry: ") {
                e.retry = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("data: ") {
                if !e.data.is_empty() {
                    e.data.push('\n');
                }
                e.data.push_str(v);
            }
        }
    }

    /// The next event with data (comments and retry blocks skipped).
    fn data(&mut self) -> Event {
        loop {
            let e = self.next().expect("the stream ended");
            if !e.data.is_empty() {
                return e;
            }
        }
    }
}

fn publish_ok(srv: &Server, topic: &str, body: &str) -> u64 {
    let (s, reply) = publish(srv.admin, topic, body.as_bytes(), false);
    assert_eq!(s, 200, "{reply}");
    serde_json::from_str::<Value>(&reply).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn an_event_stream_carries_messages_with_a_cursor_and_resumes_from_last_event_id() {
    let srv = Server::start(&[]);
    let mut s = open(srv.addr, "/sse?topics=news,alerts", "");
    assert!(s.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", s.head);
    assert!(
        s.head.contains("Content-Type: text/event-stream"),
        "{}",
        s.head
    );
    let first = s.next().unwrap();
    assert_eq!(
        first.retry,
        Some(1000),
        "the stream starts with its reconnect hint"
    );
    let (a, b) = (s.data().json(), s.data().json());
    assert_eq!(
        (a["type"].as_str(), a["topic"].as_str()),
        (Some("subscribed"), Some("news"))
    );
    assert_eq!(b["topic"], "alerts");
    let (en, ea) = (
        a["epoch"].as_str().unwrap().to_string(),
        b["epoch"].as_str().unwrap().to_string(),
    );
    for i in 1..=3 {
        assert_eq!(publish_ok(&srv, "news", &format!("n{i}")), i);
    }
    let (st, _) = publish(srv.admin, "alerts", &[0, 1, 255], true);
    assert_eq!(st, 200);
    let mut last_id = String::new();
    for i in 1..=3u64 {
        let e = s.data();
        let m = e.json();
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_str()),
            (Some(i), Some(&*format!("n{i}")))
        );
        let id = e.id.unwrap();
        assert_eq!(
            id,
            format!("news:{i}@{en},alerts:0@{ea}"),
            "the cursor of every topic"
        );
        last_id = id;
    }
    let e = s.data();
    assert_eq!(e.json()["data_base64"], "AAH/", "binary payloads as base64");
    assert_eq!(
        e.id.as_deref(),
        Some(&*format!("news:3@{en},alerts:1@{ea}"))
    );
    drop(s);
    // Two more while away. The reconnect sends the id of the last event it processed —
    // here the client pretends it processed only up to news 2 — and gets exactly what
    // followed, in order, once.
    publish_ok(&srv, "news", "n4");
    publish_ok(&srv, "news", "n5");
    assert!(last_id.starts_with("news:3@"), "{last_id}");
    let cursor = format!("news:2@{en},alerts:1@{ea}");
    let mut s = open(
        srv.addr,
        "/sse?topics=news,alerts",
        &format!("Last-Event-ID: {cursor}\r\n"),
    );
    let mut got = Vec::new();
    let mut subscribed = 0;
    while got.len() < 3 || subscribed < 2 {
        let m = s.data().json();
        match m["type"].as_str() {
            Some("subscribed") => {
                assert_eq!(m["recovered"], true, "{m}");
                subscribed += 1;
            }
            Some("message") => got.push(m["seq"].as_u64().unwrap()),
            _ => panic!("{m}"),
        }
    }
    assert_eq!((subscribed, got), (2, vec![3, 4, 5]));
    // A cursor of another epoch is not recovered.
    let mut s = open(
        srv.addr,
        "/sse?topics=news",
        "Last-Event-ID: news:2@0123456789abcdef\r\n",
    );
    assert_eq!(s.data().json()["recovered"], false);
}

#[test]
fn a_stream_gets_heartbeats_not_an_idle_close_and_ignores_what_its_client_sends() {
    let srv = Server::start(&["--ping-interval", "0.5", "--idle-timeout", "1"]);
    let mut s = open(srv.addr, "/sse?topics=quiet", "");
    let start = Instant::now();
    let mut beats = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let e = s.next().expect("the stream stays open past --idle-timeout");
        if e.comment {
            beats += 1;
        }
    }
    assert!(
        beats >= 3,
        "{beats} heartbeats in 2.5 s at a 0.5 s interval"
    );
    // Bytes from the client are dropped, and the stream carries on.
    s.r.get_mut()
        .write_all(&[0x81, 0x85, 1, 2, 3, 4, 9, 9, 9, 9, 9])
        .unwrap();
    s.r.get_mut()
        .write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(publish_ok(&srv, "quiet", "still here"), 1);
    let m = s.data().json();
    assert_eq!(m["data"], "still here", "{m}");
    assert!(srv.metric("holdfast_sse_streams_opened_total") >= 1.0);
}

#[test]
fn a_drain_ends_streams_with_a_reconnect_hint() {
    let srv = Server::start(&["--drain-window", "0.5", "--drain-grace", "1"]);
    let mut s = open(srv.addr, "/sse?topics=d", "");
    s.data();
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    let mut retry = None;
    let mut close = None;
    while let Some(e) = s.next() {
        if e.retry.is_some() {
            retry = e.retry;
        }
        if e.event.as_deref() == Some("close") {
            close = Some(e.json());
        }
    }
    let close = close.expect("a close event before the end");
    assert_eq!(close["code"], 1012, "{close}");
    let hint = retry.expect("a retry hint");
    assert!(hint <= 500, "the hint is within the drain window: {hint}");
}

#[test]
fn streams_are_refused_like_upgrades_and_only_where_they_are_served() {
    let hmac = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/hmac.secret"
    );
    let srv = Server::start(&["--auth-hmac-secret-file", hmac]);
    let s = open(srv.addr, "/sse?topics=t", "");
    assert!(s.head.starts_with("HTTP/1.1 401"), "{}", s.head);
    let s = open(srv.addr, "/sse?topics=bad%20topic", "");
    assert!(s.head.starts_with("HTTP/1.1 40"), "{}", s.head);
    // A plain GET elsewhere is still refused as a WebSocket handshake would be.
    let s = open(srv.addr, "/ws?topics=t", "");
    assert!(s.head.starts_with("HTTP/1.1 400"), "{}", s.head);
    let s = open(srv.addr, "/echo", "");
    assert!(s.head.starts_with("HTTP/1.1 400"), "{}", s.head);
    // A body is refused.
    let s = open(srv.addr, "/sse?topics=t", "Content-Length: 5\r\n");
    assert!(s.head.starts_with("HTTP/1.1 400"), "{}", s.head);
}
