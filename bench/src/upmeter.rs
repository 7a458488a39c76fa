//! An independent upgrade and close client, to check the loadgen's server CPU per upgrade
//! and per close: plain TCP sockets on a single-threaded tokio runtime (epoll, one task per
//! connection), a hand-written upgrade request and Close frame. It shares no code with the
//! loadgen's io_uring engine (which connects with linked socket/bind/connect chains and
//! reads provided buffers); only the CPU meter and its "at rest" rule are the loadgen's, so
//! that both read the server alike. Over wss:// it is a plain tokio-rustls client with its
//! own configuration (the CA it is given, rustls' own session cache when it resumes), not
//! the loadgen's TLS client or ticket pool.
//!
//! A run: connections are opened at the given rate (connect, the TLS handshake for wss://,
//! the upgrade request, the 101; at most `--concurrency` at once when given), held, then
//! each sends a Close (1000), waits for the server's Close and its FIN, and closes. The
//! server's CPU over the ramp per connection upgraded, and over the teardown (read once the
//! server is at rest) per connection closed, are the figures; over TLS also how many
//! handshakes were full or resumed, and how many closes came without close_notify.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use holdfast_loadgen::report::hist_json;
use holdfast_loadgen::run::{per_item, server_wakeups};

use crate::fanmeter::upgraded;

/// `holdfast-bench upgrade-client` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct UpMeterArgs {
    /// ws:// or wss://HOST:PORT/PATH of a WebSocket endpoint that takes a Close (an echo
    /// endpoint). HOST may be a name (wss:// checks the certificate against it).
    #[arg(long)]
    pub url: String,
    /// Connections to open, hold and close.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connections opened per second (the ramp's pace).
    #[arg(long, default_value_t = 40_000.0)]
    pub rate: f64,
    /// At most this many connections opening at once (connect, TLS, upgrade); 0: no bound
    /// but the pace.
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// Seconds every connection is held before the teardown.
    #[arg(long, default_value_t = 0.5)]
    pub hold: f64,
    /// Source addresses the connections come from, taken in turn (127.0.5.x, x = 1..=count).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    /// wss://: trust the CA certificates in this PEM file (the only roots trusted).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// wss://: `off`: every handshake full; `always`: a connection resumes with a session
    /// ticket an earlier one received when one is at hand (rustls' own client cache).
    #[arg(long, value_enum, default_value_t = TlsResumption::Off)]
    pub tls_resumption: TlsResumption,
    /// The server's PID, for its CPU time over the ramp and the teardown.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Whether wss:// connections resume TLS sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsResumption {
    /// Every handshake is a full one.
    Off,
    /// Every connection that has a ticket at hand resumes.
    Always,
}

/// The masked Close (1000, no reason) every connection sends (mask 0: the payload is as
/// written).
const CLOSE: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];

/// How long any one step of a connection may take (connect, the TLS handshake, the 101,
/// the server's Close and FIN) before it counts as failed.
const STEP: Duration = Duration::from_secs(10);

/// Where a run connects: the address, the `Host:` value, the path, and for wss:// the name
/// the certificate must carry.
struct Endpoint {
    addr: SocketAddr,
    host: String,
    path: String,
    tls_name: Option<ServerName<'static>>,
}

fn target(url: &str) -> Result<Endpoint, String> {
    let (tls, host, path) = crate::meter::url_parts(url)
        .ok_or_else(|| "the upgrade client speaks ws:// and wss:// only".to_string())?;
    // IPv4: the connections come from 127.0.5.x.
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{host}: no IPv4 address"))?;
    let tls_name = if tls {
        Some(holdfast::tls::config::server_name_of(&host)?)
    } else {
        None
    };
    Ok(Endpoint {
        addr,
        host,
        path,
        tls_name,
    })
}

