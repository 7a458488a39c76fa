//! Server-sent events on the same io_uring workers: a plain `GET /sse?topics=…` answered as
//! a `text/event-stream`, events whose ids are the stream's cursor, `Last-Event-ID` resume,
//! heartbeats, the drain's reconnect hint, and what a hostile client can and cannot do.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    ask, ask_kept, closed_quietly, connection, cursor_of, kept, publish, send_poll, Server,
};

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
    // Two cursors: the first was read, and a proxy in front may read the other.
    let s = open(
        srv.addr,
        "/sse?topics=news",
        &format!("Last-Event-ID: {cursor}\r\nLast-Event-ID: news:0@{en}\r\n"),
    );
    assert!(s.head.starts_with("HTTP/1.1 400 "), "{}", s.head);
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

/// `n` event streams of `topic` on a server with spaced sends, each held: subscribed, and
/// its send of a first message ("held") completed (it was read).
fn held_streams(srv: &Server, topic: &str, n: usize) -> Vec<Stream> {
    let mut streams: Vec<Stream> = (0..n)
        .map(|_| open(srv.addr, &format!("/sse?topics={topic}"), ""))
        .collect();
    for s in &mut streams {
        assert_eq!(s.data().json()["type"], "subscribed");
    }
    publish_ok(srv, topic, "held");
    for s in &mut streams {
        assert_eq!(s.data().json()["data"], "held");
    }
    streams
}

/// With `--fanout-send-interval`, a stream's send waits for its phase; but a stream that a
/// drain ends is not held: the end of the stream follows its close event at once, not at
/// the stream's next phase (up to the interval later). A hundred streams spread their phases
/// over the whole interval, so a held end would arrive half an interval late on average.
#[test]
fn a_drain_ends_a_spaced_stream_right_after_its_close_event() {
    const STREAMS: usize = 100;
    let srv = Server::start(&[
        "--workers",
        "1",
        "--fanout-send-interval",
        "1s",
        "--drain-window",
        "0.1",
        "--drain-grace",
        "5",
    ]);
    let streams = held_streams(&srv, "d", STREAMS);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut closed = None;
                while let Some(e) = s.next() {
                    if e.event.as_deref() == Some("close") {
                        closed = Some(Instant::now());
                    }
                }
                closed.expect("a close event before the end").elapsed()
            })
        })
        .collect();
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    let mut lags: Vec<Duration> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    lags.sort();
    let median = lags[STREAMS / 2];
    assert!(
        median < Duration::from_millis(100),
        "the end of a drained stream waited for its phase: median {median:?} after the close \
         event (slowest {:?})",
        lags[STREAMS - 1]
    );
}

/// With spaced sends a message waits for its held recipients' phases in a run the worker
/// keeps once, counted under the memory budget. Event streams take the message's event JSON
/// (a binary one in base64, 4/3 of it), which the run holds beside the frame: it is counted
/// too (it was not: only the frame).
#[test]
fn a_run_deferred_for_event_streams_counts_its_event_json_under_the_budget() {
    const STREAMS: usize = 100;
    const BIG: usize = 256 << 10;
    let srv = Server::start(&["--workers", "1", "--fanout-send-interval", "1s"]);
    // A phase every 10 ms: the run below waits about an interval for its last recipient.
    let mut streams = held_streams(&srv, "j", STREAMS);
    // The first message's run is gone once every stream took it.
    let deferred = "holdfast_memory_used_bytes{kind=\"deferred\"}";
    srv.wait_metric(deferred, |v| v == 0.0);
    let (status, reply) = publish(srv.admin, "j", &vec![0xab; BIG], true);
    assert_eq!(status, 200, "{reply}");
    let seen = srv.wait_metric(deferred, |v| v >= BIG as f64);
    let base64 = BIG.div_ceil(3) * 4;
    assert!(
        seen >= (BIG + base64) as f64,
        "the run counts {seen} B: the frame ({BIG} B) and its event JSON ({base64} B of base64)"
    );
    for s in &mut streams {
        let e = s.data().json();
        assert_eq!(
            e["data_base64"].as_str().map(str::len),
            Some(base64),
            "{}",
            e["seq"]
        );
    }
    srv.wait_metric(deferred, |v| v == 0.0);
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

/// `GET path` as one request on a connection of its own; the status, the head and the
/// body (by its length: the connection may be kept open after it).
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    ask(&mut kept(addr), path, "")
}

