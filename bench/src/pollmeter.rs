//! An independent long-poll client, to check the loadgen's long-poll figures: plain TCP
//! sockets on a tokio runtime (epoll, `--threads` threads, one task per poller), a request
//! written by hand, the answer read by its `Content-Length` and parsed with serde's derive
//! (typed, borrowing), the connection kept for the next poll when the server keeps it
//! (`--poll-connections per-poll`: a new connection per poll), and its own publisher (a thread: `POST /publish` text bodies
//! on one keep-alive connection to the admin address, each body the send time in ns since the
//! client started). It shares no code with the loadgen's io_uring engine or its poll
//! reader, so when both drive the same server at the same rate, the server's CPU per
//! delivery and the latency tell whether the loadgen's figures are what another client
//! would see.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// `holdfast-bench poll-client` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PollMeterArgs {
    /// http://HOST:PORT of the server's data port (`/poll` is asked there).
    #[arg(long)]
    pub url: String,
    /// The server's admin address (host:port): the client publishes there.
    #[arg(long)]
    pub admin: String,
    /// Long-poll clients, each with one poll in flight.
    #[arg(long, default_value_t = 1000)]
    pub pollers: usize,
    /// The topic every poller subscribes to and the publisher publishes on.
    #[arg(long, default_value = "pollmeter")]
    pub topic: String,
    /// Publishes per second (open loop: on schedule whatever the answers' pace).
    #[arg(long, default_value_t = 10.0)]
    pub publish_rate: f64,
    /// Seconds of publishing before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Source addresses the pollers connect from, taken in turn: the first three octets and
    /// a count (127.0.3.x, x = 1..=count).
    #[arg(long, default_value_t = 200)]
    pub sources: u8,
    /// The server's PID, for its CPU time over the measurement.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Runtime threads for the pollers (the publisher has its own).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// `kept` (a poll's connection carries the next poll while the server keeps it) or
    /// `per-poll` (every poll asks `Connection: close` and connects anew).
    #[arg(long, default_value = "kept", value_parser = ["kept", "per-poll"])]
    pub poll_connections: String,
}

/// A poll's answer, as the server sends it.
#[derive(Debug, Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    cursor: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<Item<'a>>,
}

/// One item of an answer (only what the client needs).
#[derive(Debug, Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
}

/// What one poller saw.
struct Seen {
    hist: Histogram<u64>,
    /// From a poll's request written to its answer read (ns), measured polls only.
    wait: Histogram<u64>,
    deliveries: u64,
    polls: u64,
    last_seq: u64,
    errors: u64,
    /// Messages that arrived with a number not one past the last (lost or repeated).
    out_of_order: u64,
}

fn host_of(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("the poll client speaks http:// only")?;
    Ok(rest.split('/').next().unwrap_or(rest).to_string())
}

/// The body of a whole HTTP/1.1 200 answer, and whether the server keeps the connection
/// (`Connection: keep-alive`); an error names a refusal or an incomplete answer.
fn body_of(raw: &[u8]) -> Result<(&[u8], bool), String> {
    let (end, len, keep) = head_of(raw)?.ok_or("an answer without a complete head")?;
    if !raw.starts_with(b"HTTP/1.1 200 ") {
        return Err(format!("refused: {}", status_line(raw)));
    }
    let len = len.ok_or("an answer without a Content-Length")?;
    raw.get(end..end + len)
        .map(|b| (b, keep))
        .ok_or_else(|| "an answer cut short".to_string())
}

/// An answer's first line (its status), for an error that names it.
pub(crate) fn status_line(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(raw.split(|&b| b == b'\r').next().unwrap_or_default())
}

