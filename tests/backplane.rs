//! The Redis backplane end to end: a real `redis-server` (and a real three-master Redis
//! Cluster), three real Holdfast nodes on loopback, real WebSocket clients. Every message
//! once, in order, with the same number on every node; resume on another node after a
//! drain; users and presence across nodes; the broker killed and restarted mid-stream.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use holdfast::ws::OpCode;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::redis::{cli, Cluster, Redis};
use support::{publish, Got, Raw, Server, KEY};

const T: Duration = Duration::from_secs(10);
const HMAC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/keys/hmac.secret"
);

fn node(url: &str, name: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--backplane", url, "--node-id", name];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn nodes(url: &str, extra: &[&str]) -> Vec<Server> {
    ["A", "B", "C"]
        .iter()
        .map(|n| node(url, n, extra))
        .collect()
}

fn text(v: &Value) -> String {
    v.to_string()
}

/// The next text message as JSON (pings skipped), within the read timeout.
fn next(ws: &mut Raw) -> Value {
    match ws.recv_non_ping() {
        Got::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Connect to `addr` at `path` (a `/ws?…` query) and wait for the `subscribed` reply of
/// each topic; returns the client and the replies.
fn subscriber(addr: SocketAddr, path: &str, topics: usize, headers: &str) -> (Raw, Vec<Value>) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    let (s, head) = support::raw_request(addr, &req);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.set_read_timeout(Some(T)).unwrap();
    let mut ws = Raw::from_upgraded(s);
    let replies = (0..topics)
        .map(|_| {
            let v = next(&mut ws);
            assert_eq!(v["type"], "subscribed", "{v}");
            v
        })
        .collect();
    (ws, replies)
}

/// The next message that is not a presence event: it must be a direct message `data`.
fn direct(ws: &mut Raw, data: &str) {
    let v = loop {
        let v = next(ws);
        if v["type"] != "presence" {
            break v;
        }
    };
    assert_eq!(
        (v["type"].as_str(), v["data"].as_str()),
        (Some("direct"), Some(data)),
        "{v}"
    );
}

/// `POST /publish?user=U` on `admin` with `body`; the nodes that hold U.
fn to_user(admin: SocketAddr, user: &str, body: &str) -> u64 {
    let head = format!(
        "POST /publish?user={user} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
    );
    let (s, reply) = support::request(admin, &head, body.as_bytes());
    assert_eq!(s, 200, "{reply}");
    serde_json::from_str::<Value>(&reply).unwrap()["nodes"]
        .as_u64()
        .unwrap()
}

/// Read messages of `topic` until number `upto`, checking each is the next one; returns
/// the numbers seen (which must be `from..=upto`).
fn read_through(ws: &mut Raw, topic: &str, from: u64, upto: u64) {
    let mut want = from;
    while want <= upto {
        let v = next(ws);
        if v["type"] != "message" || v["topic"] != topic {
            continue;
        }
        let seq = v["seq"].as_u64().unwrap();
        assert_eq!(seq, want, "out of order or duplicated: {v}");
        assert_eq!(v["data"], format!("m{seq}"), "{v}");
        want += 1;
    }
}

fn publish_ok(admin: SocketAddr, topic: &str, body: &str) -> Value {
    let (status, reply) = publish(admin, topic, body.as_bytes(), false);
    assert_eq!(status, 200, "{reply}");
    serde_json::from_str(&reply).unwrap()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_nodes_deliver_every_message_once_in_order_with_the_same_numbers() {
    let redis = Redis::start();
    let n = nodes(&redis.url(), &["--client-publish"]);
    let mut subs = Vec::new();
    let mut epochs = Vec::new();
    for node in &n[1..] {
        for _ in 0..3 {
            let (ws, r) = subscriber(node.addr, "/ws?topics=fleet", 1, "");
            assert_eq!(r[0]["seq"], 0);
            epochs.push(r[0]["epoch"].as_str().unwrap().to_string());
            subs.push(ws);
        }
    }
    assert!(
        epochs.windows(2).all(|w| w[0] == w[1]),
        "one epoch: {epochs:?}"
    );
    for i in 1..=200u64 {
        let p = publish_ok(n[0].admin, "fleet", &format!("m{i}"));
        assert_eq!(p["seq"], i, "{p}");
        assert_eq!(p["epoch"], epochs[0].as_str());
    }
    for ws in &mut subs {
        read_through(ws, "fleet", 1, 200);
    }
    // A node listens only for topics it has subscribers for: A published 200 messages and
    // received none of them; B and C received each once.
    assert_eq!(n[0].metric("holdfast_backplane_received_total"), 0.0);
    for node in &n[1..] {
        assert_eq!(node.metric("holdfast_backplane_received_total"), 200.0);
        assert_eq!(node.metric("holdfast_backplane_up{engine=\"redis\"}"), 1.0);
    }
    // A late subscriber on the publishing node resumes from the shared history.
    let (mut late, r) = subscriber(
        n[0].addr,
        &format!("/ws?topics=fleet&resume=fleet:150@{}", epochs[0]),
        1,
        "",
    );
    assert_eq!(
        (r[0]["seq"].as_u64(), r[0]["recovered"].as_bool()),
        (Some(200), Some(true))
    );
    read_through(&mut late, "fleet", 151, 200);
    // A backend publishes straight into the broker; every node numbers it the same.
    let out = cli(
        redis.port,
        &[
            "FCALL",
            "hf_publish",
            "3",
            "hf:{fleet}:s",
            "hf:{fleet}:e",
            "hf:{fleet}:m",
            "t",
            "m201",
        ],
    );
    assert!(out.contains("201"), "{out}");
    for ws in subs.iter_mut().chain([&mut late]) {
        read_through(ws, "fleet", 201, 201);
    }
    // A client publishes on node B: its reply carries the fleet's number, and every
    // subscriber on every node gets it under that number.
    let publish = json!({"op": "publish", "topic": "fleet", "data": "m202"}).to_string();
    subs[0].send_frame(true, OpCode::Text, publish.as_bytes());
    let (mut replied, mut got) = (false, false);
    while !(replied && got) {
        let v = next(&mut subs[0]);
        match v["type"].as_str() {
            Some("published") => {
                assert_eq!(v["seq"], 202, "{v}");
                replied = true;
            }
            Some("message") => {
                assert_eq!(
                    (v["seq"].as_u64(), v["data"].as_str()),
                    (Some(202), Some("m202"))
                );
                got = true;
            }
            _ => panic!("{v}"),
        }
    }
    for ws in subs.iter_mut().skip(1).chain([&mut late]) {
        read_through(ws, "fleet", 202, 202);
    }
}

#[test]
fn the_memory_engine_serves_users_and_presence_on_one_node() {
    let srv = Server::start(&["--auth-hmac-secret-file", HMAC, "--presence-events"]);
    let (mut a, _) = subscriber(srv.addr, "/ws?topics=presence:solo", 1, &bearer("ann"));
    let (mut b, _) = subscriber(
        srv.addr,
        "/ws?topics=presence:solo&client=cli",
        1,
        &bearer("ann"),
    );
    let (_, body) = srv.admin("GET", "/presence?topic=presence:solo");
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (p["connections"].as_u64(), p["users"].as_u64()),
        (Some(2), Some(1)),
        "{p}"
    );
    assert_eq!(srv.admin("GET", "/presence?topic=plain").0, 404);
    assert_eq!(to_user(srv.admin, "ann", "hi"), 1);
    for ws in [&mut a, &mut b] {
        direct(ws, "hi");
    }
    assert_eq!(srv.admin("POST", "/users/disconnect?user=ann").0, 200);
    for ws in [&mut a, &mut b] {
        loop {
            match ws.recv_non_ping() {
                Got::Close(c, _) => break assert_eq!(c, Some(4403)),
                Got::Text(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    wait_until("presence empty", || {
        let (_, body) = srv.admin("GET", "/presence?topic=presence:solo");
        serde_json::from_str::<Value>(&body).unwrap()["connections"] == 0
    });
    assert_eq!(srv.metric("holdfast_backplane_up{engine=\"memory\"}"), 1.0);
}

#[test]
fn a_drained_nodes_clients_resume_on_another_node_with_nothing_lost() {
    let redis = Redis::start();
    let n = nodes(
        &redis.url(),
        &["--drain-window", "0.5", "--drain-grace", "2"],
    );
    let (mut ws, r) = subscriber(n[1].addr, "/ws?topics=feed", 1, "");
    let epoch = r[0]["epoch"].as_str().unwrap().to_string();
    const TOTAL: u64 = 300;
    let admin = n[0].admin;
    let publisher = std::thread::spawn(move || {
        for i in 1..=TOTAL {
            publish_ok(admin, "feed", &format!("m{i}"));
            std::thread::sleep(Duration::from_millis(3)); // a steady rate, not a burst
        }
    });
    let mut last = 0;
    let mut drained = false;
    loop {
        match ws.recv_non_ping() {
            Got::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "message" {
                    let seq = v["seq"].as_u64().unwrap();
                    assert_eq!(seq, last + 1, "{v}");
                    last = seq;
                    if seq == 40 && !drained {
                        assert_eq!(n[1].admin("POST", "/drain").0, 202);
                        drained = true;
                    }
                }
            }
            Got::Close(code, _) => {
                assert_eq!(code, Some(1012));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!((40..TOTAL).contains(&last), "drained mid-stream at {last}");
    let path = format!("/ws?topics=feed&resume=feed:{last}@{epoch}");
    let (mut again, r) = subscriber(n[2].addr, &path, 1, "");
    assert_eq!(r[0]["recovered"], true, "{}", text(&r[0]));
    read_through(&mut again, "feed", last + 1, TOTAL);
    publisher.join().unwrap();
}

fn token(user: &str) -> String {
    let secret = std::fs::read_to_string(HMAC).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"sub": user, "exp": exp,
        "channels": {"subscribe": ["presence:*", "fleet"], "publish": []}});
    let k = EncodingKey::from_secret(secret.trim().as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &k).unwrap()
}

fn bearer(user: &str) -> String {
    format!("Authorization: Bearer {}\r\n", token(user))
}

#[test]
fn users_and_presence_span_the_nodes_and_a_dead_nodes_members_expire() {
    let redis = Redis::start();
    let extra = [
        "--auth-hmac-secret-file",
        HMAC,
        "--presence-ttl",
        "2",
        "--presence-events",
    ];
    let mut n = nodes(&redis.url(), &extra);
    let room = "/ws?topics=presence:room";
    let (mut ann_a, _) = subscriber(n[0].addr, room, 1, &bearer("ann"));
    let (mut ann_b, _) = subscriber(n[1].addr, room, 1, &bearer("ann"));
    let (mut bob_b, _) = subscriber(n[1].addr, room, 1, &bearer("bob"));
    let who = |node: &Server| -> Value {
        let (s, body) = node.admin("GET", "/presence?topic=presence:room");
        assert_eq!(s, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    wait_until("three members", || who(&n[2])["connections"] == 3);
    for node in &n {
        let p = who(node);
        assert_eq!(
            (p["connections"].as_u64(), p["users"].as_u64()),
            (Some(3), Some(2)),
            "{p}"
        );
        let mut on: Vec<&str> = p["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["node"].as_str().unwrap())
            .collect();
        on.sort();
        assert_eq!(on, ["A", "B", "B"]);
    }
    // A message to ann, published on C, reaches her connections on A and B only.
    assert_eq!(to_user(n[2].admin, "ann", "hello ann"), 2);
    for ws in [&mut ann_a, &mut ann_b] {
        direct(ws, "hello ann");
    }
    // Disconnect ann everywhere: both her connections close with 4403.
    let (s, body) = n[1].admin("POST", "/users/disconnect?user=ann");
    assert_eq!(s, 200, "{body}");
    for ws in [&mut ann_a, &mut ann_b] {
        let code = loop {
            match ws.recv_non_ping() {
                Got::Close(c, _) => break c,
                Got::Text(_) => {}
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(code, Some(4403));
    }
    wait_until("ann's members gone", || who(&n[2])["connections"] == 1);
    // Node B dies without a goodbye: bob drops out of presence within the TTL.
    let (_c1, _) = subscriber(
        n[0].addr,
        &format!("{room}&client=web-1.2"),
        1,
        &bearer("cy"),
    );
    wait_until("cy listed", || who(&n[2])["connections"] == 2);
    // Bob saw members come and go (presence events), and nothing addressed to ann.
    let mut events = Vec::new();
    loop {
        let v = next(&mut bob_b);
        assert_eq!(v["type"], "presence", "bob got something else: {v}");
        let (ev, user) = (v["event"].as_str().unwrap(), v["member"]["user"].as_str());
        events.push(format!("{ev} {}", user.unwrap_or("-")));
        if ev == "join" && user == Some("cy") {
            break;
        }
    }
    // (ann's join on B may reach bob after his own subscription: events are as delivered.)
    assert!(events.iter().any(|e| e == "join bob"), "{events:?}");
    let leaves = events.iter().filter(|e| *e == "leave ann").count();
    assert_eq!(leaves, 2, "{events:?}");
    let _ = n[1].child.kill();
    let _ = n[1].child.wait();
    let killed = Instant::now();
    wait_until("bob expired", || who(&n[2])["connections"] == 1);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    let p = who(&n[0]);
    assert_eq!(p["members"][0]["node"], "A", "{p}");
    assert_eq!(p["members"][0]["client"], "web-1.2", "{p}");
    assert_eq!(p["members"][0]["user"], "cy", "{p}");
    // What a client says it is must be short and plain.
    let req = format!(
        "GET {room}&client=%3Cscript%3E HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        bearer("cy")
    );
    let (_, head) = support::raw_request(n[0].addr, &req);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    drop(n);
}

#[test]
fn the_broker_killed_and_restarted_mid_stream_costs_no_message_and_no_crash() {
    // Persistence on, as a production broker runs: history survives the restart.
    let mut redis = Redis::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let n = nodes(&redis.url(), &[]);
    let (mut ws, r) = subscriber(n[1].addr, "/ws?topics=live", 1, "");
    let epoch = r[0]["epoch"].as_str().unwrap().to_string();
    for i in 1..=50 {
        publish_ok(n[0].admin, "live", &format!("m{i}"));
    }
    read_through(&mut ws, "live", 1, 50);
    let rss = n[0].rss();
    redis.kill();
    // Publishes are refused with 503 while the broker is away (the node notices within a
    // command's timeout), and nothing piles up.
    wait_until("503", || publish(n[0].admin, "live", b"x", false).0 == 503);
    for _ in 0..200 {
        let (s, body) = publish(n[0].admin, "live", &[b'x'; 4096], false);
        assert_eq!(s, 503, "{body}");
        assert!(body.contains("backplane_unavailable"), "{body}");
    }
    assert!(n[0].rss() < rss + (8 << 20), "{} -> {}", rss, n[0].rss());
    n[1].wait_metric("holdfast_backplane_up{engine=\"redis\"}", |v| v == 0.0);
    // Local connections keep flowing: the subscriber's control messages are answered.
    ws.send_frame(
        true,
        OpCode::Text,
        br#"{"op":"unsubscribe","topics":["other"]}"#,
    );
    assert_eq!(next(&mut ws)["type"], "unsubscribed");
    redis.restart();
    for node in &n {
        node.wait_metric("holdfast_backplane_up{engine=\"redis\"}", |v| v == 1.0);
    }
    assert!(n[1].metric("holdfast_backplane_reconnects_total") >= 1.0);
    assert!(n[1].metric("holdfast_backplane_resubscribes_total") >= 1.0);
    wait_until("the subscription is back", || {
        n[1].metric("holdfast_backplane_catch_ups_total") >= 0.0
            && publish(n[2].admin, "other", b"probe", false).0 == 200
    });
    let mut p = Value::Null;
    for i in 51..=100 {
        p = publish_ok(n[0].admin, "live", &format!("m{i}"));
    }
    assert_eq!(
        p["epoch"],
        epoch.as_str(),
        "the history survived: same epoch"
    );
    read_through(&mut ws, "live", 51, 100);

    // Subscriber connections cut (CLIENT KILL) while messages are published: the node
    // reconnects and fills what it missed from the stream.
    let admin = n[0].admin;
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(100));
    let (s2, p2) = (stop.clone(), published.clone());
    let publisher = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            let i = p2.load(Ordering::Relaxed) + 1;
            let (st, _) = publish(admin, "live", format!("m{i}").as_bytes(), false);
            if st == 200 {
                p2.store(i, Ordering::Relaxed);
            }
        }
    });
    wait_until("some publishes", || published.load(Ordering::Relaxed) > 150);
    let killed = cli(redis.port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed.trim().parse::<u32>().unwrap_or(0) >= 1, "{killed}");
    wait_until("more publishes", || published.load(Ordering::Relaxed) > 300);
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    let last = published.load(Ordering::Relaxed);
    read_through(&mut ws, "live", 101, last);

    // The broker loses the history (FLUSHALL: a restart without persistence): the topic's
    // numbering starts again in a new epoch, and subscribers are told (a reset).
    cli(redis.port, &["FLUSHALL"]);
    let p = publish_ok(n[0].admin, "live", "m1");
    assert_eq!(p["seq"], 1);
    assert_ne!(p["epoch"], epoch.as_str());
    let reset = loop {
        let v = next(&mut ws);
        if v["type"] == "reset" {
            break v;
        }
    };
    assert_eq!(reset["epoch"], p["epoch"], "{reset}");
    read_through(&mut ws, "live", 1, 1);
}

#[test]
fn a_three_master_redis_cluster_carries_the_same_scenario() {
    let cluster = Cluster::start();
    let n = nodes(&cluster.url(), &["--presence-ttl", "5"]);
    // Topics spread over the three masters' slots.
    let topics: Vec<String> = (0..9).map(|i| format!("shard{i}")).collect();
    let query = format!("/ws?topics={}", topics.join(","));
    let (mut b, _) = subscriber(n[1].addr, &query, topics.len(), "");
    let (mut c, _) = subscriber(n[2].addr, &query, topics.len(), "");
    for t in &topics {
        for i in 1..=20 {
            let p = publish_ok(n[0].admin, t, &format!("m{i}"));
            assert_eq!(p["seq"], i);
        }
    }
    for ws in [&mut b, &mut c] {
        let mut want: std::collections::HashMap<String, u64> =
            topics.iter().map(|t| (t.clone(), 1)).collect();
        let mut left = topics.len() * 20;
        while left > 0 {
            let v = next(ws);
            if v["type"] != "message" {
                continue;
            }
            let t = v["topic"].as_str().unwrap().to_string();
            let w = want.get_mut(&t).unwrap();
            assert_eq!(v["seq"].as_u64(), Some(*w), "{v}");
            *w += 1;
            left -= 1;
        }
    }
    // The keys really are spread: every master holds some topic's stream.
    for r in &cluster.nodes {
        let keys = cli(r.port, &["KEYS", "hf:*:s"]);
        assert!(!keys.trim().is_empty(), "master {} holds no stream", r.port);
    }
    // Presence and resume work there too.
    let (_p, _) = subscriber(n[1].addr, "/ws?topics=presence:lobby", 1, "");
    wait_until("a member", || {
        let (_, body) = n[0].admin("GET", "/presence?topic=presence:lobby");
        serde_json::from_str::<Value>(&body).unwrap()["connections"] == 1
    });
    let (mut late, r) = subscriber(n[0].addr, "/ws?topics=shard4&resume=shard4:15", 1, "");
    assert_eq!(r[0]["recovered"], true);
    read_through(&mut late, "shard4", 16, 20);
}

#[test]
fn the_data_ports_api_publishes_and_answers_presence_through_the_broker() {
    let mut redis = Redis::start();
    let url = redis.url();
    let a = node(&url, "A", &["--client-publish"]);
    let b = node(&url, "B", &["--client-publish"]);
    let (mut ws, r) = subscriber(b.addr, "/ws?topics=room,presence:hall&client=tester", 2, "");
    // A publish on A's data port is answered once the broker has numbered it, with the
    // fleet's number and epoch; B's subscriber gets it.
    let (st, body) = publish(a.addr, "room", b"via the data port", false);
    assert_eq!(st, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["seq"], 1, "{reply}");
    // Each topic's `subscribed` reply comes when the broker has answered for it, in either
    // order: compare with the one for `room`.
    let room = r
        .iter()
        .find(|v| v["topic"] == "room")
        .expect("a subscribed reply for room");
    assert_eq!(reply["epoch"], room["epoch"], "{reply} vs {room}");
    let m = next(&mut ws);
    assert_eq!(
        (m["seq"].as_u64(), m["data"].as_str()),
        (Some(1), Some("via the data port"))
    );
    // The node that answered (its worker took the broker's reply) still delivers: a
    // subscriber there gets what follows (a reply once upset the worker's queue
    // accounting, and every later message to that worker was refused).
    let (mut here, _) = subscriber(a.addr, "/ws?topics=room&resume=room:1", 1, "");
    for i in 2..=4 {
        let (st, body) = publish(a.addr, "room", format!("m{i}").as_bytes(), false);
        assert_eq!(st, 200, "{body}");
        assert_eq!(next(&mut here)["seq"], i);
        assert_eq!(next(&mut ws)["seq"], i);
    }
    // Presence asked on A's data port counts B's member (from the broker).
    let who = || {
        let (s, body) = support::http(a.addr, "GET", "/presence?topic=presence:hall");
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    wait_until("B's member seen from A", || who()["connections"] == 1);
    let p = who();
    assert_eq!(p["members"][0]["node"], "B", "{p}");
    assert_eq!(p["members"][0]["client"], "tester", "{p}");
    // The broker gone: 503 (a node notices at its next command, within the command's
    // timeout), then at once.
    redis.kill();
    wait_until("503", || publish(a.addr, "room", b"x", false).0 == 503);
    let t = Instant::now();
    assert_eq!(publish(a.addr, "room", b"x", false).0, 503);
    assert_eq!(
        support::http(a.addr, "GET", "/presence?topic=presence:hall").0,
        503
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// `SPUBLISH CHANNEL <bytes>` in RESP on a connection of its own (the bytes as they are:
/// a frame's length may hold a NUL, which a command line cannot); the reply as a line.
fn spublish(port: u16, channel: &str, body: &[u8]) -> String {
    let cmd = [b"SPUBLISH".as_slice(), channel.as_bytes(), body];
    match redis_pipeline(port, &[cmd]).remove(0) {
        holdfast::backplane::resp::Value::Int(n) => format!(":{n}"),
        other => format!("{other:?}"),
    }
}

/// A WebSocket text frame (unmasked, as a server sends it).
fn server_text_frame(text: &str) -> Vec<u8> {
    let mut f = Vec::new();
    holdfast::ws::frame::encode_frame(&mut f, true, OpCode::Text, None, text.as_bytes());
    f
}

#[test]
fn a_presence_event_a_neighbour_publishes_into_the_broker_is_checked_not_forwarded() {
    // Presence events travel between nodes as ready frames (`p <frame>` on `hf:{T}:m`), and
    // were written to every subscriber's socket as received: whoever could publish there
    // could send clients a Close frame or broken framing.
    let redis = Redis::start();
    let srv = node(&redis.url(), "A", &["--presence-events"]);
    let (mut ws, _) = subscriber(srv.addr, "/ws?topics=presence:room", 1, "");
    let channel = "hf:{presence:room}:m";
    let event = |topic: &str, user: &str| {
        format!(
            r#"{{"type":"presence","topic":"{topic}","event":"join","member":{{"node":"Z","conn":"1","user":"{user}","client":null,"since":1}}}}"#
        )
    };
    let mut forged = b"p ".to_vec();
    forged.extend(server_text_frame(&event("presence:room", "forged")));
    for bad in [
        b"p \x88\x02\x03\xe8".to_vec(), // a Close frame, code 1000
        b"p garbage".to_vec(),
        [
            &b"p "[..],
            &server_text_frame(&event("presence:other", "x")),
        ]
        .concat(),
        [
            &b"p "[..],
            &server_text_frame(r#"{"type":"message","data":"x"}"#),
        ]
        .concat(),
    ] {
        // Each reaches the node (1 subscriber: it listens on the channel).
        assert_eq!(spublish(redis.port, channel, &bad).trim(), ":1");
    }
    assert_eq!(spublish(redis.port, channel, &forged).trim(), ":1");
    srv.wait_metric("holdfast_backplane_malformed_total", |v| v == 4.0);
    // The one that is a presence event for this topic is delivered (rebuilt); before it
    // only presence events (the subscriber's own join): no close, no broken frame (`next`
    // fails on anything but a text message).
    for _ in 0..5 {
        let v = next(&mut ws);
        assert_eq!(v["type"], "presence", "{v}");
        if v["member"]["user"] == "forged" {
            break;
        }
        assert_eq!(
            v["member"]["node"], "A",
            "only the real join comes first: {v}"
        );
    }
    // A real join still comes. The subscriber's own join travels through the broker too and
    // may arrive after the forged event: only joins from node A are let pass before it.
    let (_other, _) = subscriber(srv.addr, "/ws?topics=presence:room&client=two", 1, "");
    let two_joined = (0..5).any(|_| {
        let v = next(&mut ws);
        assert_eq!(
            (
                v["type"].as_str(),
                v["event"].as_str(),
                v["member"]["node"].as_str()
            ),
            (Some("presence"), Some("join"), Some("A")),
            "{v}"
        );
        v["member"]["client"] == "two"
    });
    assert!(two_joined, "the real join came");
}

/// Commands pipelined on a connection of their own, then every reply, decoded.
fn redis_pipeline<C: AsRef<[A]>, A: AsRef<[u8]>>(
    port: u16,
    cmds: &[C],
) -> Vec<holdfast::backplane::resp::Value> {
    use holdfast::backplane::resp::{encode, Decoder, Limits};
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut out = Vec::new();
    for c in cmds {
        encode(&mut out, c.as_ref());
    }
    s.write_all(&out).unwrap();
    let (mut d, mut buf, mut got) = (Decoder::default(), Vec::new(), Vec::new());
    let mut chunk = [0u8; 64 * 1024];
    while got.len() < cmds.len() {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "redis closed after {} replies", got.len());
        buf.extend_from_slice(&chunk[..n]);
        d.values(&mut buf, &Limits::default(), &mut got).unwrap();
    }
    got
}

#[test]
fn a_crowded_presence_topic_and_a_long_history_cost_what_is_asked() {
    // A presence query fetched every member from the broker (HGETALL) and a topic's history
    // came as one reply decoded again from its start after every read: a client asking
    // about a topic of 200,000 members kept its node's backplane thread five seconds a time.
    let redis = Redis::start();
    let url = redis.url();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    // Its window keeps the long history below: the stream keeps what the publishing
    // node's window would.
    let a = node(
        &url,
        "A",
        &["--replay-bytes", "8MiB", "--max-outbound", "8MiB"],
    );
    // 2,500 members of 100 users, written as a node writes them (A loaded the functions).
    let topic = "presence:crowd";
    let keys = ["p", "x", "u"].map(|k| format!("hf:{{{topic}}}:{k}"));
    let expires = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let joins: Vec<Vec<String>> = (0..2500)
        .map(|i| {
            let info = json!({"node": "z", "conn": format!("{i:x}"), "client": null, "since": 1});
            let mut c = vec!["FCALL".into(), "hf_join".into(), "3".into()];
            c.extend(keys.iter().cloned());
            c.extend([
                format!("z/{i:x}"),
                format!("u{}", i % 100),
                info.to_string(),
            ]);
            c.push(expires.clone());
            c
        })
        .collect();
    let replies = redis_pipeline(port, &joins);
    assert!(
        replies.iter().all(|r| r.int() == Some(1)),
        "{:?}",
        replies[0]
    );
    // The broker lists at most what it is asked for, and all to a caller that names no
    // bound (a node of an earlier version mid-deploy).
    let query = |max: Option<&str>| {
        let mut c: Vec<String> = vec!["FCALL".into(), "hf_presence".into(), "3".into()];
        c.extend(keys.iter().cloned());
        c.extend(["0".into(), "1".into()]);
        c.extend(max.map(String::from));
        let r = redis_pipeline(port, &[c]).remove(0);
        let items = r.items().unwrap().to_vec();
        (
            items[0].int(),
            items[1].int(),
            items[2].items().unwrap().len(),
        )
    };
    assert_eq!(query(Some("10")), (Some(2500), Some(100), 20));
    assert_eq!(query(Some("0")), (Some(2500), Some(100), 0));
    assert_eq!(query(Some("9999")), (Some(2500), Some(100), 5000));
    assert_eq!(query(None), (Some(2500), Some(100), 5000));
    // The data port lists 1,000 and says so; the counts stay exact.
    let (s, body) = support::http(a.addr, "GET", &format!("/presence?topic={topic}"));
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let listed = v["members"].as_array().unwrap();
    assert_eq!(
        (v["connections"].as_u64(), v["users"].as_u64()),
        (Some(2500), Some(100))
    );
    assert_eq!((listed.len(), v["truncated"].as_bool()), (1000, Some(true)));
    let keys_listed: Vec<(String, String)> = listed
        .iter()
        .map(|m| (text(&m["node"]), text(&m["conn"])))
        .collect();
    assert!(
        keys_listed.windows(2).all(|w| w[0] < w[1]),
        "sorted, no repeats"
    );
    // A node that died holding 10,050 members (expired) beside 20 live ones: one query
    // drops at most 10,000 (Redis serves nobody else meanwhile); those left are neither
    // counted nor listed, and the next query drops them.
    let dead = "presence:dead";
    let dkeys = ["p", "x", "u"].map(|k| format!("hf:{{{dead}}}:{k}"));
    let join = |node: &str, i: usize, user: String, until: &str| {
        let info = json!({"node": node, "conn": format!("{i:x}"), "client": null, "since": 1});
        let mut c: Vec<String> = vec!["FCALL".into(), "hf_join".into(), "3".into()];
        c.extend(dkeys.iter().cloned());
        c.extend([
            format!("{node}/{i:x}"),
            user,
            info.to_string(),
            until.into(),
        ]);
        c
    };
    let mut joins: Vec<Vec<String>> = (0..10_050)
        .map(|i| join("gone", i, format!("g{}", i % 50), "1"))
        .collect();
    joins.extend((0..20).map(|i| join("here", i, format!("h{i}"), &expires)));
    redis_pipeline(port, &joins);
    let ask = || {
        let (s, body) = support::http(a.addr, "GET", &format!("/presence?topic={dead}"));
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let nodes: Vec<String> = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| text(&m["node"]))
            .collect();
        (v["connections"].as_u64(), v["users"].as_u64(), nodes)
    };
    let here = vec![text(&json!("here")); 20];
    let (connections, users, nodes) = ask();
    assert_eq!((connections, nodes), (Some(20), here.clone()));
    // (Users of the members not yet dropped still count.)
    assert!(users > Some(20) && users <= Some(70), "{users:?}");
    assert_eq!(ask(), (Some(20), Some(20), here));
    // The admin API lists up to 100,000: all of these.
    let (s, body) = a.admin("GET", &format!("/presence?topic={topic}"));
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 2500);
    assert!(v.get("truncated").is_none(), "{}", &body[..200]);
    // A history of 300 messages of 16 KiB (a 5 MB reply, read in hundreds of pieces) comes
    // whole to the first subscriber on a node that never listened to the topic, when its
    // window keeps that much.
    let body = "h".repeat(16 * 1024);
    for i in 1..=300 {
        let (s, reply) = publish(a.admin, "long", format!("{i:03}{body}").as_bytes(), false);
        assert_eq!(s, 200, "{reply}");
    }
    // A node starting to listen loads what its window keeps (`--replay-bytes`), not all the
    // stream holds: 1,024 messages of 1 MB were a reply of 1 GB that took Redis longer to
    // build than a node waits, and the node lost the broker at every attempt.
    let open = |bytes: Option<&str>| {
        let mut c: Vec<String> = ["FCALL", "hf_open", "2", "hf:{long}:s", "hf:{long}:e"]
            .map(String::from)
            .into();
        c.extend(["1024".into(), "0".into()]);
        c.extend(bytes.map(String::from));
        let r = redis_pipeline(port, &[c]).remove(0);
        let items = r.items().unwrap().to_vec();
        let entries = items[2].items().unwrap();
        let newest = entries
            .first()
            .and_then(|e| e.items()?.first()?.text().map(String::from));
        (items[1].int(), entries.len(), newest)
    };
    let newest = Some("0-300".to_string());
    // Each message is 16,387 bytes: the seventh passes 100,000.
    assert_eq!(open(Some("100000")), (Some(300), 7, newest.clone()));
    assert_eq!(
        open(Some("0")),
        (Some(300), 1, newest.clone()),
        "at least one"
    );
    assert_eq!(
        open(None),
        (Some(300), 300, newest.clone()),
        "an earlier node's call"
    );
    assert_eq!(open(Some("99999999")), (Some(300), 300, newest));
    let b = node(
        &url,
        "B",
        &["--replay-bytes", "8MiB", "--max-outbound", "8MiB"],
    );
    let (mut ws, r) = subscriber(b.addr, "/ws?topics=long&resume=long:0", 1, "");
    assert_eq!(r[0]["seq"], 300, "{}", r[0]);
    for i in 1..=300u64 {
        let m = next(&mut ws);
        assert_eq!(m["seq"], i, "{m}");
        assert!(m["data"].as_str().unwrap().starts_with(&format!("{i:03}h")));
    }
}

/// The `"id"` of a control message comes back on every reply to it, whenever the reply
/// comes: a publish answered by the broker after a later subscribe was refused at once is
/// still told apart (the SDK matched an error to its oldest pending publish, and a
/// publish's reply to the next publish on the topic).
#[test]
fn replies_carry_the_messages_id_through_the_broker() {
    let redis = Redis::start();
    let a = node(&redis.url(), "A", &["--client-publish"]);
    a.wait_metric("holdfast_backplane_up{engine=\"redis\"}", |v| v == 1.0);
    let (mut ws, _) = subscriber(a.addr, "/ws", 0, "");
    let send = |ws: &mut Raw, v: Value| ws.send_frame(true, OpCode::Text, text(&v).as_bytes());
    // Waits for the broker: answered later, with its id.
    send(
        &mut ws,
        json!({"op":"subscribe","topics":["room","hall"],"id":"s-1"}),
    );
    let mut got: Vec<Value> = (0..2).map(|_| next(&mut ws)).collect();
    got.sort_by_key(|v| v["topic"].to_string());
    for (v, topic) in got.iter().zip(["hall", "room"]) {
        assert_eq!(
            (&v["type"], &v["topic"], &v["id"]),
            (&json!("subscribed"), &json!(topic), &json!("s-1")),
            "{v}"
        );
    }
    // Two publishes that wait for the broker around a subscribe refused at once.
    send(
        &mut ws,
        json!({"op":"publish","topic":"room","data":"one","id":1}),
    );
    send(
        &mut ws,
        json!({"op":"subscribe","topics":["bad topic"],"id":2}),
    );
    send(
        &mut ws,
        json!({"op":"publish","topic":"room","data":"two","id":3}),
    );
    send(
        &mut ws,
        json!({"op":"unsubscribe","topics":["hall"],"id":"u"}),
    );
    send(
        &mut ws,
        json!({"op":"publish","topic":"room","data":"three"}),
    );
    let mut by_id = std::collections::HashMap::new();
    let mut messages = Vec::new();
    while by_id.len() < 5 || messages.len() < 3 {
        let v = next(&mut ws);
        if v["type"] == "message" {
            messages.push(v);
            continue;
        }
        let key = v["id"].to_string();
        assert!(
            by_id.insert(key, v.clone()).is_none(),
            "one reply per id: {v}"
        );
    }
    let seq_of = |data: &str| messages.iter().find(|m| m["data"] == data).unwrap()["seq"].clone();
    assert_eq!(by_id["1"]["type"], "published");
    assert_eq!(by_id["1"]["seq"], seq_of("one"), "{:?}", by_id["1"]);
    assert_eq!(by_id["3"]["seq"], seq_of("two"), "{:?}", by_id["3"]);
    assert_eq!(
        by_id["null"]["seq"],
        seq_of("three"),
        "no id: none on the reply"
    );
    assert_eq!(by_id["2"]["type"], "error");
    assert!(by_id["2"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("topic_bad_character"));
    assert_eq!(by_id["\"u\""]["type"], "unsubscribed");
}

/// The broker's stream of a topic keeps what a node's window keeps (`--replay-messages`
/// entries and `--replay-bytes` of data, the newest whatever its size; trimmed once it passes
/// them by a sixteenth), no more: it kept 1,024 messages of up to `--max-message` each, 1 GiB
/// a topic that no node would load.
#[test]
fn a_topics_stream_at_the_broker_keeps_what_a_window_keeps() {
    let redis = Redis::start();
    let port = redis.port;
    let args = ["--replay-bytes", "100000", "--replay-messages", "48"];
    let a = node(&redis.url(), "A", &args);
    a.wait_metric("holdfast_backplane_up{engine=\"redis\"}", |v| v == 1.0);
    // (entries, data bytes, oldest number) of the topic's stream, with the sizes list and
    // the "SUM FIRST" key checked against the stream itself.
    let stream = |topic: &str| {
        let s = format!("hf:{{{topic}}}:s");
        let r = redis_pipeline(
            port,
            &[
                vec!["XRANGE".to_string(), s, "-".into(), "+".into()],
                vec![
                    "LRANGE".into(),
                    format!("hf:{{{topic}}}:z"),
                    "0".into(),
                    "-1".into(),
                ],
                vec!["GET".into(), format!("hf:{{{topic}}}:b")],
            ],
        );
        let entries = r[0].items().unwrap();
        let sizes: Vec<u64> = entries
            .iter()
            .map(|e| {
                e.items().unwrap()[1].items().unwrap()[3]
                    .bytes()
                    .unwrap()
                    .len() as u64
            })
            .collect();
        let listed: Vec<u64> = r[1]
            .items()
            .unwrap()
            .iter()
            .map(|v| v.text().unwrap().parse().unwrap())
            .collect();
        assert_eq!(listed, sizes, "{topic}: the sizes list is the stream's");
        let oldest = entries.first().map_or(0, |e| {
            e.items().unwrap()[0].text().unwrap()[2..]
                .parse::<u64>()
                .unwrap()
        });
        let data: u64 = sizes.iter().sum();
        assert_eq!(
            r[2].text(),
            Some(format!("{data} {oldest}").as_str()),
            "{topic}"
        );
        (sizes.len() as u64, data, oldest)
    };
    // Within the bounds and their sixteenth (or the newest alone), numbers contiguous.
    let within = |topic: &str, newest: u64| {
        let (len, data, oldest) = stream(topic);
        assert!(
            len <= 48 + 3 && (data <= 100_000 + 6_250 || len == 1),
            "{topic}: {len} {data}"
        );
        assert_eq!(oldest + len - 1, newest, "{topic}");
        (len, data, oldest)
    };
    let send = |topic: &str, bytes: usize, n: usize| {
        for i in 0..n {
            let body = format!("{i:06}{}", "x".repeat(bytes - 6));
            let (s, reply) = publish(a.admin, topic, body.as_bytes(), false);
            assert_eq!(s, 200, "{reply}");
        }
    };
    // 300 messages of 10,000 bytes: the eleventh passes the sixteenth and is trimmed to ten.
    send("big", 10_000, 300);
    assert_eq!(within("big", 300), (10, 100_000, 291));
    // 300 of 100 bytes: by count, 48 to 51.
    send("small", 100, 300);
    let (len, data, _) = within("small", 300);
    assert!(len >= 48 && data == 100 * len, "{len} {data}");
    // One larger than the window is kept alone; the next small one replaces it.
    send("mixed", 100, 20);
    send("mixed", 250_000, 1);
    assert_eq!(within("mixed", 21), (1, 250_000, 21));
    send("mixed", 100, 3);
    assert_eq!(within("mixed", 24), (3, 300, 22));
    // Another writer (a backend's own call, a node of an earlier version) or a key lost:
    // counted again from the stream at the next publish.
    let legacy = [
        "FCALL",
        "hf_publish",
        "3",
        "hf:{small}:s",
        "hf:{small}:e",
        "hf:{small}:m",
        "t",
        "old",
    ];
    assert!(cli(port, &legacy).contains("301"));
    send("small", 100, 1);
    within("small", 302);
    cli(port, &["DEL", "hf:{small}:b"]);
    send("small", 100, 1);
    within("small", 303);
    cli(port, &["DEL", "hf:{small}:z"]);
    send("small", 100, 1);
    within("small", 304);
    // Both expire with the stream.
    let ttl = |k: &str| cli(port, &["TTL", k]).trim().parse::<i64>().unwrap();
    for k in ["hf:{small}:s", "hf:{small}:z", "hf:{small}:b"] {
        assert!(ttl(k) > 0, "{k}");
    }
    // A subscriber resuming from the start on another node gets what the window holds.
    let b = node(&redis.url(), "B", &args);
    let (mut ws, r) = subscriber(b.addr, "/ws?topics=big&resume=big:0", 1, "");
    assert_eq!(
        (r[0]["seq"].as_u64(), r[0]["recovered"].as_bool()),
        (Some(300), Some(false))
    );
    // (The window counts whole frames, a few bytes more than the data: nine or ten fit.)
    let gap = next(&mut ws);
    assert_eq!(
        (gap["type"].as_str(), gap["from"].as_u64()),
        (Some("gap"), Some(1)),
        "{gap}"
    );
    let to = gap["to"].as_u64().unwrap();
    assert!((290..=291).contains(&to), "{gap}");
    for seq in to + 1..=300 {
        assert_eq!(next(&mut ws)["seq"], seq);
    }
}

/// A dead node's presence members, and their users in the topic's `users` count, are
/// dropped though nobody asks who is there: each node sweeps the topics its members are on
/// when it refreshes them. They stayed until the next presence query.
#[test]
fn a_dead_nodes_members_are_swept_without_a_query() {
    let redis = Redis::start();
    let port = redis.port;
    let a = node(&redis.url(), "A", &["--presence-ttl", "3"]);
    let (_ws, _) = subscriber(a.addr, "/ws?topics=presence:room", 1, "");
    let hlen = |k: &str| {
        let key = format!("hf:{{presence:room}}:{k}");
        cli(port, &["HLEN", &key]).trim().parse::<u64>().unwrap()
    };
    wait_until("A's member", || hlen("p") == 1);
    // Thirty members of node Z, which died: their expiry passed.
    let expired = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 1)
    .to_string();
    let keys = [
        "hf:{presence:room}:p",
        "hf:{presence:room}:x",
        "hf:{presence:room}:u",
    ];
    for i in 0..30 {
        let (m, u) = (format!("Z/{i:x}"), format!("z{i}"));
        let mut c = vec!["FCALL", "hf_join", "3"];
        c.extend(keys);
        c.extend([m.as_str(), u.as_str(), "{}", expired.as_str()]);
        assert_eq!(cli(port, &c).trim(), "1");
    }
    assert_eq!((hlen("p"), hlen("u")), (31, 30));
    // Within a refresh interval (a third of the TTL: 1 s), with no query.
    wait_until("the dead node's members dropped", || hlen("p") == 1);
    assert_eq!(hlen("u"), 0, "their users went with them");
}
