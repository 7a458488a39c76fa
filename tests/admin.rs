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
    let (status, _) = post(&format!("Authorization: Bearer {token}\r\n"));
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