fn poll(addr: SocketAddr, path: &str) -> Value {
    let (status, head, body) = get(addr, path);
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Length:"),
        "a length, so buffering proxies pass it: {head}"
    );
    serde_json::from_str(&body).unwrap()
}

fn seqs(answer: &Value) -> Vec<u64> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "message")
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_long_poll_answers_at_once_waits_for_the_next_message_or_the_hold_and_resumes_by_cursor() {
    let srv = Server::start(&["--poll-hold", "1"]);
    for i in 1..=3 {
        publish_ok(&srv, "lp", &format!("m{i}"));
    }
    // From the start of the topic: everything, at once, with the cursor after it.
    let a = poll(srv.addr, "/poll?topics=lp&cursor=lp:0");
    assert_eq!(seqs(&a), [1, 2, 3], "{a}");
    let cursor = a["cursor"].as_str().unwrap().to_string();
    assert!(cursor.starts_with("lp:3@"), "{cursor}");
    // From the cursor: nothing new within the hold → an empty answer, same cursor.
    let t = Instant::now();
    let b = poll(srv.addr, &format!("/poll?topics=lp&cursor={cursor}"));
    assert!(seqs(&b).is_empty() && b["cursor"] == cursor.as_str(), "{b}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "held: {:?}",
        t.elapsed()
    );
    // A message published while waiting ends the wait; what comes with it is batched.
    let admin = srv.admin;
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        for i in 4..=6 {
            publish(admin, "lp", format!("m{i}").as_bytes(), false);
        }
    });
    let t = Instant::now();
    let c = poll(srv.addr, &format!("/poll?topics=lp&cursor={cursor}"));
    publisher.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let got = seqs(&c);
    assert!(!got.is_empty() && got[0] == 4, "{c}");
    let next = c["cursor"].as_str().unwrap();
    let d = poll(srv.addr, &format!("/poll?topics=lp&cursor={next}"));
    let mut all = got.clone();
    all.extend(seqs(&d));
    assert_eq!(all, [4, 5, 6], "the next poll takes the rest: {c} {d}");
    // A cursor of another epoch: the answer says so (the client must reset).
    let e = poll(srv.addr, "/poll?topics=lp&cursor=lp:2@0123456789abcdef");
    let sub = &e["messages"][0];
    assert_eq!(
        (sub["type"].as_str(), sub["recovered"].as_bool()),
        (Some("subscribed"), Some(false)),
        "{e}"
    );
    assert!(srv.metric("holdfast_long_polls_answered_total") >= 5.0);
}

#[test]
fn a_long_poll_is_no_presence_member_and_is_not_answered_by_its_own_join() {
    // A poll was a member for as long as it was held, with a new connection id each time:
    // with --presence-events its own join answered it at once, and one poll client spun
    // thousands of polls a second, sending every subscriber a join and a leave for each.
    let srv = Server::start(&["--presence-events", "--poll-hold", "1"]);
    let mut watch = open(srv.addr, "/sse?topics=presence:room&client=watcher", "");
    let own = watch.data().json();
    assert_eq!(own["type"], "subscribed", "{own}");
    let own = watch.data().json();
    assert_eq!(
        (own["type"].as_str(), own["member"]["client"].as_str()),
        (Some("presence"), Some("watcher"))
    );
    // A fresh poll is answered at once (its position); from its cursor it is held for the
    // whole hold, as nothing is published.
    let a = poll(srv.addr, "/poll?topics=presence:room&client=poller");
    let cursor = a["cursor"].as_str().unwrap().to_string();
    let t = Instant::now();
    let b = poll(
        srv.addr,
        &format!("/poll?topics=presence:room&client=poller&cursor={cursor}"),
    );
    assert_eq!(b["messages"], serde_json::json!([]), "{b}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "held: {:?}",
        t.elapsed()
    );
    // Only the stream is a member, and it heard of no poll.
    let (status, _, body) = get(srv.addr, "/presence?topic=presence:room");
    assert_eq!(status, 200, "{body}");
    let who: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["connections"], 1, "{who}");
    let seq = publish_ok(&srv, "presence:room", "marker");
    loop {
        let e = watch.data().json();
        assert_ne!(e["type"], "presence", "a poll's presence event: {e}");
        if e["seq"] == seq {
            break;
        }
    }
}