/// The TLS client of a wss:// run: its own rustls configuration (not the loadgen's
/// client or ticket pool), trusting `ca` only, resuming or not.
fn tls_connector(
    ca: &std::path::Path,
    resumption: TlsResumption,
) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if resumption == TlsResumption::Off {
        cfg.resumption = Resumption::disabled();
    }
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// Whether `after` (what the server sent after its 101, up to its FIN) is exactly one
/// unmasked Close frame (with any status and reason, as RFC 6455 lets a server answer).
fn closed_cleanly(after: &[u8]) -> bool {
    match after {
        [0x88, len, rest @ ..] => usize::from(*len) == rest.len() && rest.len() != 1,
        _ => false,
    }
}

/// A connection's byte stream: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How a connection opened: over TCP, or TLS with a full or a resumed handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opened {
    Plain,
    Full,
    Resumed,
}

/// How a connection ended: `clean` when the server answered the Close with one Close and
/// then closed; `notified` when, over TLS, it sent close_notify before its FIN.
struct Ended {
    clean: bool,
    notified: bool,
}

/// Everything a connection shares with the run.
struct Shared {
    to: SocketAddr,
    request: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// Openings in flight (`--concurrency`).
    gate: Option<Arc<Semaphore>>,
}

/// Connect from `from`, the TLS handshake if any, the upgrade: the stream and what the
/// server sent after its 101.
async fn open(run: &Shared, from: SocketAddr) -> Result<(Box<dyn Io>, Opened, Vec<u8>), String> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(from).map_err(|e| format!("bind {from}: {e}"))?;
    let tcp: TcpStream = sock.connect(run.to).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut s, opened): (Box<dyn Io>, Opened) = match &run.tls {
        None => (Box::new(tcp), Opened::Plain),
        Some((connector, name)) => {
            let t = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let kind = match t.get_ref().1.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => Opened::Resumed,
                _ => Opened::Full,
            };
            (Box::new(t), kind)
        }
    };
    s.write_all(run.request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    loop {
        if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the upgrade was not answered".to_string());
        }
        // The bench clients' one reading of a 101 (16 KiB of head at most).
        if let Some(end) = upgraded(&buf).map_err(|e| format!("upgrade {e}"))? {
            buf.drain(..end);
            return Ok((s, opened, buf));
        }
    }
}

/// One connection: open and upgrade (reported on `ready`), wait for the teardown, then the
/// closing handshake.
async fn connection(
    run: Arc<Shared>,
    from: SocketAddr,
    ready: mpsc::UnboundedSender<Result<(Opened, Duration), String>>,
    mut teardown: watch::Receiver<bool>,
) -> Result<Ended, String> {
    // The gate is never closed, so a wait for it ends with a permit.
    let permit = match &run.gate {
        Some(g) => g.clone().acquire_owned().await.ok(),
        None => None,
    };
    // Timed as the loadgen times its connect+upgrade latency: from the start of the
    // connect (once the gate lets it start) to the 101.
    let t0 = tokio::time::Instant::now();
    let opened = match tokio::time::timeout(STEP, open(&run, from)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "not open (connect, TLS, 101) in {} s",
            STEP.as_secs()
        )),
    };
    drop(permit);
    let (mut s, mut after) = match opened {
        Ok((s, how, after)) => {
            let _ = ready.send(Ok((how, t0.elapsed())));
            (s, after)
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    drop(ready);
    // The teardown comes once every connection is open and held (or the run gave up).
    let _ = teardown.wait_for(|&go| go).await;
    s.write_all(&CLOSE).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    // The server's Close, then its FIN (RFC 6455 7.1.1: the server closes TCP first).
    // Over TLS a FIN without close_notify reads as UnexpectedEof: still the end.
    let fin = tokio::time::timeout(STEP, async {
        loop {
            after.reserve(64);
            match s.read_buf(&mut after).await {
                Ok(0) => return Ok::<bool, std::io::Error>(true),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
            if after.len() > 4096 {
                return Err(std::io::Error::other(
                    "more than a Close after the teardown",
                ));
            }
        }
    })
    .await;
    match fin {
        Ok(Ok(notified)) => Ok(Ended {
            clean: closed_cleanly(&after),
            notified,
        }),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no FIN in {} s after the Close", STEP.as_secs())),
    }
}

/// Openings' latencies in µs, 1 µs to the 10 s a step may take, 3 significant digits.
fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, STEP.as_micros() as u64 * 2, 3)
        .expect("valid histogram bounds")
}

