//! TLS at the edge (issue 14): a real server with real certificates (tests/fixtures/tls, a
//! test CA and two server certificates) and real TLS clients (tokio-rustls under
//! tokio-tungstenite, independent of the server's TLS code) — echo and pub/sub over wss,
//! TLS 1.3 and 1.2, resumed handshakes, a client that does not trust the certificate, plain
//! HTTP on the TLS port, a stalled handshake, refusals delivered over TLS, a certificate
//! reloaded under load without a dropped connection, and start-up errors.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn tls_args() -> Vec<String> {
    vec![
        "--tls-cert".into(),
        fixture("server.pem").display().to_string(),
        "--tls-key".into(),
        fixture("server.key").display().to_string(),
    ]
}

fn start(extra: &[&str]) -> Server {
    let mut args: Vec<String> = tls_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&refs)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client configuration trusting `ca` (PEM), for `versions`, with or without resumption.
fn client(
    ca: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    resume: bool,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(fixture(ca)).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(cfg)
}

type Wss = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Open a TLS connection to `addr` as `localhost`.
async fn tls_connect(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    TlsConnector::from(cfg.clone()).connect(name, tcp).await
}

/// A WebSocket over TLS on `path` (a tungstenite error for a refused upgrade).
async fn wss(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Wss, tokio_tungstenite::tungstenite::Error> {
    let tls = tls_connect(addr, cfg).await?;
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, resp) = tokio_tungstenite::client_async(url, tls).await?;
    assert_eq!(resp.status(), 101);
    Ok(ws)
}

async fn echo_once(ws: &mut Wss, text: String) {
    ws.send(Message::text(text.clone())).await.unwrap();
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                assert_eq!(t.as_str(), text);
                return;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
    }
}