#[test]
fn a_poll_whose_cursor_is_behind_is_answered_in_the_turn_that_reads_it() {
    // Not at the worker's next tick (every 100 ms): until this was fixed each such poll
    // waited 0–100 ms (~50 at the median), and a client polling at the publish rate stayed
    // one message and one interval behind for good.
    let srv = Server::start(&["--poll-hold", "5"]);
    let first = poll(srv.addr, "/poll?topics=behind");
    let mut cursor = first["cursor"].as_str().unwrap().to_string();
    let mut took = Vec::new();
    for i in 1..=9u64 {
        publish_ok(&srv, "behind", &format!("m{i}"));
        let t = Instant::now();
        let a = poll(srv.addr, &format!("/poll?topics=behind&cursor={cursor}"));
        took.push(t.elapsed());
        assert_eq!(seqs(&a), [i], "the message after the cursor: {a}");
        cursor = a["cursor"].as_str().unwrap().to_string();
    }
    took.sort();
    // Before the fix every one of these took 99.4–99.8 ms: the publish right after an
    // answer put each poll a whole tick from the next.
    assert!(took[4] < Duration::from_millis(10), "{took:?}");
}

#[test]
fn a_drain_answers_waiting_polls_503_with_retry_after() {
    let srv = Server::start(&[
        "--poll-hold",
        "10",
        "--drain-window",
        "1",
        "--drain-grace",
        "1",
    ]);
    let addr = srv.addr;
    // A first poll (no cursor) is answered at once with the position to poll from.
    let first = poll(addr, "/poll?topics=dr");
    assert_eq!(first["messages"][0]["type"], "subscribed", "{first}");
    let cursor = first["cursor"].as_str().unwrap().to_string();
    let waiting =
        std::thread::spawn(move || get(addr, &format!("/poll?topics=dr&cursor={cursor}")));
    // The poll is held (nothing published); wait until the server holds it.
    let t = Instant::now();
    while srv.metric("holdfast_long_polls_total") < 2.0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    let (status, head, body) = waiting.join().unwrap();
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.contains("Retry-After: 1"), "{head}");
    assert!(body.contains("1012"), "{body}");
}

#[test]
fn the_close_log_names_the_transport() {
    let srv = Server::start_logging(
        &[
            "--log-format",
            "json",
            "--workers",
            "1",
            "--poll-hold",
            "0.2",
        ],
        "warn,holdfast::close=info",
    );
    let s = open(srv.addr, "/sse?topics=log", "");
    drop(s);
    let line = srv.wait_log(Duration::from_secs(10), |l| l.contains("connection closed"));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["transport"], "sse", "{line}");
    assert_eq!(v["fields"]["side"], "client", "{line}");
    let (status, _, _) = get(srv.addr, "/poll?topics=log");
    assert_eq!(status, 200);
    let line = srv.wait_log(Duration::from_secs(10), |l| l.contains("connection closed"));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["transport"], "poll", "{line}");
}

