//! Identity at the edge (issue 14): real tokens minted here with the test keys in
//! tests/fixtures/keys, checked by a real server over real sockets — the handshake's 401s,
//! the three places a token may travel, channel grants, anonymous feeds, Origin, the
//! per-user cap, expiry with and without a refresh, and start-up errors.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use support::{Got, Raw, Server, KEY};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/");
const T: Duration = Duration::from_secs(10);

fn key(name: &str) -> String {
    format!("{KEYS}{name}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: serde_json::Value) -> String {
    let secret = std::fs::read_to_string(key("hmac.secret")).unwrap();
    let k = EncodingKey::from_secret(secret.trim().as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &k).unwrap()
}

fn eddsa(claims: serde_json::Value) -> String {
    let k = EncodingKey::from_ed_pem(&std::fs::read(key("ed.key")).unwrap()).unwrap();
    encode(&Header::new(Algorithm::EdDSA), &claims, &k).unwrap()
}

fn claims(sub: &str, exp: u64) -> serde_json::Value {
    json!({"sub": sub, "exp": exp, "aud": "holdfast",
           "channels": {"subscribe": ["news.*", "user.alice"], "publish": ["chat.*"]}})
}

/// Send an upgrade request for `path` with `headers`; return the status, the whole answer
/// when it is not a 101, and the stream.
fn upgrade(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, TcpStream) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    let (mut s, mut text) = support::raw_request(addr, &req);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        let _ = s.read_to_string(&mut text);
    }
    (status, text, s)
}

