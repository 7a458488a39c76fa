//! Pub/sub end to end: the real server binary, real WebSocket clients (tokio-tungstenite),
//! publishes through the admin API and from clients.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::{publish, Got, Raw, Server};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A message from a subscriber: text as JSON, binary delivery split into its fields.
#[derive(Debug, PartialEq)]
enum In {
    Json(Value),
    Bin {
        topic: String,
        seq: u64,
        data: Vec<u8>,
    },
}

async fn connect(srv: &Server, path: &str) -> Ws {
    tokio_tungstenite::connect_async(srv.url(path))
        .await
        .expect("connect")
        .0
}

/// The next text or binary message (pings are answered by the library), within 5 s.
async fn next(ws: &mut Ws) -> In {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no message within 5 s")
            .expect("stream ended")
            .expect("read");
        match m {
            Message::Text(t) => return In::Json(serde_json::from_str(&t).unwrap()),
            Message::Binary(b) => {
                return In::Bin {
                    topic: String::from_utf8(b[1..1 + b[0] as usize].to_vec()).unwrap(),
                    seq: u64::from_be_bytes(
                        b[1 + b[0] as usize..9 + b[0] as usize].try_into().unwrap(),
                    ),
                    data: b[9 + b[0] as usize..].to_vec(),
                }
            }
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        In::Json(v) => v,
        other => panic!("expected JSON, got {other:?}"),
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

fn pub_text(srv: &Server, topic: &str, text: &str) -> Value {
    let (status, body) = publish(srv.admin, topic, text.as_bytes(), false);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Subscribers per worker of `topic` from `GET /topics`.
fn presence(srv: &Server, topic: &str) -> Vec<u64> {
    let (_, body) = srv.admin("GET", "/topics");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == topic)
        .map(|t| {
            t["per_worker"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_presence(srv: &Server, topic: &str, pred: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = presence(srv, topic);
        if pred(&p) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "presence of {topic} stuck at {p:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn subscribers_on_both_workers_get_every_message_once_in_order() {
    let srv = Server::start(&[]);
    // SO_REUSEPORT spreads connections over the two workers; 40 makes both near certain,
    // and presence says so before anything is published.
    let mut subs = Vec::new();
    for i in 0..40 {
        let path = if i % 2 == 0 { "/ws?topics=news" } else { "/ws" };
        let mut ws = connect(&srv, path).await;
        if i % 2 == 1 {
            send(
                &mut ws,
                serde_json::json!({"op": "subscribe", "topics": ["news"]}),
            )
            .await;
        }
        let ack = next_json(&mut ws).await;
        assert_eq!(ack["type"], "subscribed");
        assert_eq!(ack["topic"], "news");
        subs.push(ws);
    }
    let per = wait_presence(&srv, "news", |p| p.iter().sum::<u64>() == 40);
    assert!(
        per.iter().all(|&n| n > 0),
        "both workers hold subscribers: {per:?}"
    );
    for i in 1..=20u64 {
        let r = pub_text(&srv, "news", &format!("m{i}"));
        assert_eq!(
            (r["seq"].as_u64(), r["subscribers"].as_u64()),
            (Some(i), Some(40))
        );
    }
    let (status, body) = publish(srv.admin, "news", &[0, 255, 7], true);
    assert_eq!(status, 200, "{body}");
    // `?binary=1` says binary as on the data port, whatever the type says (it was read as
    // text and refused for not being UTF-8).
    let head = "POST /publish?topic=news&binary=1 HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: text/plain\r\n";
    let (status, body) = support::request(srv.admin, head, &[1, 254]);
    assert_eq!(status, 200, "{body}");
    let head = "POST /publish?topic=news&binary=yes HTTP/1.1\r\nHost: localhost\r\n";
    let (status, body) = support::request(srv.admin, head, b"x");
    assert_eq!(
        (status, body.trim()),
        (400, "bad_parameter binary (0 or 1)")
    );
    for ws in &mut subs {
        for i in 1..=20u64 {
            let m = next_json(ws).await;
            assert_eq!(
                (m["type"].as_str(), m["seq"].as_u64()),
                (Some("message"), Some(i))
            );
            assert_eq!(m["data"], format!("m{i}"));
        }
        let b = next(ws).await;
        assert_eq!(
            b,
            In::Bin {
                topic: "news".into(),
                seq: 21,
                data: vec![0, 255, 7]
            },
            "binary payloads arrive as binary frames"
        );
        let b = next(ws).await;
        assert_eq!(
            b,
            In::Bin {
                topic: "news".into(),
                seq: 22,
                data: vec![1, 254]
            }
        );
    }
    let delivered = srv.wait_metric("holdfast_pubsub_deliveries_total", |v| v >= 22.0 * 40.0);
    assert_eq!(delivered, 22.0 * 40.0);
    assert_eq!(srv.metric("holdfast_pubsub_published_total"), 22.0);
    // Presence follows unsubscribes and disconnects.
    let mut first = subs.remove(0);
    send(
        &mut first,
        serde_json::json!({"op": "unsubscribe", "topics": ["news"]}),
    )
    .await;
    assert_eq!(next_json(&mut first).await["type"], "unsubscribed");
    wait_presence(&srv, "news", |p| p.iter().sum::<u64>() == 39);
    drop(subs);
    wait_presence(&srv, "news", |p| p.iter().sum::<u64>() == 0);
    srv.wait_metric("holdfast_pubsub_subscriptions", |v| v == 0.0);
    // Nobody subscribes now: the publish reaches no worker.
    let r = pub_text(&srv, "news", "late");
    assert_eq!(
        (r["workers"].as_u64(), r["subscribers"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn resume_after_reconnect_loses_nothing_and_reports_a_gap_past_the_window() {
    let srv = Server::start(&["--replay-messages", "8"]);
    let mut ws = connect(&srv, "/ws?topics=feed").await;
    assert_eq!(next_json(&mut ws).await["seq"], 0);
    for i in 1..=5 {
        pub_text(&srv, "feed", &i.to_string());
    }
    let mut last = 0;
    for _ in 1..=5 {
        last = next_json(&mut ws).await["seq"].as_u64().unwrap();
    }
    assert_eq!(last, 5);
    ws.close(None).await.unwrap();
    // Published while the client is away.
    for i in 6..=10 {
        pub_text(&srv, "feed", &i.to_string());
    }
    let mut ws = connect(&srv, &format!("/ws?topics=feed&resume=feed:{last}")).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("subscribed"), Some(10))
    );
    pub_text(&srv, "feed", "11");
    for want in 6..=11u64 {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "message");
        assert_eq!(m["seq"], want, "in order, no loss, no duplicate");
        assert_eq!(m["data"], want.to_string());
    }
    // The window holds 8 messages (4..=11): resuming from 1 is owed 2..=3 as a gap.
    let mut late = connect(&srv, "/ws").await;
    send(
        &mut late,
        serde_json::json!({"op": "subscribe", "topics": ["feed"], "resume": {"feed": 1}}),
    )
    .await;
    assert_eq!(next_json(&mut late).await["type"], "subscribed");
    let gap = next_json(&mut late).await;
    assert_eq!(
        (
            gap["type"].as_str(),
            gap["from"].as_u64(),
            gap["to"].as_u64()
        ),
        (Some("gap"), Some(2), Some(3))
    );
    for want in 4..=11u64 {
        assert_eq!(next_json(&mut late).await["seq"], want);
    }
    pub_text(&srv, "feed", "12");
    assert_eq!(next_json(&mut late).await["seq"], 12);
    assert_eq!(next_json(&mut ws).await["seq"], 12);
    // The resume histograms: 5 replayed (6..=10), then 8 replayed (4..=11) and a gap of 2.
    let m = |s: &str| srv.metric(&format!("holdfast_pubsub_resume_{s}"));
    assert_eq!(m("replayed_messages_count"), 2.0);
    assert_eq!(m("replayed_messages_sum"), 13.0);
    assert_eq!(m("gap_messages_count"), 1.0);
    assert_eq!(m("gap_messages_sum"), 2.0);
    assert_eq!(m("gap_messages_bucket{le=\"1\"}"), 0.0);
    assert_eq!(m("gap_messages_bucket{le=\"10\"}"), 1.0);
}

#[tokio::test(flavor = "current_thread")]
async fn subscription_changes_past_the_rate_are_refused_and_the_connection_goes_on() {
    // Each change costs every member of a presence topic an event and the broker a write:
    // one client toggling a subscription sent a watcher 57,000 events a second.
    let srv = Server::start(&["--subscribe-rate", "2"]);
    let mut ws = connect(&srv, "/ws").await;
    let start = std::time::Instant::now();
    for _ in 0..50 {
        for op in ["subscribe", "unsubscribe"] {
            send(&mut ws, serde_json::json!({"op": op, "topics": ["t"]})).await;
        }
    }
    let (mut acted, mut limited) = (0u64, 0u64);
    for _ in 0..100 {
        let v = next_json(&mut ws).await;
        match v["type"].as_str() {
            Some("subscribed" | "unsubscribed") => acted += 1,
            Some("error") if v["reason"].as_str().unwrap().starts_with("rate_limited") => {
                limited += 1
            }
            _ => panic!("{v}"),
        }
    }
    // The burst of 64 at once, then 2 a second.
    let refills = 2 * start.elapsed().as_secs() + 2;
    assert!((64..=64 + refills).contains(&acted), "{acted} acted on");
    assert_eq!(acted + limited, 100);
    let counted = srv.metric("holdfast_pubsub_subscribe_rate_limited_total");
    assert_eq!(counted, limited as f64);
    // The connection goes on, and other messages are not counted against the rate.
    send(&mut ws, serde_json::json!({"op": "ping_unknown"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "error");
}

#[tokio::test(flavor = "current_thread")]
async fn control_errors_are_answered_and_limits_hold() {
    let srv = Server::start(&["--max-topics-per-connection", "2"]);
    let mut ws = connect(&srv, "/ws").await;
    for (msg, reason) in [
        ("not json", "control_not_a_json_object"),
        (r#"{"op":"dance"}"#, "unknown_op"),
        (
            r#"{"op":"subscribe","topics":["a b"]}"#,
            "topic_bad_character",
        ),
        (
            r#"{"op":"subscribe","topics":["a","b","c"]}"#,
            "too_many_topics",
        ),
        (
            r#"{"op":"publish","topic":"a","data":"x"}"#,
            "publish_disabled",
        ),
        // Named twice: refused, not read as its last `op` (an unsubscribe of "a").
        (
            r#"{"op":"subscribe","op":"unsubscribe","topics":["a"]}"#,
            "duplicate_field op",
        ),
        // Nothing to subscribe to: without the refusal no reply at all came back.
        (
            r#"{"op":"subscribe","topics":[]}"#,
            "bad_field topics (empty",
        ),
        (
            r#"{"op":"subscribe","topics":["\udc00"]}"#,
            "control_not_a_json_object (",
        ),
        // A resume point for a topic the message does not subscribe to: no longer ignored.
        (
            r#"{"op":"subscribe","topics":["a"],"resume":{"b":3}}"#,
            "bad_field resume.b (not in topics)",
        ),
    ] {
        ws.send(Message::text(msg)).await.unwrap();
        let e = next_json(&mut ws).await;
        assert_eq!(e["type"], "error", "{msg}");
        assert!(
            e["reason"].as_str().unwrap().starts_with(reason),
            "{msg}: {e}"
        );
    }
    // The limit counts topics already held.
    send(
        &mut ws,
        serde_json::json!({"op": "subscribe", "topics": ["a", "b"]}),
    )
    .await;
    next_json(&mut ws).await;
    next_json(&mut ws).await;
    send(
        &mut ws,
        serde_json::json!({"op": "subscribe", "topics": ["c"]}),
    )
    .await;
    assert!(next_json(&mut ws).await["reason"]
        .as_str()
        .unwrap()
        .starts_with("too_many_topics"));
    ws.send(Message::binary(vec![1, 2])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");
    // The connection still works after all that.
    pub_text(&srv, "a", "still here");
    assert_eq!(next_json(&mut ws).await["data"], "still here");
    assert_eq!(srv.metric("holdfast_pubsub_control_errors_total"), 11.0);
    // A bad subscription at the handshake is a 400 with the reason.
    let (_, head) = support::raw_request(
        srv.addr,
        &support::upgrade_request("/ws?topics=ok,bad!", "13"),
    );
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(
        srv.metric("holdfast_rejected_total{limit=\"bad_subscription\"}"),
        1.0
    );
    // Admin API errors.
    assert_eq!(publish(srv.admin, "bad!", b"x", false).0, 400);
    assert_eq!(
        publish(srv.admin, "t", &[0xff, 0xfe], false).0,
        400,
        "text must be UTF-8"
    );
    assert_eq!(srv.admin("GET", "/publish").0, 405);
    // Echo connections are untouched by pub/sub.
    let mut echo = connect(&srv, "/echo").await;
    echo.send(Message::text("{\"op\":\"subscribe\"}"))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut echo).await["op"],
        "subscribe",
        "echoed, not parsed"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn clients_publish_when_allowed() {
    let srv = Server::start(&["--client-publish"]);
    let mut a = connect(&srv, "/ws?topics=chat").await;
    let mut b = connect(&srv, "/ws?topics=chat").await;
    next_json(&mut a).await;
    next_json(&mut b).await;
    send(
        &mut a,
        serde_json::json!({"op": "publish", "topic": "chat", "data": "hi"}),
    )
    .await;
    // `a` gets its ack and its own message (it subscribes too), in either order.
    let mut got = vec![
        next_json(&mut a).await["type"].clone(),
        next_json(&mut a).await["type"].clone(),
    ];
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, ["message", "published"]);
    let m = next_json(&mut b).await;
    assert_eq!(
        (m["data"].as_str(), m["seq"].as_u64()),
        (Some("hi"), Some(1))
    );
    assert_eq!(srv.metric("holdfast_pubsub_client_publishes_total"), 1.0);
}

/// Write system calls (`/proc/PID/task/TID/io` `syscw`) made so far by the server's thread
/// named `name`.
fn thread_writes(srv: &Server, name: &str) -> u64 {
    let pid = srv.child.id();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let io = std::fs::read_to_string(dir.join("io")).unwrap();
            return io
                .lines()
                .find_map(|l| l.strip_prefix("syscw:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        }
    }
    panic!("no thread {name} in {pid}");
}

/// A client's publish to subscribers on its own worker wakes that worker without a system
/// call: the worker is awake, so the wake is noted and taken before it next waits
/// (`io::waker`: no eventfd write, no completion). 40 publishes, each waited for at the
/// subscriber so that none shares another's wake, cost the worker thread no write; before,
/// each cost one. The admin API's publishes, from another thread, still write and arrive.
#[tokio::test(flavor = "current_thread")]
async fn a_publish_to_subscribers_on_its_own_worker_costs_it_no_write() {
    let srv = Server::start(&["--client-publish", "--workers", "1"]);
    let mut sub = connect(&srv, "/ws?topics=chat").await;
    assert_eq!(next_json(&mut sub).await["type"], "subscribed");
    let mut publisher = connect(&srv, "/ws").await;
    let before = thread_writes(&srv, "holdfast-w0");
    for i in 0..40 {
        let data = format!("m{i}");
        send(
            &mut publisher,
            serde_json::json!({"op": "publish", "topic": "chat", "data": data}),
        )
        .await;
        let m = next_json(&mut sub).await;
        assert_eq!(m["data"].as_str(), Some(data.as_str()));
        assert_eq!(next_json(&mut publisher).await["type"], "published");
    }
    let own = thread_writes(&srv, "holdfast-w0") - before;
    assert!(
        own < 5,
        "the worker wrote {own} times for 40 of its own publishes"
    );
    // From the admin API's thread a wake is written, and taken.
    for i in 0..3 {
        let data = format!("admin{i}");
        pub_text(&srv, "chat", &data);
        assert_eq!(
            next_json(&mut sub).await["data"].as_str(),
            Some(data.as_str())
        );
    }
}

/// Read deliveries of `topic` from a raw socket until every number in 1..=n is accounted
/// for by a message or a gap; returns (messages, gaps). Asserts order and no duplicates.
fn account(raw: &mut Raw, n: u64) -> (u64, Vec<(u64, u64)>) {
    let (mut next_seq, mut messages, mut gaps) = (1u64, 0u64, Vec::new());
    while next_seq <= n {
        match raw.recv_non_ping() {
            Got::Binary(b) => {
                let l = b[0] as usize;
                let seq = u64::from_be_bytes(b[1 + l..9 + l].try_into().unwrap());
                assert_eq!(seq, next_seq, "in order, no duplicates");
                next_seq += 1;
                messages += 1;
            }
            Got::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "gap" {
                    let (a, b) = (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
                    assert_eq!(a, next_seq, "a gap starts where delivery stopped");
                    next_seq = b + 1;
                    gaps.push((a, b));
                }
            }
            other => panic!("unexpected {other:?} at seq {next_seq}"),
        }
    }
    (messages, gaps)
}

#[test]
fn slow_consumers_are_dropped_with_a_gap_or_closed_by_topic_policy() {
    let srv = Server::start(&[
        "--max-outbound",
        "65536",
        "--max-message",
        "32768",
        "--sndbuf",
        "4096",
        "--topic-policy",
        "strict.*=close",
    ]);
    // Two subscribers that do not read while 1,000 × 1 KiB are published (~1 MB, far past
    // the 64 KiB cap plus what the sockets hold).
    let mut lax = Raw::connect_to(srv.addr, "/ws?topics=lax");
    let mut strict = Raw::connect_to(srv.addr, "/ws?topics=strict.a");
    for raw in [&mut lax, &mut strict] {
        raw.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(matches!(raw.recv_non_ping(), Got::Text(t) if t.contains("subscribed")));
    }
    let payload = vec![b'x'; 1024];
    let n = 1000u64;
    for _ in 0..n {
        assert_eq!(publish(srv.admin, "lax", &payload, true).0, 200);
        assert_eq!(publish(srv.admin, "strict.a", &payload, true).0, 200);
    }
    srv.wait_metric("holdfast_pubsub_slow_consumer_closes_total", |v| v == 1.0);
    // drop: every number is a message or inside a gap, in order; the connection stays.
    let (messages, gaps) = account(&mut lax, n);
    assert!(
        !gaps.is_empty(),
        "the cap was crossed, so something was dropped"
    );
    let dropped: u64 = gaps.iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(messages + dropped, n);
    assert_eq!(srv.metric("holdfast_pubsub_dropped_total"), dropped as f64);
    assert!(srv.metric("holdfast_pubsub_slow_consumer_drops_total") >= 1.0);
    assert_eq!(publish(srv.admin, "lax", b"live", true).0, 200);
    match lax.recv_non_ping() {
        Got::Binary(b) => assert_eq!(&b[b.len() - 4..], b"live"),
        other => panic!("expected the live message, got {other:?}"),
    }
    // close: deliveries in order, then a 1008.
    let mut seen = 0u64;
    loop {
        match strict.recv_non_ping() {
            Got::Binary(b) => {
                let l = b[0] as usize;
                seen += 1;
                assert_eq!(
                    u64::from_be_bytes(b[1 + l..9 + l].try_into().unwrap()),
                    seen
                );
            }
            Got::Close(code, reason) => {
                assert_eq!(code, Some(1008));
                assert_eq!(reason, "slow consumer");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen < n, "closed before everything was delivered ({seen})");
    assert_eq!(
        srv.metric("holdfast_closes_total{code=\"1008\",side=\"server\"}"),
        1.0
    );
}

#[test]
fn a_publish_no_subscriber_could_be_sent_is_refused_with_413_and_subscribers_stay() {
    // Issue 13 item 7: queues count real frame bytes (JSON escaping included), and a message
    // whose frame is larger than a connection may queue is refused at publish time instead
    // of closing every subscriber as a slow consumer.
    let srv = Server::start(&["--max-outbound", "65536", "--max-message", "32768"]);
    let mut sub = raw_subscriber(&srv, "big");
    // 20,000 control characters: 20 KB in, 120 KB as a JSON string.
    let nasty = "\u{1}".repeat(20_000);
    let (status, body) = support::publish(srv.admin, "big", nasty.as_bytes(), false);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("message_too_large_to_deliver"), "{body}");
    // The same message to a user: refused alike, not skipped by each of its connections.
    let head = "POST /publish?user=ann HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n";
    let (status, body) = support::request(srv.admin, head, nasty.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("message_too_large_to_deliver"), "{body}");
    // Nothing was numbered, and the subscriber still gets the next message.
    first_message_arrives(&srv, &mut sub, "big", "fine");
}

/// A raw `/ws` subscriber of `topic`, its `subscribed` reply read.
fn raw_subscriber(srv: &Server, topic: &str) -> Raw {
    let mut sub = Raw::connect_to(srv.addr, &format!("/ws?topics={topic}"));
    sub.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(matches!(sub.recv_non_ping(), Got::Text(t) if t.contains("subscribed")));
    sub
}

/// `text` published to `topic` is numbered 1 (nothing before it was) and reaches `sub`.
fn first_message_arrives(srv: &Server, sub: &mut Raw, topic: &str, text: &str) {
    let (status, body) = support::publish(srv.admin, topic, text.as_bytes(), false);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"seq\":1"), "{body}");
    match sub.recv_non_ping() {
        Got::Text(t) => assert!(t.contains("\"seq\":1") && t.contains(text), "{t}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_publish_larger_than_a_worker_queue_holds_is_refused_as_too_large_not_overloaded() {
    // It was answered 503 `overloaded … retry later` for ever: no retry could ever queue it.
    let srv = Server::start(&["--publish-queue-bytes", "16KiB", "--max-message", "32768"]);
    let mut sub = raw_subscriber(&srv, "q");
    let big = vec![b'x'; 20_000];
    let (status, body) = support::publish(srv.admin, "q", &big, true);
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("message_too_large_to_deliver") && body.contains("--publish-queue-bytes"),
        "{body}"
    );
    first_message_arrives(&srv, &mut sub, "q", "fits");
}

/// The `subscribed` reply for a raw client (skipping pings).
fn ack(raw: &mut Raw) -> Value {
    match raw.recv_non_ping() {
        Got::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// The sequence number of the next text delivery.
fn next_seq(raw: &mut Raw) -> u64 {
    let v = ack(raw);
    assert_eq!(v["type"], "message", "{v}");
    v["seq"].as_u64().unwrap()
}

#[test]
fn resume_carries_the_topics_epoch_and_says_whether_it_recovered() {
    // Issue 13 item 16: numbering starts again at 1 after a restart, and a client resuming
    // from beyond the newest number got lower numbers with no signal.
    let srv = Server::start(&[]);
    for i in 0..3 {
        pub_text(&srv, "t", &format!("m{i}"));
    }
    let mut plain = Raw::connect_to(srv.addr, "/ws?topics=t");
    let a = ack(&mut plain);
    let epoch = a["epoch"].as_str().unwrap().to_string();
    assert_eq!((a["seq"].as_u64(), epoch.len()), (Some(3), 16), "{a}");
    assert!(a.get("recovered").is_none(), "not resuming: {a}");

    // In the same epoch: recovered, the missed messages replayed.
    let mut back = Raw::connect_to(srv.addr, &format!("/ws?topics=t&resume=t:1@{epoch}"));
    let a = ack(&mut back);
    assert_eq!(a["recovered"], true, "{a}");
    assert_eq!((next_seq(&mut back), next_seq(&mut back)), (2, 3));

    // The same through a control message.
    let mut ctl = Raw::connect_to(srv.addr, "/ws");
    let sub = serde_json::json!({"op": "subscribe", "topics": ["t"],
        "resume": {"t": {"seq": 2, "epoch": epoch}}});
    ctl.send_frame(true, holdfast::ws::OpCode::Text, sub.to_string().as_bytes());
    assert_eq!(ack(&mut ctl)["recovered"], true);
    assert_eq!(next_seq(&mut ctl), 3);

    // Beyond the newest number: not recovered, nothing replayed; live messages follow.
    let mut ahead = Raw::connect_to(srv.addr, &format!("/ws?topics=t&resume=t:9@{epoch}"));
    let a = ack(&mut ahead);
    assert_eq!(
        (a["recovered"].as_bool(), a["seq"].as_u64()),
        (Some(false), Some(3))
    );
    pub_text(&srv, "t", "m3");
    assert_eq!(next_seq(&mut ahead), 4);
    drop(srv);

    // A new process numbers from 1 in a new epoch: an old position is not recovered, and
    // the client is told so instead of being handed lower numbers.
    let srv = Server::start(&[]);
    pub_text(&srv, "t", "new");
    let mut again = Raw::connect_to(srv.addr, &format!("/ws?topics=t&resume=t:3@{epoch}"));
    let a = ack(&mut again);
    assert_eq!(a["recovered"], false, "{a}");
    assert_ne!(a["epoch"].as_str().unwrap(), epoch);
    pub_text(&srv, "t", "newer");
    assert_eq!(
        next_seq(&mut again),
        2,
        "live after the reset point, nothing replayed"
    );
    assert_eq!(
        srv.metric("holdfast_pubsub_resumes_total{recovered=\"false\"}"),
        1.0
    );
}

#[test]
fn idle_topics_expire_and_a_resume_across_that_is_not_recovered() {
    // Issue 13 item 6: topics with history never expired.
    let srv = Server::start(&["--topic-idle-expiry", "1"]);
    pub_text(&srv, "brief", "x");
    let mut s = Raw::connect_to(srv.addr, "/ws?topics=brief");
    let epoch = ack(&mut s)["epoch"].as_str().unwrap().to_string();
    drop(s); // its last subscriber leaves: idle from now
    srv.wait_metric("holdfast_pubsub_topics_expired_total", |v| v >= 1.0);
    assert_eq!(srv.metric("holdfast_pubsub_topics"), 0.0);
    assert_eq!(srv.metric("holdfast_pubsub_replay_bytes"), 0.0);
    let mut back = Raw::connect_to(
        srv.addr,
        &format!("/ws?topics=brief&resume=brief:1@{epoch}"),
    );
    let a = ack(&mut back);
    assert_eq!(
        (a["recovered"].as_bool(), a["seq"].as_u64()),
        (Some(false), Some(0))
    );
}

#[test]
fn the_replay_budget_bounds_all_windows_together() {
    // Issue 13 item 6: max_topics × replay_bytes was the only bound (100 GiB by default).
    let srv = Server::start(&["--replay-budget", "65536"]);
    let body = vec![b'x'; 1000];
    for i in 0..200 {
        let (status, _) = publish(srv.admin, &format!("t{}", i % 50), &body, true);
        assert_eq!(status, 200);
    }
    let held = srv.metric("holdfast_pubsub_replay_bytes");
    assert!(held <= 65536.0 && held > 60_000.0, "held {held}");
    assert!(srv.metric("holdfast_pubsub_replay_evicted_total") > 100.0);
    assert_eq!(
        srv.metric("holdfast_memory_used_bytes{kind=\"replay\"}"),
        held,
        "counted in the memory budget"
    );
}

/// Messages that pile up while the worker is busy are offered in runs, recipient by
/// recipient (`Worker::offer_run`): 600 publishes pipelined in one write, in chunks that
/// switch between two topics whose subscribers overlap, so that one read queues them all
/// before any is offered. Every subscriber gets exactly its topics' messages, each once,
/// in publish order across both topics, numbered 1, 2, … per topic.
#[tokio::test(flavor = "current_thread")]
async fn messages_that_pile_up_reach_every_subscriber_once_in_publish_order() {
    let srv = Server::start(&["--client-publish", "--workers", "1"]);
    let mut subs: Vec<(Ws, Vec<&str>)> = Vec::new();
    for i in 0..60 {
        let topics = match i % 3 {
            0 => vec!["a"],
            1 => vec!["b"],
            _ => vec!["a", "b"],
        };
        let mut ws = connect(&srv, &format!("/ws?topics={}", topics.join(","))).await;
        for _ in &topics {
            assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        }
        subs.push((ws, topics));
    }
    wait_presence(&srv, "a", |p| p.iter().sum::<u64>() == 40);
    wait_presence(&srv, "b", |p| p.iter().sum::<u64>() == 40);
    // Runs of 1 to 13 messages per topic, switching topics between runs.
    let order = support::runs_over_two_topics(600, 7);
    let count = |t: &str| order.iter().filter(|o| o.0 == t).count() as u64;
    let mut publisher = connect(&srv, "/ws").await;
    for (topic, _, data) in &order {
        let op = serde_json::json!({"op": "publish", "topic": topic, "data": data});
        publisher.feed(Message::text(op.to_string())).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for (ws, topics) in &mut subs {
        for (topic, seq, data) in order.iter().filter(|(t, _, _)| topics.contains(t)) {
            let m = next_json(ws).await;
            assert_eq!(
                (m["topic"].as_str(), m["seq"].as_u64(), m["data"].as_str()),
                (Some(*topic), Some(*seq), Some(data.as_str())),
                "{topics:?}"
            );
        }
    }
    let want = ((count("a") + count("b")) * 40) as f64;
    let delivered = srv.wait_metric("holdfast_pubsub_deliveries_total", |v| v >= want);
    assert_eq!(delivered, want, "each delivery made once");
}

/// One worker sending each subscriber at most once a second (`--fanout-send-interval 1s`:
/// a hundred subscribers spread their phases over the whole interval), with `extra`.
fn spaced_server(extra: &[&str]) -> Server {
    let mut args = vec![
        "--workers",
        "1",
        "--max-connections",
        "1000",
        "--fanout-send-interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `n` subscribers of `topic`, each with the sequence number its subscription was answered
/// with, once the hub counts them all.
async fn subscribers(srv: &Server, topic: &str, n: usize) -> (Vec<Ws>, Vec<u64>) {
    let mut subs = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = connect(srv, &format!("/ws?topics={topic}")).await;
        let ack = next_json(&mut ws).await;
        assert_eq!(ack["type"], "subscribed");
        last.push(ack["seq"].as_u64().unwrap());
        subs.push(ws);
    }
    wait_presence(srv, topic, |p| p.iter().sum::<u64>() == n as u64);
    (subs, last)
}

/// Publish text `data` to `topic` through the admin API (blocking); the number it was given.
fn published(admin: std::net::SocketAddr, topic: &str, data: &str) -> u64 {
    let (status, body) = publish(admin, topic, data.as_bytes(), false);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// Every subscriber's next messages are the ones numbered `sent`, the i-th carrying
/// `data(i)`, each numbered right after the one before (`last`, kept up to date).
async fn in_order(subs: &mut [Ws], last: &mut [u64], sent: &[u64], data: impl Fn(usize) -> String) {
    for (ws, last) in subs.iter_mut().zip(last) {
        for (i, seq) in sent.iter().enumerate() {
            let m = next_json(ws).await;
            assert_eq!(
                (m["type"].as_str(), m["seq"].as_u64(), m["data"].as_str()),
                (Some("message"), Some(*seq), Some(data(i).as_str())),
            );
            assert_eq!(*seq, *last + 1, "numbered without a hole");
            *last = *seq;
        }
    }
}

/// With spaced sends, a message to an idle subscriber (nothing sent since its last phase)
/// goes at once, and that send holds the subscriber: the message that follows within the
/// interval waits for its phase. Before, the first message after a quiet spell waited for
/// the phase too (half an interval on average).
#[tokio::test]
async fn an_idle_subscriber_is_sent_to_at_once_and_what_follows_waits_for_its_phase() {
    // A phase step per 10 ms of the interval and one subscriber per step: their phases
    // cover the whole interval.
    const SUBS: usize = 100;
    let srv = spaced_server(&[]);
    let (mut subs, mut last) = subscribers(&srv, "t", SUBS).await;
    // Each subscription's answer held its subscriber until its phase; once every hold has
    // come due with nothing to send, every subscriber is idle.
    srv.wait_metric("holdfast_fanout_spaced_sends_total", |v| v >= SUBS as f64);
    let deferred = "holdfast_fanout_deferred_deliveries_total";
    let before = srv.metric(deferred);
    // Reads one subscriber after another: a subscriber's time is when its message had
    // arrived or the one before it was read, whichever is later.
    async fn arrivals(subs: &mut [Ws], last: &mut [u64], seq: u64, data: &str) -> Vec<Duration> {
        let t = std::time::Instant::now();
        let mut at = Vec::with_capacity(subs.len());
        for (ws, last) in subs.iter_mut().zip(last) {
            let m = next_json(ws).await;
            assert_eq!(
                (m["seq"].as_u64(), m["data"].as_str()),
                (Some(seq), Some(data))
            );
            assert_eq!(seq, *last + 1, "numbered without a hole");
            *last = seq;
            at.push(t.elapsed());
        }
        at.sort();
        at
    }
    let admin = srv.admin;
    let seq = tokio::task::spawn_blocking(move || published(admin, "t", "m0"))
        .await
        .unwrap();
    let first = arrivals(&mut subs, &mut last, seq, "m0").await;
    assert_eq!(
        srv.metric(deferred),
        before,
        "a message to idle subscribers waited for their phases"
    );
    let seq = tokio::task::spawn_blocking(move || published(admin, "t", "m1"))
        .await
        .unwrap();
    let second = arrivals(&mut subs, &mut last, seq, "m1").await;
    let median = |v: &[Duration]| v[v.len() / 2];
    // Held since the first: each waits for its phase, spread over the second (a phase that
    // came while the test read the first can find its subscriber idle again).
    assert!(
        srv.metric(deferred) - before >= (SUBS / 2) as f64,
        "the message that followed was not held for most subscribers"
    );
    assert!(
        median(&first) < Duration::from_millis(200) && median(&second) > Duration::from_millis(200),
        "median arrival {:?} for the first message, {:?} for the one that followed",
        median(&first),
        median(&second)
    );
    assert!(
        second[SUBS - 1] < Duration::from_secs(2),
        "a held message waited more than the interval: {:?}",
        second[SUBS - 1]
    );
}

/// With `--fanout-join`, messages published while a turn to many subscribers goes out join
/// it (the subscribers not yet sent to take them in the same send). Whatever the
/// interleaving, every subscriber gets every message once, in publish order, numbered
/// without a hole — and the server reports that turns did take messages in.
#[tokio::test]
async fn messages_published_while_a_turn_goes_out_join_it_in_order() {
    const SUBS: usize = 1000;
    const PER_BURST: usize = 150;
    let srv = Server::start(&[
        "--workers",
        "1",
        "--max-connections",
        "4000",
        "--fanout-join",
    ]);
    let (mut subs, mut last) = subscribers(&srv, "t", SUBS).await;
    let joined = "holdfast_fanout_turns_joined_total";
    // Each burst is a stream of publishes on the admin API's thread while the worker sends
    // the earlier ones to a thousand sockets; at most ten bursts for a turn to take one in.
    for burst in 0..10 {
        let admin = srv.admin;
        let sent = tokio::task::spawn_blocking(move || {
            (0..PER_BURST)
                .map(|i| published(admin, "t", &format!("{burst}-{i}")))
                .collect::<Vec<u64>>()
        })
        .await
        .unwrap();
        in_order(&mut subs, &mut last, &sent, |i| format!("{burst}-{i}")).await;
        if srv.metric(joined) > 0.0 {
            let want = ((burst + 1) * PER_BURST * SUBS) as f64;
            let delivered = srv.wait_metric("holdfast_pubsub_deliveries_total", |v| v >= want);
            assert_eq!(delivered, want, "each delivery made once");
            return;
        }
    }
    panic!("no turn took in a message published while it went out, in ten bursts");
}

/// The next message that is not a presence event.
async fn next_unless_presence(ws: &mut Ws) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["type"] != "presence" {
            return m;
        }
    }
}

/// With `--fanout-send-interval`, messages for a held subscriber wait for its phase in a
/// run kept once for all of them (`reactor::deferred`), not in its queue; whatever reaches
/// it before the phase comes after them: its own input's answer, a presence event, the
/// close of a drain. Every subscriber sees each message once, before what follows it.
#[tokio::test]
async fn messages_deferred_for_held_subscribers_come_before_what_follows_them() {
    const SUBS: usize = 100;
    let srv = spaced_server(&[
        "--presence-events",
        "--drain-window",
        "0.1",
        "--drain-grace",
        "5",
    ]);
    let topic = "presence:room";
    let (mut subs, mut last) = subscribers(&srv, topic, SUBS).await;
    let deferred = "holdfast_fanout_deferred_deliveries_total";
    // Each message waits for every subscriber's phase (up to a second): whatever reaches a
    // subscriber before then must follow it.
    let round = |name: &'static str| {
        let admin = srv.admin;
        let before = srv.metric(deferred);
        let seq = published(admin, topic, name);
        srv.wait_metric(deferred, |v| v > before);
        seq
    };
    let s0 = {
        let admin = srv.admin;
        tokio::task::spawn_blocking(move || published(admin, topic, "m0"))
            .await
            .unwrap()
    };
    for (ws, last) in subs.iter_mut().zip(&mut last) {
        let m = next_unless_presence(ws).await;
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_str()),
            (Some(s0), Some("m0"))
        );
        *last = s0;
    }
    // Input ends a hold: the answer to it comes after the messages deferred before it.
    let s1 = round("m1");
    for ws in &mut subs {
        send(ws, serde_json::json!({"op": "no-such-op"})).await;
    }
    for ws in &mut subs {
        let m = next_json(ws).await;
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_str()),
            (Some(s1), Some("m1")),
            "{m}"
        );
        assert_eq!(next_json(ws).await["type"], "error", "the answer after m1");
    }
    // A presence event to every subscriber follows the messages deferred before it.
    let s2 = round("m2");
    let _joiner = connect(&srv, &format!("/ws?topics={topic}")).await;
    for ws in &mut subs {
        let m = next_json(ws).await;
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_str()),
            (Some(s2), Some("m2"))
        );
        let e = next_json(ws).await;
        assert_eq!(
            (e["type"].as_str(), e["event"].as_str()),
            (Some("presence"), Some("join"))
        );
    }
    // A drain closes each subscriber after the messages deferred for it.
    let s3 = round("m3");
    assert_eq!(srv.admin("POST", "/drain").0, 202);
    for ws in &mut subs {
        let m = next_json(ws).await;
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_str()),
            (Some(s3), Some("m3"))
        );
    }
    assert!(srv.metric(deferred) >= 3.0);
}

/// What spaced sends defer for held subscribers counts under the memory budget: a publisher
/// whose messages would wait in runs beyond the budget is refused before anything is
/// numbered, nobody is closed for what waits (no connection holds it), what was published
/// before goes out whole and in order, and the runs' bytes go once their subscribers took
/// them.
#[tokio::test]
async fn messages_deferred_for_held_subscribers_count_under_the_memory_budget() {
    const TOPICS: usize = 20;
    const BIG: usize = 768 << 10;
    let srv = spaced_server(&["--memory-budget", "16MiB"]);
    // A subscriber per topic: each run waits for one subscriber, and each takes a
    // twentieth of what waits, so what waits is no one connection's queue.
    let (mut subs, mut last) = (Vec::new(), Vec::new());
    for t in 0..TOPICS {
        let (ws, seq) = subscribers(&srv, &format!("big-{t}"), 1).await;
        subs.extend(ws);
        last.extend(seq);
    }
    let admin = srv.admin;
    // A small message to each, which goes at once (they are idle) and holds each until its
    // phase: what follows within the interval waits in runs.
    for t in 0..TOPICS {
        let seq = tokio::task::spawn_blocking(move || published(admin, &format!("big-{t}"), "s"))
            .await
            .unwrap();
        in_order(&mut subs[t..=t], &mut last[t..=t], &[seq], |_| "s".into()).await;
    }
    // One 768 KiB message every 20 ms, round the topics: one interval's runs would hold
    // ~37 MiB. Each topic's first comes within 380 ms, mostly before its subscriber's phase,
    // and the next 400 ms later, before the phase after (at most two of them, 1.5 MiB, in a
    // phase's send: --max-outbound is 2 MiB). Bounded: at most 150 publishes (3 s).
    let publisher = tokio::task::spawn_blocking(move || {
        let body = vec![b'x'; BIG];
        let mut sent = vec![Vec::new(); TOPICS];
        for i in 0..150 {
            let topic = format!("big-{}", i % TOPICS);
            let (status, answer) = publish(admin, &topic, &body, false);
            match status {
                200 => sent[i % TOPICS].push(
                    serde_json::from_str::<Value>(&answer).unwrap()["seq"]
                        .as_u64()
                        .unwrap(),
                ),
                503 => return (sent, Some(answer)),
                other => panic!("publish answered {other}: {answer}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (sent, None)
    });
    let deferred = "holdfast_memory_used_bytes{kind=\"deferred\"}";
    let held = srv.wait_metric(deferred, |v| v >= BIG as f64);
    let (sent, refused) = publisher.await.unwrap();
    let accepted: usize = sent.iter().map(Vec::len).sum();
    let refused = refused.unwrap_or_else(|| {
        panic!("{accepted} publishes of 768 KiB accepted, none refused (deferred seen: {held})")
    });
    assert!(refused.contains("memory budget"), "{refused}");
    assert!(srv.metric("holdfast_memory_refused_total{kind=\"publish\"}") >= 1.0);
    // Refused before one interval's runs reached ~37 MiB: within a tick or two of the
    // budget (16 MiB; 90% refuses).
    assert!(accepted < 40, "{accepted} accepted before the refusal");
    for (t, seqs) in sent.iter().enumerate() {
        in_order(&mut subs[t..=t], &mut last[t..=t], seqs, |_| {
            "x".repeat(BIG)
        })
        .await;
    }
    srv.wait_metric(deferred, |v| v == 0.0);
    assert_eq!(
        srv.metric("holdfast_memory_shed_total{held=\"outbound\"}"),
        0.0
    );
    // Under the budget again: publishes are taken.
    let (status, answer) =
        tokio::task::spawn_blocking(move || publish(admin, "big-0", b"small", false))
            .await
            .unwrap();
    assert_eq!(status, 200, "{answer}");
}

/// With `--fanout-send-interval`, a subscriber's send waits for its phase after the last one
/// completed and carries everything published meanwhile: every subscriber still gets every
/// message once, in order and numbered without a hole, in a few sends instead of one per
/// message; and input ends a hold, so an echo on the same server is answered at once.
#[tokio::test]
async fn spaced_sends_carry_what_was_published_meanwhile_and_never_hold_an_echo() {
    const SUBS: usize = 200;
    const MSGS: usize = 40;
    const INTERVAL: Duration = Duration::from_secs(1);
    let srv = spaced_server(&[]);
    let (mut subs, mut last) = subscribers(&srv, "t", SUBS).await;
    // Histograms reach the metrics once a tick: read them after two more ticks.
    let ticks = "holdfast_worker_ticks_total{worker=\"0\"}";
    let settled = |srv: &Server| {
        let t = srv.metric(ticks);
        srv.wait_metric(ticks, |v| v >= t + 2.0);
    };
    let sends = "holdfast_send_queue_bytes_count";
    settled(&srv);
    let before = srv.metric(sends);
    let admin = srv.admin;
    let started = std::time::Instant::now();
    let sent = tokio::task::spawn_blocking(move || {
        (0..MSGS)
            .map(|i| {
                // A publish every 5 ms: sent as they come, that is a send per message.
                std::thread::sleep(Duration::from_millis(5));
                published(admin, "t", &format!("m{i}"))
            })
            .collect::<Vec<u64>>()
    })
    .await
    .unwrap();
    let publishing = started.elapsed();
    in_order(&mut subs, &mut last, &sent, |i| format!("m{i}")).await;
    let delivered = srv.wait_metric("holdfast_pubsub_deliveries_total", |v| {
        v >= (SUBS * MSGS) as f64
    });
    assert_eq!(delivered, (SUBS * MSGS) as f64, "each delivery made once");
    // Each subscriber sends at once when idle, then at most once per interval: the first
    // message, then a send per interval the publishing spanned, and one for the rest.
    settled(&srv);
    let per_sub = (srv.metric(sends) - before) / SUBS as f64;
    let most = 2.0 + publishing.as_secs_f64() / INTERVAL.as_secs_f64();
    assert!(
        per_sub <= most,
        "{per_sub:.1} sends per subscriber for {MSGS} messages published in {publishing:?} \
         (at most {most:.1} with spaced sends)"
    );
    assert!(srv.metric("holdfast_fanout_spaced_sends_total") > 0.0);
    // Echo on the same worker: input ends the hold its last reply's send started, so twenty
    // round trips do not wait twenty phases (a held reply would wait up to a second).
    let mut echo = connect(&srv, "/echo").await;
    let round_trips = async {
        for i in 0..20 {
            echo.send(Message::text(format!("e{i}"))).await.unwrap();
            match echo.next().await {
                Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("e{i}")),
                other => panic!("echo {i}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(INTERVAL * 5, round_trips)
        .await
        .expect("twenty echoes took five intervals: replies were held");
    // A backlog larger than one send (each 100 KB frame is a send of its own) drains at
    // once: only a send that leaves nothing queued holds the next.
    let big = "x".repeat(100_000);
    let admin = srv.admin;
    let payload = big.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..8 {
            published(admin, "t", &payload);
        }
    })
    .await
    .unwrap();
    let ws = &mut subs[0];
    let drained = async {
        for _ in 0..8 {
            let m = next_json(ws).await;
            assert_eq!(m["data"].as_str().map(str::len), Some(big.len()));
        }
    };
    tokio::time::timeout(INTERVAL * 4, drained)
        .await
        .expect("eight large frames took four intervals: a backlog waited a phase per send");
}