/// Publishes that pile up while a worker is busy are offered in runs (each recipient takes
/// the whole run before the next recipient). Event streams beside WebSockets: every stream
/// gets every message of its topics once, in publish order, each with its own data and
/// cursor — a message's JSON is converted once and kept with the message, so the runs'
/// interleaving of messages per recipient must never hand one message another's JSON.
#[test]
fn event_streams_take_messages_that_piled_up_once_each_in_order() {
    let srv = Server::start(&["--client-publish", "--workers", "1"]);
    let topics = ["a", "b", "a,b"];
    let mut streams: Vec<(Stream, Vec<&str>)> = (0..12)
        .map(|i| {
            let t = topics[i % 3];
            let mut s = open(srv.addr, &format!("/sse?topics={t}"), "");
            let names: Vec<&str> = t.split(',').collect();
            for _ in &names {
                assert_eq!(s.data().json()["type"], "subscribed");
            }
            (s, names)
        })
        .collect();
    // Runs of 1 to 13 messages per topic, switching topics between runs, written in one
    // go so they reach the worker together.
    let order = support::runs_over_two_topics(400, 5);
    let count = |t: &str| order.iter().filter(|o| o.0 == t).count() as u64;
    let mut wire = Vec::new();
    for (topic, _, data) in &order {
        let op = serde_json::json!({"op": "publish", "topic": topic, "data": data});
        holdfast::ws::frame::encode_frame(
            &mut wire,
            true,
            holdfast::ws::OpCode::Text,
            Some([1, 2, 3, 4]),
            op.to_string().as_bytes(),
        );
    }
    let mut publisher = support::Raw::connect_to(srv.addr, "/ws");
    publisher.send_raw(&wire);
    for (s, names) in &mut streams {
        let mut last = (0u64, 0u64);
        for (topic, seq, data) in order.iter().filter(|(t, _, _)| names.contains(t)) {
            let e = s.data();
            let m = e.json();
            assert_eq!(
                (m["topic"].as_str(), m["seq"].as_u64(), m["data"].as_str()),
                (Some(*topic), Some(*seq), Some(data.as_str())),
                "{names:?}"
            );
            if *topic == "a" {
                last.0 = *seq;
            } else {
                last.1 = *seq;
            }
            // The cursor names what this stream has had of each of its topics.
            let id = e.id.expect("every message carries the cursor");
            for (name, n) in [("a", last.0), ("b", last.1)] {
                if names.contains(&name) {
                    assert!(
                        id.contains(&format!("{name}:{n}@")),
                        "{id} at {topic} {seq}"
                    );
                }
            }
        }
    }
    let want = ((count("a") + count("b")) * 8) as f64;
    let delivered = srv.wait_metric("holdfast_pubsub_deliveries_total", |v| v >= want);
    assert_eq!(delivered, want, "each delivery made once");
}

#[test]
fn a_long_poll_answer_that_fills_up_leaves_the_rest_to_the_next_poll() {
    // Answers hold at most half of --max-outbound: 2 KiB here, a few of these messages.
    let srv = Server::start(&["--max-outbound", "4096", "--max-message", "1024"]);
    let body = "x".repeat(200);
    for _ in 0..40 {
        publish_ok(&srv, "full", &body);
    }
    let mut got = Vec::new();
    let mut cursor = "full:0".to_string();
    let mut answers = 0;
    while got.len() < 40 && answers < 40 {
        let a = poll(srv.addr, &format!("/poll?topics=full&cursor={cursor}"));
        let s = seqs(&a);
        assert!(!s.is_empty(), "an answer with room takes at least one: {a}");
        got.extend(s);
        cursor = a["cursor"].as_str().unwrap().to_string();
        answers += 1;
    }
    assert!(
        answers > 1,
        "the answers filled up ({answers} for 40 messages)"
    );
    assert_eq!(
        got,
        (1..=40).collect::<Vec<u64>>(),
        "every message once, in order"
    );
}

#[test]
fn resumes_over_the_same_history_each_get_every_binary_message_as_published() {
    // Event forms of history frames are converted once and shared between resumes: each
    // resume must still get its own numbers and each message's own bytes.
    let srv = Server::start(&[]);
    let bodies: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i, 0xff, i ^ 0x5a, 0]).collect();
    for b in &bodies {
        let (s, reply) = publish(srv.admin, "bin", b, true);
        assert_eq!(s, 200, "{reply}");
    }
    let decode = |m: &Value| {
        let b64 = m["data_base64"].as_str().unwrap_or_else(|| panic!("{m}"));
        holdfast::ws::base64::decode(b64.as_bytes()).unwrap_or_else(|| panic!("{m}"))
    };
    for from in [0u64, 10, 0, 25, 10] {
        let a = poll(srv.addr, &format!("/poll?topics=bin&cursor=bin:{from}"));
        let msgs: Vec<&Value> = a["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == "message")
            .collect();
        let got: Vec<(u64, Vec<u8>)> = msgs
            .iter()
            .map(|m| (m["seq"].as_u64().unwrap(), decode(m)))
            .collect();
        let want: Vec<(u64, Vec<u8>)> = (from + 1..=30)
            .map(|s| (s, bodies[s as usize - 1].clone()))
            .collect();
        assert_eq!(got, want, "resume from {from}");
    }
    // An event stream resuming over the same frames gets the same.
    let mut st = open(srv.addr, "/sse?topics=bin", "Last-Event-ID: bin:20\r\n");
    for s in 21..=30u64 {
        let mut e = st.data().json();
        while e["type"] != "message" {
            e = st.data().json(); // the subscription's answer
        }
        assert_eq!(
            (e["seq"].as_u64(), decode(&e)),
            (Some(s), bodies[s as usize - 1].clone())
        );
    }
}