fn secured(extra: &[&str]) -> Server {
    let hmac = key("hmac.secret");
    let ed = key("ed.pub");
    let mut args = vec![
        "--auth-hmac-secret-file",
        hmac.as_str(),
        "--auth-public-key-file",
        ed.as_str(),
        "--auth-audience",
        "holdfast",
        "--client-publish",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn the_handshake_refuses_missing_expired_early_and_forged_tokens_with_401() {
    let srv = secured(&[]);
    let t = now();
    let other_secret = {
        let k = EncodingKey::from_secret(b"another secret that is long enough, 32+ bytes");
        encode(&Header::new(Algorithm::HS256), &claims("alice", t + 60), &k).unwrap()
    };
    let mut early = claims("alice", t + 600);
    early["nbf"] = json!(t + 300);
    let mut elsewhere = claims("alice", t + 60);
    elsewhere["aud"] = json!("elsewhere");
    let rsa = {
        let k = EncodingKey::from_rsa_pem(&std::fs::read(key("rsa.key")).unwrap()).unwrap();
        encode(&Header::new(Algorithm::RS256), &claims("alice", t + 60), &k).unwrap()
    };
    let cases = [
        (String::new(), "token_missing"),
        (hs256(claims("alice", t - 120)), "token_expired"),
        (hs256(early), "token_not_yet_valid"),
        (other_secret, "token_bad_signature"),
        (hs256(elsewhere), "token_wrong_audience"),
        (rsa, "token_wrong_algorithm"),
        ("garbage".into(), "token_malformed"),
    ];
    for (token, reason) in &cases {
        let h = if token.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {token}\r\n")
        };
        let (status, text, _) = upgrade(srv.addr, "/ws", &h);
        assert_eq!(status, 401, "{reason}: {text}");
        assert!(text.contains("WWW-Authenticate: Bearer"), "{text}");
        assert!(text.contains(reason), "{reason}: {text}");
    }
    for (_, reason) in &cases[1..] {
        let series = format!("holdfast_auth_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(srv.metric(&series), 1.0, "{series}");
    }
    assert_eq!(
        srv.metric("holdfast_rejected_total{limit=\"unauthorized\"}"),
        cases.len() as f64
    );
}

#[test]
fn a_token_is_taken_from_the_header_the_query_or_a_subprotocol() {
    let srv = secured(&[]);
    let t = now();
    let token = hs256(claims("alice", t + 60));
    let (s, text, _) = upgrade(
        srv.addr,
        "/ws",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(s, 101, "{text}");
    let (s, text, _) = upgrade(
        srv.addr,
        &format!("/ws?token={}", eddsa(claims("bob", t + 60))),
        "",
    );
    assert_eq!(s, 101, "EdDSA via the query: {text}");
    // What a browser can send: the token as a subprotocol beside holdfast.v1, which the
    // server selects (a browser fails an upgrade that selects none of its protocols).
    let h = format!("Sec-WebSocket-Protocol: holdfast.v1, holdfast.bearer.{token}\r\n");
    let (s, text, _) = upgrade(srv.addr, "/ws", &h);
    assert_eq!(s, 101, "{text}");
    assert!(
        text.contains("Sec-WebSocket-Protocol: holdfast.v1\r\n"),
        "{text}"
    );
    assert!(!text.contains("bearer"), "the token is not echoed: {text}");
}

/// Read replies until one of type `ty` (bounded).
fn until(ws: &mut Raw, ty: &str) -> serde_json::Value {
    for _ in 0..20 {
        if let Got::Text(t) = ws.recv_non_ping() {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == ty {
                return v;
            }
        }
    }
    panic!("no {ty} reply");
}

fn control(ws: &mut Raw, v: serde_json::Value) {
    ws.send_frame(true, holdfast::ws::OpCode::Text, v.to_string().as_bytes());
}

fn authed(srv: &Server, path: &str, token: &str) -> Raw {
    let (s, text, stream) = upgrade(
        srv.addr,
        path,
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(s, 101, "{text}");
    stream.set_read_timeout(Some(T)).unwrap();
    Raw::from_upgraded(stream)
}

#[test]
fn channel_grants_decide_subscribe_and_publish_separately() {
    let srv = secured(&[]);
    let token = hs256(claims("alice", now() + 60));
    // In the handshake's query: a channel without a grant is a 403.
    let h = format!("Authorization: Bearer {token}\r\n");
    let (s, text, _) = upgrade(srv.addr, "/ws?topics=news.a,secret", &h);
    assert_eq!(s, 403, "{text}");
    assert!(text.contains("no grant to subscribe to secret"), "{text}");
    assert_eq!(
        srv.metric("holdfast_rejected_total{limit=\"forbidden\"}"),
        1.0
    );

    let mut ws = authed(&srv, "/ws?topics=news.a", &token);
    assert_eq!(until(&mut ws, "subscribed")["topic"], "news.a");
    control(
        &mut ws,
        json!({"op": "subscribe", "topics": ["user.bob", "user.alice"]}),
    );
    let e = until(&mut ws, "error");
    assert_eq!(e["topic"], "user.bob");
    assert!(e["reason"].as_str().unwrap().starts_with("forbidden"));
    assert_eq!(until(&mut ws, "subscribed")["topic"], "user.alice");
    // Subscribing to news.* does not allow publishing there.
    control(
        &mut ws,
        json!({"op": "publish", "topic": "news.a", "data": "x"}),
    );
    let e = until(&mut ws, "error");
    assert!(e["reason"]
        .as_str()
        .unwrap()
        .contains("no grant to publish on news.a"));
    control(
        &mut ws,
        json!({"op": "publish", "topic": "chat.lobby", "data": "hi"}),
    );
    assert_eq!(until(&mut ws, "published")["topic"], "chat.lobby");
}

#[test]
fn anonymous_connections_read_public_feeds_and_nothing_else() {
    let srv = secured(&["--auth-anonymous", "public.*"]);
    let (s, text, _) = upgrade(srv.addr, "/ws?topics=private", "");
    assert_eq!(s, 403, "{text}");
    let (s, text, stream) = upgrade(srv.addr, "/ws?topics=public.prices", "");
    assert_eq!(s, 101, "{text}");
    let mut ws = Raw::from_upgraded(stream);
    assert_eq!(until(&mut ws, "subscribed")["topic"], "public.prices");
    control(
        &mut ws,
        json!({"op": "publish", "topic": "public.prices", "data": "1"}),
    );
    assert!(until(&mut ws, "error")["reason"]
        .as_str()
        .unwrap()
        .starts_with("forbidden"));
    // A token still works beside anonymous access, and a bad one is still refused.
    let (s, _, _) = upgrade(srv.addr, "/ws", "Authorization: Bearer garbage\r\n");
    assert_eq!(s, 401);
}

#[test]
fn origins_outside_the_allowlist_get_403_and_the_echo_endpoint_can_be_off() {
    let srv = Server::start(&[
        "--allowed-origins",
        "https://app.example.com,https://*.example.org",
        "--endpoints",
        "pubsub",
    ]);
    let (s, text, _) = upgrade(srv.addr, "/ws", "Origin: https://evil.example.net\r\n");
    assert_eq!(s, 403, "{text}");
    assert!(text.contains("origin_not_allowed"), "{text}");
    assert_eq!(srv.metric("holdfast_rejected_total{limit=\"origin\"}"), 1.0);
    for ok in [
        "Origin: https://app.example.com\r\n",
        "Origin: https://a.example.org\r\n",
        "",
    ] {
        let (s, text, _) = upgrade(srv.addr, "/ws", ok);
        assert_eq!(s, 101, "{ok:?}: {text}");
    }
    let (s, _, _) = upgrade(srv.addr, "/echo", "");
    assert_eq!(s, 404, "echo is turned off");
}

#[test]
fn a_user_at_the_connection_cap_gets_429_until_one_leaves() {
    let srv = secured(&["--max-connections-per-user", "2"]);
    let token = hs256(claims("alice", now() + 60));
    let h = format!("Authorization: Bearer {token}\r\n");
    let a = upgrade(srv.addr, "/ws", &h);
    let b = upgrade(srv.addr, "/ws", &h);
    assert_eq!((a.0, b.0), (101, 101));
    let (s, text, _) = upgrade(srv.addr, "/ws", &h);
    assert_eq!(s, 429, "{text}");
    assert!(text.contains("user_connection_cap"), "{text}");
    let bob = hs256(claims("bob", now() + 60));
    let (s, _, _) = upgrade(srv.addr, "/ws", &format!("Authorization: Bearer {bob}\r\n"));
    assert_eq!(s, 101, "another user is not capped");
    drop(a);
    let deadline = Instant::now() + T;
    loop {
        let (s, _, stream) = upgrade(srv.addr, "/ws", &h);
        if s == 101 {
            drop(stream);
            break;
        }
        assert!(Instant::now() < deadline, "the cap never freed a place");
    }
}

#[test]
fn an_expiring_connection_is_closed_4401_unless_it_refreshes() {
    let srv = secured(&["--auth-leeway", "0s"]);
    let exp = now() + 2;
    let mut stays = authed(&srv, "/ws?topics=news.a", &hs256(claims("alice", exp)));
    let mut goes = authed(&srv, "/ws?topics=news.a", &hs256(claims("alice", exp)));
    until(&mut stays, "subscribed");
    until(&mut goes, "subscribed");
    // A refresh naming another user is refused; the connection keeps its old token. Each
    // answer carries the message's id.
    control(
        &mut stays,
        json!({"op": "refresh", "token": hs256(claims("bob", exp + 60)), "id": "r1"}),
    );
    let e = until(&mut stays, "error");
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("token_other_user"),
        "{e}"
    );
    assert_eq!(
        (&e["op"], &e["id"]),
        (&json!("refresh"), &json!("r1")),
        "{e}"
    );
    control(
        &mut stays,
        json!({"op": "refresh", "token": hs256(claims("alice", exp + 60)), "id": 2}),
    );
    let r = until(&mut stays, "refreshed");
    assert_eq!((&r["exp"], &r["id"]), (&json!(exp + 60), &json!(2)), "{r}");
    // The one that did not refresh is closed with 4401 soon after its expiry.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        assert!(Instant::now() < deadline, "not closed after expiry");
        match goes.recv_non_ping() {
            Got::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (Some(4401), "token expired"));
                break;
            }
            Got::Eof => panic!("closed without a Close frame"),
            _ => {}
        }
    }
    assert!(now() >= exp, "closed before its expiry");
    // The refreshed one is still served.
    control(&mut stays, json!({"op": "subscribe", "topics": ["news.b"]}));
    assert_eq!(until(&mut stays, "subscribed")["topic"], "news.b");
    assert_eq!(srv.metric("holdfast_token_expired_closes_total"), 1.0);
    assert_eq!(srv.metric("holdfast_token_refreshes_total"), 1.0);
    assert_eq!(srv.metric("holdfast_token_refresh_failures_total"), 1.0);
}