/// Run the client; prints a JSON summary on stdout.
pub fn run(a: &UpMeterArgs) -> Result<(), String> {
    let paced = a.rate.is_finite() && a.rate > 0.0 && a.hold.is_finite() && a.hold >= 0.0;
    if a.connections == 0 || a.sources == 0 || !paced {
        return Err(
            "--connections, --sources and --rate must be positive, --hold not negative".into(),
        );
    }
    let end = target(&a.url)?;
    let tls = match (&end.tls_name, &a.tls_ca) {
        (None, _) => None,
        (Some(name), Some(ca)) => Some((tls_connector(ca, a.tls_resumption)?, name.clone())),
        (Some(_), None) => return Err("wss:// needs --tls-ca (the CA to trust)".into()),
    };
    let shared = Arc::new(Shared {
        to: end.addr,
        request: format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            end.path, end.host
        ),
        tls,
        gate: (a.concurrency > 0).then(|| Arc::new(Semaphore::new(a.concurrency))),
    });
    let is_tls = shared.tls.is_some();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cpu = |pid: Option<u32>| pid.and_then(crate::proc::cpu_seconds);
    let wakeups = server_wakeups;
    let me = Some(std::process::id());
    let v = rt.block_on(async {
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let (teardown_tx, teardown_rx) = watch::channel(false);
        let (s0, m0, w0) = (cpu(a.server_pid), cpu(me), wakeups(a.server_pid));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(a.connections);
        for i in 0..a.connections {
            let due = start + Duration::from_secs_f64(i as f64 / a.rate);
            if tokio::time::Instant::now() < due {
                tokio::time::sleep_until(due).await;
            }
            let from = SocketAddr::from(([127, 0, 5, 1 + (i % usize::from(a.sources)) as u8], 0));
            tasks.push(tokio::spawn(connection(
                shared.clone(),
                from,
                ready_tx.clone(),
                teardown_rx.clone(),
            )));
        }
        drop(ready_tx);
        // Every connection upgraded or failed: each has STEP to do it, so this ends.
        let (mut upgraded, mut failed, mut first_error) = (0u64, 0u64, None);
        let (mut full, mut resumed) = (0u64, 0u64);
        let mut latency = latency_histogram();
        while let Some(r) = ready_rx.recv().await {
            match r {
                Ok((how, took)) => {
                    upgraded += 1;
                    let _ = latency.record((took.as_micros() as u64).max(1));
                    match how {
                        Opened::Plain => {}
                        Opened::Full => full += 1,
                        Opened::Resumed => resumed += 1,
                    }
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if upgraded == 0 {
            let why = first_error.unwrap_or_default();
            return Err(format!("no connection upgraded: {why}"));
        }
        let ramp = start.elapsed().as_secs_f64();
        let (s_ramp, m_ramp, w_ramp) = (cpu(a.server_pid), cpu(me), wakeups(a.server_pid));
        tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
        let (s_hold, m_hold, w_hold) = (cpu(a.server_pid), cpu(me), wakeups(a.server_pid));
        let _ = teardown_tx.send(true);
        let (mut clean, mut unclean, mut close_failed, mut unnotified) = (0u64, 0u64, 0u64, 0u64);
        for t in tasks {
            // Bounded: each task's steps time out.
            match t.await {
                Ok(Ok(ended)) => {
                    if ended.clean {
                        clean += 1;
                    } else {
                        unclean += 1;
                    }
                    if !ended.notified {
                        unnotified += 1;
                    }
                }
                Ok(Err(e)) => {
                    close_failed += 1;
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    close_failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        // Failed opens are counted once (above), not again as failed closes.
        let close_failed = close_failed.saturating_sub(failed);
        let m_end = cpu(me);
        let s_closed = tokio::task::spawn_blocking({
            let pid = a.server_pid;
            move || holdfast_loadgen::report::settled_cpu(pid)
        })
        .await
        .ok()
        .flatten();
        let w_closed = wakeups(a.server_pid);
        let per = |from, to, n| per_item(from, to, n, 1e6);
        let closed = clean + unclean;
        let mut v = json!({
            "client": "holdfast-bench upgrade-client (tokio current-thread: epoll, one task per connection; connect, [rustls handshake,] upgrade, Close, wait for the server's Close and FIN)",
            "connections_wanted": a.connections,
            "established": upgraded,
            "failed_to_open": failed,
            "closed_cleanly": clean,
            "closed_without_close_frame": unclean,
            "failed_to_close": close_failed,
            "first_error": first_error,
            "ramp_seconds": ramp,
            "upgrades_per_s": upgraded as f64 / ramp.max(1e-9),
            "server_cpu_us_per_upgrade": per(s0, s_ramp, upgraded),
            "server_cpu_us_per_close": per(s_hold, s_closed, closed),
            "server_cpu_seconds_ramp": s0.zip(s_ramp).map(|(a, b)| b - a),
            "client_cpu_seconds_ramp": m0.zip(m_ramp).map(|(a, b)| b - a),
            "client_cpu_seconds": m0.zip(m_end).map(|(a, b)| b - a),
            // What the client looked like, as the loadgen's `hold` reports it: its own CPU
            // per connection, how often the server slept and was woken per connection, and
            // each opening's latency (connect to 101).
            "client_cpu_us_per_upgrade": per(m0, m_ramp, upgraded),
            "client_cpu_us_per_close": per(m_hold, m_end, closed),
            "server_wakeups_per_upgrade": per_item(w0, w_ramp, upgraded, 1.0),
            "server_wakeups_per_close": per_item(w_hold, w_closed, closed, 1.0),
            "connect_upgrade_latency_us": hist_json(&latency, 1.0),
        });
        if is_tls {
            v["tls_handshakes"] = json!({ "full": full, "resumed": resumed });
            v["closes_without_close_notify"] = json!(unnotified);
        }
        Ok::<_, String>(v)
    })?;
    holdfast::say!("{v}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_an_address_a_path_and_for_wss_a_name() {
        let e = target("ws://127.0.0.1:9/echo").unwrap();
        assert_eq!(
            (e.addr.port(), e.host.as_str(), e.path.as_str()),
            (9, "127.0.0.1:9", "/echo")
        );
        assert!(e.tls_name.is_none());
        let e = target("wss://localhost:9/echo").unwrap();
        assert!(e.addr.is_ipv4() && e.addr.ip().is_loopback(), "{}", e.addr);
        assert_eq!(e.host, "localhost:9");
        assert_eq!(e.tls_name, Some(ServerName::try_from("localhost").unwrap()));
        let e = target("wss://127.0.0.1:9/").unwrap();
        assert_eq!(e.tls_name, Some(ServerName::try_from("127.0.0.1").unwrap()));
        assert!(target("http://127.0.0.1:9/").is_err());
        assert!(target("ws://127.0.0.1/").is_err(), "no port");
    }

    #[test]
    fn a_clean_close_is_one_close_frame() {
        assert!(closed_cleanly(&[0x88, 0x02, 0x03, 0xe8]));
        assert!(closed_cleanly(&[0x88, 0x00]));
        assert!(closed_cleanly(b"\x88\x04\x03\xe8ok"));
        assert!(!closed_cleanly(&[]), "a FIN without a Close");
        assert!(
            !closed_cleanly(&[0x88, 0x01, 0x03]),
            "a 1-byte close body is invalid"
        );
        assert!(
            !closed_cleanly(&[0x88, 0x02, 0x03, 0xe8, 0x81, 0x00]),
            "more after the Close"
        );
        assert!(!closed_cleanly(&[0x81, 0x00]));
    }
}