// ------------------------------------------------------------------ keep-alive

#[test]
fn polls_and_calls_keep_their_connection_for_the_next_request() {
    let srv = Server::start(&["--poll-hold", "1", "--client-publish"]);
    let mut s = kept(srv.addr);
    // First poll: the position to poll from, and the connection stays.
    let cursor = cursor_of(&ask_kept(&mut s, "/poll?topics=ka"));
    // Between requests nothing is counted as a waiting poll.
    srv.wait_metric("holdfast_open_connections{transport=\"poll\"}", |v| {
        v == 0.0
    });
    // A browser's preflight for the call, on the same connection: it stays for the call.
    write!(
        s,
        "OPTIONS /publish?topic=ka HTTP/1.1\r\nHost: test\r\nOrigin: https://app.example\r\n\
         Access-Control-Request-Method: POST\r\n\r\n"
    )
    .unwrap();
    let (st, head, _) = support::read_answer(&mut s);
    assert_eq!(
        (st, connection(&head).as_str()),
        (204, "keep-alive"),
        "{head}"
    );
    // The call on the same connection.
    write!(
        s,
        "POST /publish?topic=ka HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nm1"
    )
    .unwrap();
    let (st, head, body) = support::read_answer(&mut s);
    assert_eq!(
        (st, connection(&head).as_str()),
        (200, "keep-alive"),
        "{head}\n{body}"
    );
    // The next poll, same connection: the message, from the cursor.
    let a = ask_kept(&mut s, &format!("/poll?topics=ka&cursor={cursor}"));
    assert_eq!(seqs(&a), [1], "{a}");
    // A poll held to the end of its hold, then answered empty: still the same connection.
    let b = ask_kept(&mut s, &format!("/poll?topics=ka&cursor={}", cursor_of(&a)));
    assert!(seqs(&b).is_empty(), "{b}");
    // The same connection can become a WebSocket.
    write!(s, "{}", support::upgrade_request("/echo", "13")).unwrap();
    let (st, head, _) = {
        // A 101 has no body: read the head only.
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            use std::io::Read;
            assert_eq!(s.read(&mut byte).unwrap(), 1, "the 101 ended early");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        (head[9..12].parse::<u16>().unwrap(), head, ())
    };
    assert_eq!(st, 101, "{head}");
    let mut ws = support::Raw::from_upgraded(s);
    ws.send_frame(true, holdfast::ws::OpCode::Text, b"still here");
    assert_eq!(ws.recv_non_ping(), support::Got::Text("still here".into()));
    assert_eq!(srv.metric("holdfast_http_keepalive_reuses_total"), 5.0);
    assert_eq!(srv.metric("holdfast_cors_preflights_total"), 1.0);
    assert_eq!(
        srv.metric("holdfast_open_connections{transport=\"http\"}"),
        0.0
    );
}

#[test]
fn a_client_that_says_close_or_pipelines_gets_its_answer_and_then_the_end() {
    let srv = Server::start(&["--poll-hold", "1"]);
    // `Connection: close`: answered, then closed.
    let mut s = kept(srv.addr);
    let (st, head, _) = ask(&mut s, "/poll?topics=c", "Connection: close\r\n");
    assert_eq!((st, connection(&head).as_str()), (200, "close"), "{head}");
    assert!(closed_quietly(&mut s));
    drop(s);
    // Two requests in one write (pipelining, which the server does not serve): the first
    // is answered and says close; the second is not taken for a request later.
    let mut s = kept(srv.addr);
    let one = "GET /poll?topics=c HTTP/1.1\r\nHost: test\r\n\r\n";
    s.write_all(format!("{one}{one}").as_bytes()).unwrap();
    let (st, head, _) = support::read_answer(&mut s);
    assert_eq!((st, connection(&head).as_str()), (200, "close"), "{head}");
    assert!(closed_quietly(&mut s), "one answer, then the end");
    // (An answered poll counts as one until its client closes.)
    drop(s);
    // A client that speaks while its poll is held: the same.
    let mut s = kept(srv.addr);
    let cursor = cursor_of(&ask_kept(&mut s, "/poll?topics=c"));
    send_poll(&mut s, "c", &cursor);
    srv.wait_metric("holdfast_open_connections{transport=\"poll\"}", |v| {
        v == 1.0
    });
    s.write_all(b"GET /poll?topics=c HTTP/1.1\r\n").unwrap();
    let (st, head, _) = support::read_answer(&mut s);
    assert_eq!((st, connection(&head).as_str()), (200, "close"), "{head}");
    assert!(closed_quietly(&mut s));
    assert_eq!(srv.metric("holdfast_http_keepalive_reuses_total"), 1.0);
}

