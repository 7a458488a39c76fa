//! The data port's HTTP API (issue 16): what an event stream or a long poll cannot say —
//! `POST /publish` and `GET /presence` — on the same port and io_uring workers as `/ws`,
//! with the same tokens and grants, CORS preflights, bodies that arrive in pieces, and the
//! refusals a hostile or careless client gets. Real tokens, real sockets.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::Server;

const HMAC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/keys/hmac.secret"
);

fn token(sub: &str) -> String {
    let secret = std::fs::read_to_string(HMAC).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": sub, "exp": exp, "aud": "holdfast",
        "channels": {"subscribe": ["chat.*", "presence:*"], "publish": ["chat.*"]}});
    let k = EncodingKey::from_secret(secret.trim().as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &k).unwrap()
}

/// The answer to one request (by its length: an answered call may keep its connection):
/// (status, head, body).
fn answer(mut s: TcpStream) -> (u16, String, String) {
    support::read_answer(&mut s)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// `method path` with `headers` (each ending in CRLF) and `body`, the body written in
/// `pieces` separate writes after the head.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
    pieces: usize,
) -> (u16, String, String) {
    let mut s = connect(addr);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .unwrap();
    for chunk in body.chunks(body.len().div_ceil(pieces.max(1)).max(1)) {
        s.flush().unwrap();
        s.write_all(chunk).unwrap();
    }
    answer(s)
}

/// An event stream's data lines as JSON, read until `n` with data have come.
fn events(s: &mut TcpStream, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < n {
        let k = s.read(&mut chunk).unwrap();
        assert!(k > 0, "the stream ended after {got:?}");
        buf.extend_from_slice(&chunk[..k]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8(buf.drain(..end + 2).collect()).unwrap();
            for line in block.lines() {
                if let Some(d) = line.strip_prefix("data: ") {
                    got.push(serde_json::from_str(d).unwrap());
                }
            }
        }
    }
    got
}

fn stream(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    s
}