#[test]
fn unusable_key_material_stops_the_server_at_start_up_with_a_reason() {
    let short = std::env::temp_dir().join(format!("holdfast-short-{}", std::process::id()));
    std::fs::write(&short, "too short\n").unwrap();
    for (flag, path, says) in [
        (
            "--auth-hmac-secret-file",
            short.display().to_string(),
            "at least 32",
        ),
        ("--auth-public-key-file", key("ed.key"), "is not a PEM"),
        (
            "--auth-public-key-file",
            "/nonexistent/key.pem".into(),
            "/nonexistent/key.pem",
        ),
    ] {
        let (code, err) = support::serve_refused(&[flag, &path]);
        assert_ne!(code, Some(0), "{flag} {path}: {err}");
        assert!(err.contains(says), "{flag} {path}: {err}");
    }
    let _ = std::fs::remove_file(short);
}

#[test]
fn the_close_log_names_the_user() {
    let hmac = key("hmac.secret");
    let srv = Server::start_logging(
        &["--auth-hmac-secret-file", &hmac, "--workers", "1"],
        "warn,holdfast::close=info",
    );
    let token = hs256(claims("alice", now() + 60));
    let (s, _, stream) = upgrade(
        srv.addr,
        "/ws",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(s, 101);
    drop(stream);
    let line = srv.wait_log(T, |l| l.contains("connection closed"));
    assert!(
        line.contains("user=\"alice\"") || line.contains("user=alice"),
        "{line}"
    );
    let (s, _, _) = upgrade(srv.addr, "/ws", "");
    assert_eq!(s, 401);
    let line = srv.wait_log(T, |l| l.contains("connection refused"));
    assert!(
        line.contains("status=401") && line.contains("token_missing"),
        "{line}"
    );
}

#[test]
fn a_subscription_token_opens_one_private_channel() {
    let srv = secured(&["--auth-anonymous", "public.*"]);
    let t = now();
    let mut ws = authed(&srv, "/ws", &hs256(claims("alice", t + 60)));
    let vip = |sub: Option<&str>, channel: &str| {
        let mut c = json!({"exp": t + 60, "aud": "holdfast", "channel": channel});
        if let Some(s) = sub {
            c["sub"] = json!(s);
        }
        hs256(c)
    };
    // Not in alice's grants, and no token: refused.
    control(&mut ws, json!({"op": "subscribe", "topics": ["vip.room"]}));
    assert!(until(&mut ws, "error")["reason"]
        .as_str()
        .unwrap()
        .starts_with("forbidden: no grant"));
    // A token for another user, or for another channel: refused with the reason.
    for bad in [
        vip(Some("bob"), "vip.room"),
        vip(Some("alice"), "vip.other"),
    ] {
        control(
            &mut ws,
            json!({"op": "subscribe", "topics": ["vip.room"], "tokens": {"vip.room": bad}}),
        );
        let e = until(&mut ws, "error");
        assert!(
            e["reason"]
                .as_str()
                .unwrap()
                .starts_with("forbidden: subscription token refused"),
            "{e}"
        );
    }
    control(
        &mut ws,
        json!({"op": "subscribe", "topics": ["vip.room"],
               "tokens": {"vip.room": vip(Some("alice"), "vip.room")}}),
    );
    assert_eq!(until(&mut ws, "subscribed")["topic"], "vip.room");
    // An anonymous connection may hold a channel token without a sub.
    let (s, _, stream) = upgrade(srv.addr, "/ws", "");
    assert_eq!(s, 101);
    let mut anon = Raw::from_upgraded(stream);
    control(
        &mut anon,
        json!({"op": "subscribe", "topics": ["vip.room"],
               "tokens": {"vip.room": vip(None, "vip.room")}}),
    );
    assert_eq!(until(&mut anon, "subscribed")["topic"], "vip.room");
}

#[test]
fn token_verifications_over_the_socket_are_rate_limited_per_connection() {
    // A signature check costs the worker up to ~60 µs: a client must not keep it busy by
    // sending tokens. 16 per connection per 10 s; the 17th is refused unverified.
    let srv = secured(&["--auth-leeway", "0s"]);
    let t = now();
    let mut ws = authed(&srv, "/ws", &hs256(claims("alice", t + 60)));
    let fresh = hs256(claims("alice", t + 120));
    for i in 0..16 {
        control(&mut ws, json!({"op": "refresh", "token": fresh}));
        assert_eq!(until(&mut ws, "refreshed")["exp"], t + 120, "refresh {i}");
    }
    control(&mut ws, json!({"op": "refresh", "token": fresh}));
    let e = until(&mut ws, "error");
    assert!(
        e["reason"].as_str().unwrap().contains("token_rate_limited"),
        "{e}"
    );
    // Another connection has its own allowance.
    let mut other = authed(&srv, "/ws", &hs256(claims("alice", t + 60)));
    control(&mut other, json!({"op": "refresh", "token": fresh}));
    assert_eq!(until(&mut other, "refreshed")["exp"], t + 120);
}