#[test]
fn echo_and_pubsub_over_wss_with_tls13_and_tls12() {
    let server = start(&[]);
    rt().block_on(async {
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            let cfg = client("ca.pem", versions, false);
            let mut ws = wss(server.addr, &cfg, "/echo").await.unwrap();
            // Small, and larger than one TLS record (16 KiB): split across records and reads.
            echo_once(&mut ws, "hello".into()).await;
            echo_once(&mut ws, "x".repeat(100_000)).await;
            ws.close(None).await.unwrap();

            let mut sub = wss(server.addr, &cfg, "/ws").await.unwrap();
            sub.send(Message::text(r#"{"op":"subscribe","topics":["t"]}"#))
                .await
                .unwrap();
            let ack = tokio::time::timeout(T, sub.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(ack.to_text().unwrap().contains("subscribed"), "{ack:?}");
            let (status, _) = support::publish(server.admin, "t", b"over tls", false);
            assert_eq!(status, 200);
            let msg = tokio::time::timeout(T, sub.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(msg.to_text().unwrap().contains("over tls"), "{msg:?}");
        }
    });
    assert_eq!(
        server.metric("holdfast_tls_handshakes_total{kind=\"full\"}"),
        4.0
    );
    assert_eq!(server.metric("holdfast_upgrades_total"), 4.0);
}

#[test]
fn a_reconnecting_client_resumes_its_session() {
    let server = start(&[]);
    rt().block_on(async {
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            let cfg = client("ca.pem", versions, true);
            for i in 0..3 {
                let mut ws = wss(server.addr, &cfg, "/echo").await.unwrap();
                echo_once(&mut ws, format!("round {i}")).await;
                ws.close(None).await.unwrap();
                // Let the client take the ticket (sent after the handshake) before the next.
                while ws.next().await.is_some() {}
            }
        }
    });
    assert_eq!(
        server.metric("holdfast_tls_handshakes_total{kind=\"full\"}"),
        2.0
    );
    assert_eq!(
        server.metric("holdfast_tls_handshakes_total{kind=\"resumed\"}"),
        4.0
    );
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_and_others_keep_flowing() {
    let server = start(&[]);
    rt().block_on(async {
        let good = client("ca.pem", rustls::DEFAULT_VERSIONS, false);
        let mut ws = wss(server.addr, &good, "/echo").await.unwrap();
        echo_once(&mut ws, "before".into()).await;
        // Trusts only another certificate: it refuses ours and tells the server.
        let bad = client("server2.pem", rustls::DEFAULT_VERSIONS, false);
        let err = tls_connect(server.addr, &bad).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        echo_once(&mut ws, "after".into()).await;
    });
    server.wait_metric("holdfast_tls_failures_total{reason=\"peer_alert\"}", |v| {
        v == 1.0
    });
    // Every TLS connection's state went with it.
    server.wait_metric("holdfast_tls_connections", |v| v == 0.0);
}

#[test]
fn plain_http_on_the_tls_port_gets_a_400_that_says_so() {
    let server = start(&[]);
    let (status, body) = support::http(server.addr, "GET", "/");
    assert_eq!(status, 400);
    assert!(body.contains("wss://"), "{body}");
    assert_eq!(
        server.metric("holdfast_tls_failures_total{reason=\"plain_http\"}"),
        1.0
    );
}

#[test]
fn a_stalled_handshake_times_out_and_garbage_gets_an_alert() {
    let server = start(&["--handshake-timeout", "1"]);
    rt().block_on(async {
        // Half a ClientHello header, then nothing: closed at the handshake timeout.
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(T, s.read(&mut buf)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // A record of a type that does not exist: a fatal alert (content type 21), then the
        // close.
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&[0x05, 0x03, 0x03, 0x00, 0x01, 0x00])
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(T, s.read_to_end(&mut got))
            .await
            .unwrap();
        assert_eq!(got.first(), Some(&21), "{got:?}");
    });
    assert_eq!(server.metric("holdfast_handshake_timeouts_total"), 1.0);
    assert_eq!(
        server.metric("holdfast_tls_failures_total{reason=\"protocol\"}"),
        1.0
    );
}

#[test]
fn refusals_and_tokens_travel_inside_tls() {
    let secret = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/hmac.secret");
    let secret_arg = secret.display().to_string();
    let server = start(&[
        "--auth-hmac-secret-file",
        &secret_arg,
        "--auth-audience",
        "holdfast",
    ]);
    let key = std::fs::read_to_string(&secret).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice", "exp": exp, "aud": "holdfast"}),
        &jsonwebtoken::EncodingKey::from_secret(key.trim().as_bytes()),
    )
    .unwrap();
    rt().block_on(async {
        let cfg = client("ca.pem", rustls::DEFAULT_VERSIONS, false);
        // No token: the 401 arrives as an HTTP answer inside the TLS connection.
        match wss(server.addr, &cfg, "/echo").await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => panic!("expected a 401, got {other:?}"),
        }
        let mut ws = wss(server.addr, &cfg, &format!("/echo?token={token}"))
            .await
            .unwrap();
        echo_once(&mut ws, "authenticated".into()).await;
    });
}

#[test]
fn a_certificate_reloaded_on_sighup_serves_new_handshakes_and_drops_no_connection() {
    let dir = std::env::temp_dir().join(format!("holdfast-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(fixture("server.pem"), &cert).unwrap();
    std::fs::copy(fixture("server.key"), &key).unwrap();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let server = Server::start(&["--tls-cert", &c, "--tls-key", &k]);
    let der = |name: &str| {
        CertificateDer::from_pem_file(fixture(name))
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let served = |addr| async move {
        let cfg = client("ca.pem", rustls::DEFAULT_VERSIONS, false);
        let tls = tls_connect(addr, &cfg).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    rt().block_on(async {
        assert_eq!(served(server.addr).await, der("server.pem"));
        // Connections echoing without pause while the certificate changes under them.
        let cfg = client("ca.pem", rustls::DEFAULT_VERSIONS, false);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..40 {
            let mut ws = wss(server.addr, &cfg, "/echo").await.unwrap();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u32;
                // Bounded: the test stops it, or 100,000 rounds.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 100_000 {
                    echo_once(&mut ws, format!("{n}:{i}")).await;
                    i += 1;
                }
                let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code:
                        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "".into(),
                };
                ws.close(Some(normal)).await.unwrap();
                // The server's Close, then its FIN (bounded by the server's close timeout).
                while let Ok(Some(Ok(_))) = tokio::time::timeout(T, ws.next()).await {}
                i
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A half-written pair (the new certificate with the old key) is refused: the old
        // one keeps serving.
        std::fs::copy(fixture("server2.pem"), &cert).unwrap();
        server.signal("-HUP");
        tokio::task::spawn_blocking({
            let s = server.admin;
            move || wait_series(s, "holdfast_tls_cert_reloads_total{result=\"error\"}", 1.0)
        })
        .await
        .unwrap();
        assert_eq!(served(server.addr).await, der("server.pem"));
        std::fs::copy(fixture("server2.key"), &key).unwrap();
        server.signal("-HUP");
        tokio::task::spawn_blocking({
            let s = server.admin;
            move || wait_series(s, "holdfast_tls_cert_reloads_total{result=\"ok\"}", 1.0)
        })
        .await
        .unwrap();
        assert_eq!(served(server.addr).await, der("server2.pem"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let rounds = t
                .await
                .expect("every echoing connection lived through the reload");
            assert!(rounds > 0);
        }
    });
    // Nothing was dropped: the 40 echoing connections closed cleanly (1000, from the
    // client); the only connections without a closing handshake are the three that
    // fetched the certificate and hung up.
    server.wait_metric(
        "holdfast_closes_total{code=\"1000\",side=\"client\"}",
        |v| v == 40.0,
    );
    assert_eq!(server.metric("holdfast_aborted_total"), 3.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn wait_series(admin: SocketAddr, series: &str, want: f64) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let (_, body) = support::http(admin, "GET", "/metrics");
        let v = body
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if v == Some(want) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{series} is {v:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bad_or_mismatched_key_stops_the_start_with_a_clear_error() {
    for (cert, key, says) in [
        ("server.pem", "server2.key", "does not belong"),
        ("server.pem", "nonexistent.key", "nonexistent.key"),
        ("server.key", "server.key", "no CERTIFICATE"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin", "off"])
            .args(["--tls-cert", &fixture(cert).display().to_string()])
            .args(["--tls-key", &fixture(key).display().to_string()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{cert} {key}: {err}");
        assert!(out.stdout.is_empty(), "nothing was served");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--tls-cert", "x.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

/// One answer read from `s` by its `Content-Length`: (status, head, body).
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(T, s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "the answer ended early: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

#[test]
fn long_polls_keep_their_tls_connection_which_can_then_upgrade() {
    let server = start(&["--poll-hold", "1"]);
    rt().block_on(async {
        let cfg = client("ca.pem", rustls::DEFAULT_VERSIONS, false);
        let mut tls = tls_connect(server.addr, &cfg).await.unwrap();
        let mut cursor = String::new();
        for i in 0..3 {
            let q = if cursor.is_empty() {
                String::new()
            } else {
                format!("&cursor={cursor}")
            };
            tls.write_all(
                format!("GET /poll?topics=tk{q} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let (st, head, body) = read_answer(&mut tls).await;
            assert!(
                st == 200 && head.contains("Connection: keep-alive"),
                "{i}: {head}"
            );
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            cursor = v["cursor"].as_str().unwrap().to_string();
        }
        // The same TLS session becomes a WebSocket.
        let url = format!("wss://localhost:{}/echo", server.addr.port());
        let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
        assert_eq!(resp.status(), 101);
        echo_once(&mut ws, "after three polls".into()).await;
    });
    assert_eq!(server.metric("holdfast_http_keepalive_reuses_total"), 3.0);
    assert_eq!(server.metric("holdfast_accepted_total"), 1.0);
}