/// An answer's head, once whole: where its body starts, its `Content-Length`, and whether
/// it keeps the connection.
#[allow(clippy::type_complexity)]
pub(crate) fn head_of(raw: &[u8]) -> Result<Option<(usize, Option<usize>, bool)>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if raw.len() > 16 << 10 {
            Err("an answer head over 16 KiB".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let (mut len, mut keep) = (None, false);
    for line in head.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            len = Some(v.trim().parse::<usize>().map_err(|e| e.to_string())?);
        } else if k.eq_ignore_ascii_case("connection") {
            keep = v.trim().eq_ignore_ascii_case("keep-alive");
        }
    }
    Ok(Some((end + 4, len, keep)))
}

/// Read one answer on `s` into `raw` (its head, then its `Content-Length` of body, at most
/// 16 MiB); an answer without a length is read to the end of the connection.
async fn read_answer(s: &mut tokio::net::TcpStream, raw: &mut Vec<u8>) -> Result<(), String> {
    loop {
        if let Some((start, len, _)) = head_of(raw)? {
            let Some(len) = len else {
                s.take(16 << 20)
                    .read_to_end(raw)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            };
            if len > 16 << 20 {
                return Err("an answer over 16 MiB".into());
            }
            if raw.len() >= start + len {
                return Ok(());
            }
        }
        // Straight into the answer's buffer (its spare room; no zeroed chunk per read).
        raw.reserve(16 << 10);
        let n = s.read_buf(raw).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection ended before the answer did".into());
        }
    }
}