#[test]
fn publish_and_presence_on_the_data_port_with_a_token() {
    let srv = Server::start(&[
        "--auth-hmac-secret-file",
        HMAC,
        "--client-publish",
        "--max-message",
        "4096",
    ]);
    let tok = token("alice");
    let mut sse = stream(
        srv.addr,
        &format!("/sse?topics=chat.room,presence:lobby&client=sdk-test&token={tok}"),
    );
    let subscribed = events(&mut sse, 2);
    assert!(
        subscribed.iter().all(|m| m["type"] == "subscribed"),
        "{subscribed:?}"
    );

    // A text publish whose body arrives in three writes after the head.
    let (st, head, body) = call(
        srv.addr,
        "POST",
        &format!("/publish?topic=chat.room&token={tok}"),
        "Content-Type: text/plain\r\n",
        b"hello from the data port",
        3,
    );
    assert_eq!(st, 200, "{head}\n{body}");
    assert!(head.contains("Access-Control-Allow-Origin: *"), "{head}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (reply["type"].as_str(), reply["seq"].as_u64()),
        (Some("published"), Some(1))
    );
    assert_eq!(reply["epoch"], subscribed[0]["epoch"], "{reply}");
    // Binary, asked for with ?binary=1 (a browser's fetch of an ArrayBuffer sends no type),
    // with the token in a header this time.
    let (st, _, body) = call(
        srv.addr,
        "POST",
        "/publish?topic=chat.room&binary=1",
        &format!("Authorization: Bearer {tok}\r\n"),
        &[0, 1, 255],
        1,
    );
    assert_eq!(st, 200, "{body}");
    let got = events(&mut sse, 2);
    assert_eq!(
        (got[0]["seq"].as_u64(), got[0]["data"].as_str()),
        (Some(1), Some("hello from the data port"))
    );
    assert_eq!(
        (got[1]["seq"].as_u64(), got[1]["data_base64"].as_str()),
        (Some(2), Some("AAH/"))
    );

    // Presence: the stream is the lobby's one member, as it said it was.
    let (st, _, body) = call(
        srv.addr,
        "GET",
        &format!("/presence?topic=presence:lobby&token={tok}"),
        "",
        b"",
        1,
    );
    assert_eq!(st, 200, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (p["connections"].as_u64(), p["users"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(p["members"][0]["client"], "sdk-test", "{p}");
    assert_eq!(p["members"][0]["user"], "alice", "{p}");

    // Refusals, each with its status and nothing else harmed.
    let refused = [
        // No token.
        (
            "POST",
            "/publish?topic=chat.room".to_string(),
            "",
            &b"x"[..],
            401,
        ),
        // No grant to publish there.
        (
            "POST",
            format!("/publish?topic=news.x&token={tok}"),
            "",
            b"x",
            403,
        ),
        // Not UTF-8 and not asked to be binary.
        (
            "POST",
            format!("/publish?topic=chat.room&token={tok}"),
            "",
            &[0xff, 0xfe],
            400,
        ),
        // No topic, a bad topic.
        ("POST", format!("/publish?token={tok}"), "", b"x", 400),
        (
            "POST",
            format!("/publish?topic=a%20b&token={tok}"),
            "",
            b"x",
            400,
        ),
        // No grant to see who is there; not a presence topic.
        (
            "GET",
            format!("/presence?topic=secret.x&token={tok}"),
            "",
            b"",
            403,
        ),
        (
            "GET",
            format!("/presence?topic=chat.room&token={tok}"),
            "",
            b"",
            404,
        ),
        // A body where none is taken.
        (
            "GET",
            format!("/presence?topic=presence:lobby&token={tok}"),
            "",
            b"xyz",
            400,
        ),
        // Methods the paths do not serve.
        (
            "GET",
            format!("/publish?topic=chat.room&token={tok}"),
            "",
            b"",
            405,
        ),
        (
            "POST",
            format!("/presence?topic=presence:lobby&token={tok}"),
            "",
            b"",
            405,
        ),
    ];
    for (method, path, headers, body, want) in refused {
        let (st, head, text) = call(srv.addr, method, &path, headers, body, 1);
        assert_eq!(st, want, "{method} {path}: {head}\n{text}");
    }
    // Over --max-message: refused on the head alone, without waiting for the body.
    let mut s = connect(srv.addr);
    write!(
        s,
        "POST /publish?topic=chat.room&token={tok} HTTP/1.1\r\nHost: test\r\n\
         Content-Length: 100000\r\n\r\n"
    )
    .unwrap();
    let (st, _, text) = answer(s);
    assert_eq!(st, 413, "{text}");
    // Chunked bodies are not taken (a length two parsers could read two ways).
    let mut s = connect(srv.addr);
    write!(
        s,
        "POST /publish?topic=chat.room&token={tok} HTTP/1.1\r\nHost: test\r\n\
         Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    )
    .unwrap();
    let (st, _, text) = answer(s);
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("transfer_encoding_not_allowed"), "{text}");
    // What a client says it is (`client=`, shown in presence) is refused in its own words,
    // not a topic's ("client: topic_too_long" before).
    for (client, reason) in [
        ("c".repeat(65), "client_too_long (max 64 bytes)"),
        ("%3Cscript%3E".to_string(), "client_bad_character at byte 0"),
    ] {
        let mut s = connect(srv.addr);
        write!(
            s,
            "GET /poll?topics=chat.room&client={client}&token={tok} HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        .unwrap();
        let (st, _, text) = answer(s);
        assert_eq!(st, 400, "{text}");
        assert!(text.contains(reason) && !text.contains("topic"), "{text}");
    }
    // A length that is not plain digits: refused, and said so.
    let mut s = connect(srv.addr);
    write!(
        s,
        "POST /publish?topic=chat.room&token={tok} HTTP/1.1\r\nHost: test\r\n\
         Content-Length: +1\r\n\r\nx"
    )
    .unwrap();
    let (st, _, text) = answer(s);
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("invalid_content_length"), "{text}");
    // Two lengths: refused.
    let (st, _, text) = call(
        srv.addr,
        "POST",
        &format!("/publish?topic=chat.room&token={tok}"),
        "Content-Length: 1\r\n",
        b"x",
        1,
    );
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("duplicate_header"), "{text}");
    // A parameter that names one thing, given twice: refused, not read as the first (a
    // proxy or firewall in front may have read the second). Lists still add up.
    for (method, path) in [
        (
            "POST",
            format!("/publish?topic=chat.room&topic=secret.x&token={tok}"),
        ),
        (
            "GET",
            format!("/poll?topics=chat.room&cursor=x&cursor=y&token={tok}"),
        ),
        (
            "GET",
            format!("/sse?topics=chat.room&token={tok}&token={tok}"),
        ),
    ] {
        let body: &[u8] = if method == "POST" { b"x" } else { b"" };
        let (st, _, text) = call(srv.addr, method, &path, "", body, 1);
        assert_eq!(st, 400, "{path}: {text}");
        assert!(text.contains("duplicate_parameter "), "{path}: {text}");
    }
    // A 0-or-1 parameter with another value: `binary=true` published text, and
    // `members=false` listed the members, each silently.
    for (method, path, name) in [
        (
            "POST",
            format!("/publish?topic=chat.room&binary=true&token={tok}"),
            "binary",
        ),
        (
            "GET",
            format!("/presence?topic=presence:lobby&members=false&token={tok}"),
            "members",
        ),
    ] {
        let body: &[u8] = if method == "POST" { b"x" } else { b"" };
        let (st, _, text) = call(srv.addr, method, &path, "", body, 1);
        assert_eq!(st, 400, "{path}: {text}");
        assert!(
            text.contains(&format!("bad_parameter {name} (0 or 1)")),
            "{text}"
        );
    }

    // A browser's preflight.
    let (st, head, _) = call(srv.addr, "OPTIONS", "/publish?topic=chat.room", "", b"", 1);
    assert_eq!(st, 204, "{head}");
    assert!(
        head.contains("Access-Control-Allow-Methods: GET, POST, OPTIONS")
            && head.contains("Access-Control-Allow-Headers: Authorization"),
        "{head}"
    );

    // The stream saw nothing but the two messages, and still flows.
    let (st, _, _) = call(
        srv.addr,
        "POST",
        &format!("/publish?topic=chat.room&token={tok}"),
        "",
        b"third",
        1,
    );
    assert_eq!(st, 200);
    let got = events(&mut sse, 1);
    assert_eq!(
        (got[0]["seq"].as_u64(), got[0]["data"].as_str()),
        (Some(3), Some("third"))
    );

    // Per-transport gauges and the API's counters.
    srv.wait_metric("holdfast_open_connections{transport=\"http\"}", |v| {
        v == 0.0
    });
    assert_eq!(
        srv.metric("holdfast_open_connections{transport=\"sse\"}"),
        1.0
    );
    assert_eq!(
        srv.metric("holdfast_open_connections{transport=\"websocket\"}"),
        0.0
    );
    assert_eq!(srv.metric("holdfast_cors_preflights_total"), 1.0);
    assert!(srv.metric("holdfast_api_calls_total") >= 4.0);
    drop(sse);
    srv.wait_metric("holdfast_open_connections{transport=\"sse\"}", |v| v == 0.0);
}

#[test]
fn publish_needs_client_publish_and_a_slow_body_is_cut_by_the_handshake_timeout() {
    let srv = Server::start(&["--handshake-timeout", "1"]);
    let (st, _, body) = call(srv.addr, "POST", "/publish?topic=t", "", b"x", 1);
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("publish_disabled"), "{body}");
    // A body that never comes holds nothing past the handshake timeout.
    let mut s = connect(srv.addr);
    write!(
        s,
        "POST /publish?topic=t HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nabc"
    )
    .unwrap();
    let mut rest = Vec::new();
    let t = std::time::Instant::now();
    let _ = s.read_to_end(&mut rest);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closed by the handshake timeout, not the read timeout"
    );
    assert!(srv.metric("holdfast_handshake_timeouts_total") >= 1.0);
}