#[test]
fn an_idle_kept_connection_closes_after_the_handshake_timeout_and_requests_are_capped() {
    let srv = Server::start(&[
        "--poll-hold",
        "1",
        "--handshake-timeout",
        "1",
        "--keepalive-requests",
        "2",
    ]);
    let mut s = kept(srv.addr);
    ask_kept(&mut s, "/poll?topics=i");
    let t = Instant::now();
    assert!(closed_quietly(&mut s), "no request in time: closed");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    srv.wait_metric("holdfast_http_keepalive_idle_ends_total", |v| v == 1.0);
    assert_eq!(srv.metric("holdfast_handshake_timeouts_total"), 0.0);
    // The allowance: the second answer on a connection is its last.
    let mut s = kept(srv.addr);
    ask_kept(&mut s, "/poll?topics=i");
    let (_, head, _) = ask(&mut s, "/poll?topics=i", "");
    assert_eq!(connection(&head), "close", "{head}");
    assert!(closed_quietly(&mut s));
    // A client closing its idle connection is its normal end, not an abort.
    let mut s = kept(srv.addr);
    ask_kept(&mut s, "/poll?topics=i");
    drop(s);
    srv.wait_metric("holdfast_http_keepalive_idle_ends_total", |v| v == 2.0);
}

#[test]
fn a_drain_closes_idle_kept_connections_and_answers_held_polls_with_close() {
    let srv = Server::start(&[
        "--poll-hold",
        "10",
        "--drain-window",
        "1",
        "--drain-grace",
        "1",
    ]);
    // Idle between requests.
    let mut idle = kept(srv.addr);
    ask_kept(&mut idle, "/poll?topics=d");
    // A second poll held on a kept connection.
    let mut held = kept(srv.addr);
    let cursor = cursor_of(&ask_kept(&mut held, "/poll?topics=d"));
    send_poll(&mut held, "d", &cursor);
    srv.wait_metric("holdfast_open_connections{transport=\"poll\"}", |v| {
        v == 1.0
    });
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    // The idle one just closes: no unasked-for 503 a client would take for the answer to
    // its next request.
    assert!(closed_quietly(&mut idle));
    let (st, head, _) = support::read_answer(&mut held);
    assert_eq!((st, connection(&head).as_str()), (503, "close"), "{head}");
    assert!(closed_quietly(&mut held));
}

#[test]
fn http_1_0_polls_and_streams_are_served_as_a_proxy_forwards_them() {
    // nginx forwards HTTP/1.0 unless told `proxy_http_version 1.1`: the fallback transports
    // must work through it. Each answer closes its connection; an upgrade still needs 1.1.
    let srv = Server::start(&["--poll-hold", "1"]);
    let mut s = kept(srv.addr);
    s.write_all(b"GET /poll?topics=old HTTP/1.0\r\nHost: test\r\n\r\n")
        .unwrap();
    let (st, head, body) = support::read_answer(&mut s);
    assert_eq!((st, connection(&head).as_str()), (200, "close"), "{head}");
    assert!(body.contains("subscribed"), "{body}");
    assert!(closed_quietly(&mut s));
    let mut old = TcpStream::connect(srv.addr).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    old.write_all(b"GET /sse?topics=old HTTP/1.0\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(old);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    publish_ok(&srv, "old", "to both");
    let mut seen = String::new();
    while !seen.contains("to both") {
        let mut l = String::new();
        assert!(r.read_line(&mut l).unwrap() > 0, "the stream ended: {seen}");
        seen.push_str(&l);
    }
    let (_, head) = support::raw_request(
        srv.addr,
        &support::upgrade_request("/echo", "13").replacen("HTTP/1.1", "HTTP/1.0", 1),
    );
    assert!(head.starts_with("HTTP/1.1 505"), "{head}");
}