/// Nanoseconds since `start`.
pub(crate) fn ns_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Poll until `stop` from `source`, the next poll from the answer's cursor: on the same
/// connection when the server keeps it (unless `reconnect`), else on a new one.
async fn poller(
    host: String,
    source: std::net::SocketAddr,
    topic: String,
    start: Instant,
    (measuring, stop): (Arc<AtomicBool>, Arc<AtomicBool>),
    reconnect: bool,
) -> Seen {
    let mut seen = Seen {
        hist: Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds"),
        wait: Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds"),
        deliveries: 0,
        polls: 0,
        last_seq: 0,
        errors: 0,
        out_of_order: 0,
    };
    let mut cursor = String::new();
    let mut raw = Vec::with_capacity(64 * 1024);
    let target: std::net::SocketAddr = match host.parse() {
        Ok(a) => a,
        Err(_) => {
            seen.errors += 1;
            return seen;
        }
    };
    let close = if reconnect {
        "Connection: close\r\n"
    } else {
        ""
    };
    let mut kept: Option<tokio::net::TcpStream> = None;
    // Bounded: each poll is answered within the server's hold (20 s) or times out.
    while !stop.load(Ordering::Relaxed) {
        let req = if cursor.is_empty() {
            format!("GET /poll?topics={topic} HTTP/1.1\r\nHost: {host}\r\n{close}\r\n")
        } else {
            format!(
                "GET /poll?topics={topic}&cursor={cursor} HTTP/1.1\r\nHost: {host}\r\n{close}\r\n"
            )
        };
        raw.clear();
        let asked = ns_since(start);
        let conn = kept.take();
        let got = tokio::time::timeout(Duration::from_secs(30), async {
            let mut s = match conn {
                Some(s) => s,
                None => {
                    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
                    sock.bind(source).map_err(|e| e.to_string())?;
                    sock.connect(target).await.map_err(|e| e.to_string())?
                }
            };
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            read_answer(&mut s, &mut raw).await?;
            Ok::<_, String>(s)
        })
        .await;
        let now = ns_since(start);
        let parsed = match got {
            Ok(Ok(s)) => body_of(&raw).and_then(|(b, keep)| {
                if keep && !reconnect {
                    kept = Some(s);
                }
                serde_json::from_slice::<Answer<'_>>(b).map_err(|e| e.to_string())
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("no answer in 30 s".into()),
        };
        let answer = match parsed {
            Ok(a) => a,
            Err(_) => {
                kept = None;
                seen.errors += 1;
                if seen.errors > 100 {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        seen.polls += 1;
        let counting = measuring.load(Ordering::Relaxed);
        if counting {
            let _ = seen.wait.record(now.saturating_sub(asked).max(1_000));
        }
        for item in &answer.messages {
            if item.kind != "message" {
                continue;
            }
            if let Some(seq) = item.seq {
                if seen.last_seq != 0 && seq != seen.last_seq + 1 {
                    seen.out_of_order += 1;
                }
                seen.last_seq = seq;
            }
            let stamp = item.data.as_deref().and_then(|d| d.parse::<u64>().ok());
            if counting {
                seen.deliveries += 1;
                if let Some(t) = stamp {
                    let _ = seen.hist.record(now.saturating_sub(t).max(1_000));
                }
            }
        }
        cursor = answer.cursor.into_owned();
    }
    seen
}

/// Publish on schedule until `stop` (its own thread, blocking I/O: the pollers' runtime
/// never delays a publish); the last sequence number the server gave goes to `last_seq`.
fn publisher(
    admin: &str,
    topic: &str,
    rate: f64,
    start: Instant,
    stop: &AtomicBool,
    last_seq: &AtomicU64,
) -> Result<u64, String> {
    use std::io::{BufRead, Read, Write};
    let s = std::net::TcpStream::connect(admin).map_err(|e| format!("admin {admin}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::new(s);
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        n += 1;
        let body = ns_since(start).to_string();
        let req = format!(
            "POST /publish?topic={topic} HTTP/1.1\r\nHost: {admin}\r\nConnection: keep-alive\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        w.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("HTTP/1.1 200") {
            return Err(format!("publish refused: {}", line.trim()));
        }
        let mut len = 0usize;
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("admin closed the connection".into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().map_err(|_| "a bad Content-Length")?;
                }
            }
        }
        let mut b = vec![0u8; len.min(1 << 16)];
        r.read_exact(&mut b).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
        if let Some(seq) = v["seq"].as_u64() {
            last_seq.store(seq, Ordering::Relaxed);
        }
    }
    Ok(n)
}

/// Run the client; prints a JSON summary on stdout.
pub fn run(a: &PollMeterArgs) -> Result<(), String> {
    let host = host_of(&a.url)?;
    if a.publish_rate <= 0.0 || a.sources == 0 || a.pollers == 0 {
        return Err("--publish-rate, --sources and --pollers must be positive".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let v = rt.block_on(async {
        let start = Instant::now();
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_pub = Arc::new(AtomicBool::new(false));
        let last_pub = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..a.pollers)
            .map(|i| {
                let src = std::net::SocketAddr::from((
                    [127, 0, 3, 1 + (i % usize::from(a.sources)) as u8],
                    0,
                ));
                tokio::spawn(poller(
                    host.clone(),
                    src,
                    a.topic.clone(),
                    start,
                    (measuring.clone(), stop.clone()),
                    a.poll_connections == "per-poll",
                ))
            })
            .collect();
        let publishing = {
            let (admin, topic, rate) = (a.admin.clone(), a.topic.clone(), a.publish_rate);
            let (stop_pub, last_pub) = (stop_pub.clone(), last_pub.clone());
            std::thread::spawn(move || publisher(&admin, &topic, rate, start, &stop_pub, &last_pub))
        };
        tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
        let cpu = |pid: Option<u32>| pid.and_then(crate::proc::cpu_seconds);
        let me = Some(std::process::id());
        let (s0, m0, t0, p0) = (
            cpu(a.server_pid),
            cpu(me),
            Instant::now(),
            last_pub.load(Ordering::Relaxed),
        );
        measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
        measuring.store(false, Ordering::Relaxed);
        let (s1, m1, secs, p1) = (
            cpu(a.server_pid),
            cpu(me),
            t0.elapsed().as_secs_f64(),
            last_pub.load(Ordering::Relaxed),
        );
        // The pollers stop after their poll in flight; the publisher keeps waking held polls
        // for a moment, then stops.
        stop.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_pub.store(true, Ordering::Relaxed);
        // Bounded: the publisher's reads time out after 10 s.
        let published = publishing
            .join()
            .map_err(|_| "the publisher panicked".to_string())??;
        let mut hist = Histogram::<u64>::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds");
        let mut wait = hist.clone();
        let (mut deliveries, mut polls, mut errors, mut disorder, mut unfinished) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for t in tasks {
            // Bounded: a poller ends after its poll in flight (held at most --poll-hold).
            match tokio::time::timeout(Duration::from_secs(30), t).await {
                Ok(Ok(s)) => {
                    hist.add(&s.hist).map_err(|e| e.to_string())?;
                    wait.add(&s.wait).map_err(|e| e.to_string())?;
                    deliveries += s.deliveries;
                    polls += s.polls;
                    errors += s.errors;
                    disorder += s.out_of_order;
                }
                _ => unfinished += 1,
            }
        }
        let server_cpu = s0.zip(s1).map(|(a, b)| b - a);
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e6;
        Ok::<_, String>(json!({
            "client": format!(
                "holdfast-bench poll-client (tokio, {} threads: epoll, one task per poller, {}, answers parsed by serde derive; publisher on its own thread)",
                a.threads.max(1),
                if a.poll_connections == "per-poll" { "a new connection per poll" } else { "connections kept between polls" }
            ),
            "pollers": a.pollers,
            "publish_rate": a.publish_rate,
            "published": published,
            "published_measured": p1.saturating_sub(p0),
            "deliveries": deliveries,
            "deliveries_per_s": deliveries as f64 / secs,
            "polls_per_s": polls as f64 / (secs + a.warmup),
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": hist.max() as f64 / 1e6, "count": hist.len()},
            // A poll's request written → its answer read, and messages per answer.
            "poll_wait_ms": {"p50": wait.value_at_quantile(0.5) as f64 / 1e6, "p99": wait.value_at_quantile(0.99) as f64 / 1e6},
            "messages_per_answer": deliveries as f64 / wait.len().max(1) as f64,
            "server_cpu_seconds": server_cpu,
            "deliveries_per_server_cpu_s": server_cpu.filter(|c| *c > 0.0).map(|c| deliveries as f64 / c),
            "client_cpu_seconds": m0.zip(m1).map(|(a, b)| b - a),
            // What the window's publishes owe every poller: deliveries short of it are late
            // (latency longer than the window can see) or lost (out_of_order says which).
            "deliveries_expected": p1.saturating_sub(p0) * a.pollers as u64,
            "out_of_order": disorder,
            "errors": errors,
            "unfinished_pollers": unfinished,
            "measure_seconds": secs,
        }))
    })?;
    holdfast::say!("{v}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_from_its_body_and_a_refusal_is_named() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"a\":\"b\"}";
        assert_eq!(body_of(raw).unwrap(), (&b"{\"a\":\"b\"}"[..], false));
        let kept = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(body_of(kept).unwrap(), (&b"{}"[..], true));
        let e =
            body_of(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n{}").unwrap_err();
        assert!(e.contains("503"), "{e}");
        assert!(body_of(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        assert!(
            body_of(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err(),
            "short"
        );
        assert!(
            head_of(&[b'x'; 20 << 10]).is_err(),
            "a head without an end is bounded"
        );
        let body = br#"{"cursor":"t:3@e1","messages":[{"type":"subscribed","topic":"t"},
            {"type":"message","topic":"t","seq":3,"data":"12345"},
            {"type":"message","topic":"t","seq":4,"data":"a \"quoted\" one"}]}"#;
        let a: Answer<'_> = serde_json::from_slice(body).unwrap();
        assert_eq!(a.cursor, "t:3@e1");
        assert_eq!(a.messages.len(), 3);
        assert_eq!(a.messages[1].data.as_deref(), Some("12345"));
        assert_eq!(a.messages[2].data.as_deref(), Some("a \"quoted\" one"));
        assert_eq!(a.messages[0].seq, None);
        assert_eq!(host_of("http://127.0.0.1:9/poll").unwrap(), "127.0.0.1:9");
        assert!(host_of("https://x").is_err());
    }
}
