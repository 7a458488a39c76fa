//! An independent fan-out client, to check the loadgen's fan-out figures: plain TCP sockets
//! on a tokio runtime (epoll, `--threads` threads, one task per subscriber), the upgrade and
//! the frames read by hand, text deliveries parsed with serde's derive (typed, borrowing),
//! and its own publisher on a thread: `POST /publish` on the admin address, pipelined
//! (16-byte binary bodies, the send time in the first 8, as the loadgen's admin publisher
//! sends), or a WebSocket client publishing `{"op":"publish",…}` text. It shares no code with the
//! loadgen's io_uring engine, its frame decoder or its delivery reader, so when both drive
//! the same server at the same rate, the latency and the server's CPU per delivery tell
//! whether the loadgen's figures are what another client would see.
//!
//! A publish the server refuses for now (its back-pressure: a 503, or an error whose reason
//! asks to retry later) is counted (`publishes_refused`) and publishing goes on, as the
//! loadgen's publisher does, so the client can measure past a server's knee; any other
//! refusal ends the run with its reason. `--publish-burst N` writes N publishes together at
//! each paced time (a bursty publisher).
//!
//! A delivery's time is taken once per read (every delivery in one read arrived together).
//! What it shares with the loadgen is a measurement of the kernel, not a client part: the
//! bytes left unread in its sockets (`holdfast_loadgen::unread`), its own part of the
//! latency it reports.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::pollmeter::{head_of, ns_since, status_line};
// Whether a refused publish's reason asks to retry later (the server's back-pressure, 503
// over HTTP): the protocol's one definition (docs/protocol.md), not a copy of it here.
use holdfast::backplane::asks_to_retry as retry_later;

/// `holdfast-bench fanout-client` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FanMeterArgs {
    /// ws://HOST:PORT/PATH of a pub/sub endpoint that subscribes with `?topics=T`.
    #[arg(long)]
    pub url: String,
    /// The server's admin address (host:port), for `--publish-via admin`.
    #[arg(long)]
    pub admin: Option<String>,
    /// Subscribers, all on one topic.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// The topic.
    #[arg(long, default_value = "fanmeter")]
    pub topic: String,
    /// Publishes per second (open loop: on schedule whatever the deliveries' pace).
    #[arg(long, default_value_t = 10.0)]
    pub publish_rate: f64,
    /// `admin` (binary bodies to `POST /publish`) or `ws` (text from a WebSocket client).
    #[arg(long, default_value = "admin", value_parser = ["admin", "ws"])]
    pub publish_via: String,
    /// Publishes written together, in one write, at each paced time (`--publish-rate` stays
    /// publishes a second): 1 is a steady publisher, more a bursty one.
    #[arg(long, default_value_t = 1)]
    pub publish_burst: u32,
    /// Seconds of publishing before measuring (after every subscriber is subscribed).
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds after the last publish for deliveries still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Source addresses the subscribers connect from, taken in turn (127.0.4.x, x =
    /// 1..=count).
    #[arg(long, default_value_t = 200)]
    pub sources: u8,
    /// Subscribers connecting at once (from connect to the 101).
    #[arg(long, default_value_t = 500)]
    pub connect_concurrency: usize,
    /// The server's PID, for its CPU time over the measurement.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Runtime threads for the subscribers (the publisher has its own); 0: one per CPU
    /// this process may use, as the loadgen runs one engine thread per CPU.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// A text message from the server (only what the client needs).
#[derive(Debug, Deserialize)]
struct Text<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
}

/// One server frame at the front of a buffer.
#[derive(Debug, PartialEq)]
struct Frame {
    fin: bool,
    op: u8,
    /// Where its payload lies in the buffer.
    payload: std::ops::Range<usize>,
}

/// The largest frame a subscriber accepts (deliveries are tens of bytes).
const MAX_FRAME: u64 = 1 << 20;

/// The frame at the front of `b`: Ok(None) until it is whole; an error for a masked frame
/// (a server must not mask) or one over `MAX_FRAME`.
fn next_frame(b: &[u8]) -> Result<Option<Frame>, String> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err("a masked frame from the server".into());
    }
    let (len, head) = match b1 & 0x7f {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => (u64::from_be_bytes(l.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        l => (u64::from(l), 2),
    };
    if len > MAX_FRAME {
        return Err(format!("a {len}-byte frame"));
    }
    let end = head + len as usize;
    if b.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        op: b0 & 0x0f,
        payload: head..end,
    }))
}

/// A client frame (masked) of opcode `op` around `payload`.
fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x21, 0x43, 0x65, 0x87];
    let mut f = vec![0x80 | op];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// A delivery's number and stamp: binary `[len][topic][seq BE][stamp LE …]` or a text
/// `{"type":"message","seq":N,"data":"STAMP",…}`. `Err(seq)` for a text `subscribed`.
fn delivery(op: u8, p: &[u8]) -> Option<Result<(u64, Option<u64>), u64>> {
    if op == 2 {
        let l = usize::from(*p.first()?);
        let seq = u64::from_be_bytes(p.get(1 + l..9 + l)?.try_into().ok()?);
        let stamp = p
            .get(9 + l..17 + l)
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")));
        return Some(Ok((seq, stamp)));
    }
    let t: Text<'_> = serde_json::from_slice(p).ok()?;
    match &*t.kind {
        "message" => Some(Ok((t.seq?, t.data.and_then(|d| d.parse().ok())))),
        "subscribed" => Some(Err(t.seq.unwrap_or(0))),
        _ => None,
    }
}

/// The upgrade request for `path` on `host`.
fn upgrade(path: &str, host: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Where the 101's head ends in `b` (frames may follow it); Ok(None) until it is whole.
pub(crate) fn upgraded(b: &[u8]) -> Result<Option<usize>, String> {
    let Some((end, _, _)) = head_of(b)? else {
        return Ok(None);
    };
    if !b.starts_with(b"HTTP/1.1 101 ") {
        return Err(format!("refused: {}", status_line(b)));
    }
    Ok(Some(end))
}

/// What one subscriber saw.
struct Seen {
    hist: Histogram<u64>,
    /// Deliveries of messages published in the window, and all of them.
    measured: u64,
    deliveries: u64,
    last_seq: u64,
    /// Numbers not one past the last: skipped (lost), and repeated or older.
    lost: u64,
    repeated: u64,
    /// Reads that returned data while the window was open, and the deliveries they held:
    /// how far behind the client read (one delivery a read: it kept up; many: its sockets
    /// held a backlog when it came to them).
    window_reads: u64,
    window_read_deliveries: u64,
    window_read_bytes: u64,
    error: Option<String>,
}

/// Shared between the subscribers and the run.
struct Flags {
    /// The measured window, in publish stamps (ns since start): deliveries of messages
    /// published in it are counted and timed, whenever they arrive.
    window_from: AtomicU64,
    window_to: AtomicU64,
    stop: AtomicBool,
    /// Subscribers between their connect and their 101 at most at once (a listen backlog
    /// is finite).
    connecting: tokio::sync::Semaphore,
}

/// Subscribe from `source` and read deliveries until `stop`.
async fn subscriber(
    target: std::net::SocketAddr,
    source: std::net::SocketAddr,
    request: Arc<str>,
    start: Instant,
    flags: Arc<Flags>,
    ready: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
) -> Seen {
    let mut seen = Seen {
        hist: Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds"),
        measured: 0,
        deliveries: 0,
        last_seq: 0,
        lost: 0,
        repeated: 0,
        window_reads: 0,
        window_read_deliveries: 0,
        window_read_bytes: 0,
        error: None,
    };
    let mut ready = Some(ready);
    let read = subscribe_and_read(
        target, source, &request, start, &flags, &mut seen, &mut ready,
    );
    if let Err(e) = read.await {
        seen.error = Some(e);
    }
    // Never subscribed: the ramp need not wait for it, and hears why.
    if let Some(tx) = ready {
        let why = seen
            .error
            .clone()
            .unwrap_or_else(|| "ended before subscribing".into());
        let _ = tx.send(Err(why));
    }
    seen
}

async fn subscribe_and_read(
    target: std::net::SocketAddr,
    source: std::net::SocketAddr,
    request: &str,
    start: Instant,
    flags: &Flags,
    seen: &mut Seen,
    ready: &mut Option<tokio::sync::mpsc::UnboundedSender<Result<(), String>>>,
) -> Result<(), String> {
    let mut permit = Some(
        flags
            .connecting
            .acquire()
            .await
            .map_err(|e| e.to_string())?,
    );
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(source).map_err(|e| e.to_string())?;
    let mut s = tokio::time::timeout(Duration::from_secs(30), sock.connect(target))
        .await
        .map_err(|_| "no connection in 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut open = false;
    // Bounded: every read waits at most 1 s before the stop flag is looked at again.
    while !flags.stop.load(Ordering::Relaxed) {
        buf.reserve(4096);
        let n = match tokio::time::timeout(Duration::from_secs(1), s.read_buf(&mut buf)).await {
            Err(_) => continue,
            Ok(r) => r.map_err(|e| e.to_string())?,
        };
        if n == 0 {
            return Err("the server ended the connection".into());
        }
        let now = ns_since(start);
        let mut from = 0;
        if !open {
            match upgraded(&buf)? {
                Some(end) => (open, from) = (true, end),
                None => continue,
            }
            drop(permit.take()); // upgraded: the next subscriber may connect
        }
        let window =
            flags.window_from.load(Ordering::Relaxed)..flags.window_to.load(Ordering::Relaxed);
        let (in_window, before) = (window.contains(&now), seen.deliveries);
        while let Some(f) = next_frame(&buf[from..])? {
            let p = &buf[from + f.payload.start..from + f.payload.end];
            match f.op {
                _ if !f.fin || f.op == 0 => return Err("a fragmented message".into()),
                1 | 2 => match delivery(f.op, p) {
                    Some(Ok((seq, stamp))) => {
                        seen.deliveries += 1;
                        if seq > seen.last_seq + 1 {
                            seen.lost += seq - seen.last_seq - 1;
                        } else if seq <= seen.last_seq {
                            seen.repeated += 1;
                        }
                        seen.last_seq = seen.last_seq.max(seq);
                        if let Some(t) = stamp.filter(|t| window.contains(t)) {
                            seen.measured += 1;
                            let _ = seen.hist.record(now.saturating_sub(t).max(1_000));
                        }
                    }
                    Some(Err(seq)) => {
                        seen.last_seq = seq;
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    None => {}
                },
                8 => {
                    let code = p.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return Err(format!("closed by the server ({code:?})"));
                }
                9 => {
                    let pong = client_frame(10, p);
                    s.write_all(&pong).await.map_err(|e| e.to_string())?;
                }
                _ => {}
            }
            from += f.payload.end;
        }
        if in_window {
            seen.window_reads += 1;
            seen.window_read_deliveries += seen.deliveries - before;
            seen.window_read_bytes += n as u64;
        }
        buf.drain(..from);
    }
    Ok(())
}

/// One read from a publisher's connection (its reads time out each second) added to `buf`:
/// Ok(false) when the read timed out, an error when the connection ended.
fn read_more(r: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Result<bool, String> {
    use std::io::{ErrorKind, Read};
    let mut chunk = [0u8; 4096];
    match r.read(&mut chunk) {
        Ok(0) => Err("the server ended the publisher's connection".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Send `burst` publishes (`send(burst)`, one write) at each paced time, `rate` publishes a
/// second from now, until `stop` or `ended()` (the publisher's reader ended); how many were
/// sent, and the write error that stopped them.
fn paced(
    (rate, burst): (f64, u32),
    (stop, ended): (&AtomicBool, impl Fn() -> bool),
    answers: &Answers,
    mut send: impl FnMut(u32) -> Result<(), String>,
) -> (u64, Result<(), String>) {
    let t0 = Instant::now();
    let (mut n, mut ticks) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) && !ended() {
        let due = t0 + Duration::from_secs_f64(ticks as f64 * f64::from(burst) / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        ticks += 1;
        n += u64::from(burst);
        answers.sent.fetch_add(burst.into(), Ordering::Relaxed);
        if let Err(e) = send(burst) {
            return (n, Err(e));
        }
    }
    (n, Ok(()))
}

/// What a publisher's answers said.
#[derive(Default)]
struct Answers {
    /// Publishes sent, and answered (numbered) by the server.
    sent: AtomicU64,
    answered: AtomicU64,
    /// The newest number given.
    last_seq: AtomicU64,
    /// Publishes the server refused for now (answered, with a reason for which
    /// [`retry_later`] holds, or a 503): counted, and publishing goes on.
    refused: AtomicU64,
    /// The first of those refusals, as the server gave it.
    refusal: std::sync::OnceLock<String>,
}

impl Answers {
    fn numbered(&self, seq: Option<u64>) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if let Some(seq) = seq {
            self.last_seq.fetch_max(seq, Ordering::Relaxed);
        }
    }

    /// A publish refused for now, for `why`.
    fn refused(&self, why: String) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.refused.fetch_add(1, Ordering::Relaxed);
        let _ = self.refusal.set(why);
    }

    /// Whether a publisher's reader may end: publishing has ended (`done`) and every
    /// publish is answered, or 10 s have passed since (the shortfall is reported).
    fn reader_may_end(&self, done: &AtomicBool, since: &mut Option<Instant>) -> bool {
        if !done.load(Ordering::Relaxed) {
            return false;
        }
        let t = *since.get_or_insert_with(Instant::now);
        self.answered.load(Ordering::Relaxed) >= self.sent.load(Ordering::Relaxed)
            || t.elapsed() > Duration::from_secs(10)
    }
}

/// Publish `{"op":"publish",…}` text on a WebSocket client until `stop` (its own thread,
/// blocking I/O), each `data` the send time in ns since `start`; a reader thread takes the
/// `published` answers into `answers`.
fn ws_publisher(
    url: &Url,
    topic: &str,
    rate: (f64, u32),
    start: Instant,
    (stop, answers): (&AtomicBool, &Answers),
) -> Result<u64, String> {
    use std::io::Write;
    let s = std::net::TcpStream::connect(&url.host).map_err(|e| format!("{}: {e}", url.host))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    w.write_all(upgrade(&url.path, &url.host).as_bytes())
        .map_err(|e| e.to_string())?;
    let mut r = s;
    let done = AtomicBool::new(false);
    let (open_tx, open_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let open_tx = open_tx; // dropped with the reader: a failure ends the wait for it
            let mut buf = Vec::with_capacity(4096);
            let mut open = false;
            let mut since = None;
            // Bounded: reads time out each second; after publishing ends, at most 10 s more
            // for the answers still owed.
            while !answers.reader_may_end(&done, &mut since) {
                if !read_more(&mut r, &mut buf)? {
                    continue;
                }
                let mut from = 0;
                if !open {
                    match upgraded(&buf)? {
                        Some(end) => (open, from) = (true, end),
                        None => continue,
                    }
                    let _ = open_tx.send(());
                }
                while let Some(f) = next_frame(&buf[from..])? {
                    let p = &buf[from + f.payload.start..from + f.payload.end];
                    if f.op == 1 {
                        let v: serde_json::Value = serde_json::from_slice(p).unwrap_or_default();
                        match v["type"].as_str() {
                            Some("published") => answers.numbered(v["seq"].as_u64()),
                            Some("error") => match v["reason"].as_str() {
                                Some(why) if retry_later(why) => answers.refused(why.into()),
                                _ => return Err(format!("publish refused: {v}")),
                            },
                            _ => {}
                        }
                    }
                    from += f.payload.end;
                }
                buf.drain(..from);
            }
            Ok::<_, String>(())
        });
        // No frame before the server's 101 (RFC 6455 4.1). The reader drops its end of
        // the channel if it fails first.
        if open_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            done.store(true, Ordering::Relaxed);
            let why = reader.join().unwrap_or_else(|_| Err("panicked".into()));
            return Err(format!("the publisher was not upgraded in 10 s ({why:?})"));
        }
        let mut out = Vec::new();
        let (n, result) = paced(rate, (stop, || reader.is_finished()), answers, |burst| {
            out.clear();
            for _ in 0..burst {
                let text =
                    json!({"op": "publish", "topic": topic, "data": ns_since(start).to_string()})
                        .to_string();
                out.extend_from_slice(&client_frame(1, text.as_bytes()));
            }
            w.write_all(&out).map_err(|e| e.to_string())
        });
        done.store(true, Ordering::Relaxed);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err("the publisher's reader panicked".into()));
        result.and(read).map(|()| n)
    })
}

/// `POST /publish` with 16-byte binary bodies (the send time in ns since `start`, little-
/// endian, in the first 8) on one keep-alive connection to `admin`, pipelined: requests go
/// out at their paced times whatever the answers' pace, and a reader thread takes the answers
/// (`{"seq":N}`, in order) into `answers`. A publisher that waited for each answer would
/// let a one-thread server's fan-out set the publish rate (uWebSockets answers between
/// fan-outs: 153 of 1,200 published at 18k × 60/s).
fn admin_publisher(
    admin: &str,
    topic: &str,
    rate: (f64, u32),
    start: Instant,
    (stop, answers): (&AtomicBool, &Answers),
) -> Result<u64, String> {
    use std::io::Write;
    let s = std::net::TcpStream::connect(admin).map_err(|e| format!("admin {admin}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = s;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut buf = Vec::with_capacity(4096);
            let mut since = None;
            // Bounded: reads time out each second; after publishing ends, at most 10 s more
            // for the answers still owed.
            while !answers.reader_may_end(&done, &mut since) {
                if !read_more(&mut r, &mut buf)? {
                    continue;
                }
                let mut from = 0;
                while let Some((body, len, _)) = head_of(&buf[from..])? {
                    let answer = &buf[from..];
                    let (ok, busy) = (
                        answer.starts_with(b"HTTP/1.1 200 "),
                        answer.starts_with(b"HTTP/1.1 503 "),
                    );
                    if !ok && !busy {
                        return Err(format!("publish refused: {}", status_line(answer)));
                    }
                    let len = len.ok_or("a publish answer without a Content-Length")?;
                    let Some(b) = answer.get(body..body + len) else {
                        break;
                    };
                    if ok {
                        let v: serde_json::Value = serde_json::from_slice(b).unwrap_or_default();
                        answers.numbered(v["seq"].as_u64());
                    } else {
                        let why = String::from_utf8_lossy(b);
                        answers.refused(format!("{} ({})", status_line(answer), why.trim()));
                    }
                    from += body + len;
                }
                buf.drain(..from);
            }
            Ok::<_, String>(())
        });
        let head = format!(
            "POST /publish?topic={topic} HTTP/1.1\r\nHost: {admin}\r\nConnection: keep-alive\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 16\r\n\r\n"
        );
        let mut out = Vec::new();
        let (n, result) = paced(rate, (stop, || reader.is_finished()), answers, |burst| {
            out.clear();
            for _ in 0..burst {
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(&ns_since(start).to_le_bytes());
                out.extend_from_slice(&[0; 8]);
            }
            w.write_all(&out).map_err(|e| format!("admin {admin}: {e}"))
        });
        done.store(true, Ordering::Relaxed);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err("the publisher's reader panicked".into()));
        result.and(read).map(|()| n)
    })
}

/// A `ws://HOST:PORT/PATH` URL's parts.
#[derive(Clone)]
struct Url {
    host: String,
    path: String,
}

fn url_of(url: &str) -> Result<Url, String> {
    let (host, path) = crate::meter::ws_url(url, "fan-out client")?;
    Ok(Url { host, path })
}

/// Run the client; prints a JSON summary on stdout.
pub fn run(a: &FanMeterArgs) -> Result<(), String> {
    let url = url_of(&a.url)?;
    if a.publish_rate <= 0.0 || a.publish_burst == 0 || a.sources == 0 || a.subscribers == 0 {
        return Err(
            "--publish-rate, --publish-burst, --sources and --subscribers must be positive".into(),
        );
    }
    if a.publish_via == "admin" && a.admin.is_none() {
        return Err("--publish-via admin needs --admin host:port".into());
    }
    let target: std::net::SocketAddr = url
        .host
        .parse()
        .map_err(|e| format!("{}: {e} (give an IP:port)", url.host))?;
    let sep = if url.path.contains('?') { '&' } else { '?' };
    let request: Arc<str> =
        upgrade(&format!("{}{sep}topics={}", url.path, a.topic), &url.host).into();
    let threads = match a.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let v = rt.block_on(async {
        let start = Instant::now();
        let flags = Arc::new(Flags {
            window_from: AtomicU64::new(u64::MAX),
            window_to: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            connecting: tokio::sync::Semaphore::new(a.connect_concurrency.max(1)),
        });
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let tasks: Vec<_> = (0..a.subscribers)
            .map(|i| {
                let src = std::net::SocketAddr::from((
                    [127, 0, 4, 1 + (i % usize::from(a.sources)) as u8],
                    0,
                ));
                let f = (request.clone(), flags.clone(), ready_tx.clone());
                tokio::spawn(subscriber(target, src, f.0, start, f.1, f.2))
            })
            .collect();
        drop(ready_tx);
        // Every subscriber subscribed or failed (at most 60 s), before anything is published.
        let ramp = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let (mut answered, mut subscribed, mut failure) = (0, 0u64, None);
        while answered < a.subscribers {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(r)) => {
                    answered += 1;
                    match r {
                        Ok(()) => subscribed += 1,
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                _ => break,
            }
        }
        if subscribed == 0 {
            flags.stop.store(true, Ordering::Relaxed);
            let why = failure.unwrap_or_else(|| "none answered in 60 s".into());
            return Err(format!("no subscriber subscribed: {why}"));
        }
        let ramp_s = ramp.elapsed().as_secs_f64();
        let stop_pub = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Answers::default());
        let publishing = {
            let (admin, topic) = (a.admin.clone(), a.topic.clone());
            let rate = (a.publish_rate, a.publish_burst);
            let (stop_pub, answers) = (stop_pub.clone(), answers.clone());
            let via_ws = (a.publish_via == "ws").then(|| url.clone());
            std::thread::spawn(move || match via_ws {
                Some(u) => ws_publisher(&u, &topic, rate, start, (&stop_pub, &answers)),
                None => admin_publisher(
                    admin.as_deref().unwrap_or_default(),
                    &topic,
                    rate,
                    start,
                    (&stop_pub, &answers),
                ),
            })
        };
        tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
        let cpu = |pid: Option<u32>| pid.and_then(crate::proc::cpu_seconds);
        let me = Some(std::process::id());
        let (s0, m0, t0, p0) = (
            cpu(a.server_pid),
            cpu(me),
            Instant::now(),
            answers.last_seq.load(Ordering::Relaxed),
        );
        flags.window_from.store(ns_since(start), Ordering::Relaxed);
        let unread = holdfast_loadgen::unread::Sampler::start(vec![target]);
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
        flags.window_to.store(ns_since(start), Ordering::Relaxed);
        let (s1, m1, secs, p1) = (
            cpu(a.server_pid),
            cpu(me),
            t0.elapsed().as_secs_f64(),
            answers.last_seq.load(Ordering::Relaxed),
        );
        let unread = unread.stop();
        // Publishing stops with the window; deliveries of the window's publishes still on
        // their way are counted (and timed) through the settle.
        stop_pub.store(true, Ordering::Relaxed);
        let published = publishing
            .join()
            .map_err(|_| "the publisher panicked".to_string())??;
        tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
        flags.stop.store(true, Ordering::Relaxed);
        let mut hist = Histogram::<u64>::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds");
        let (mut measured, mut total, mut lost, mut repeated) = (0u64, 0u64, 0u64, 0u64);
        let mut unfinished = 0u64;
        let mut behind = 0u64;
        let (mut reads, mut read_deliveries, mut read_bytes) = (0u64, 0u64, 0u64);
        let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
        let last = answers.last_seq.load(Ordering::Relaxed);
        for t in tasks {
            // Bounded: a subscriber looks at the stop flag at least every second.
            match tokio::time::timeout(Duration::from_secs(10), t).await {
                Ok(Ok(s)) => {
                    hist.add(&s.hist).map_err(|e| e.to_string())?;
                    measured += s.measured;
                    total += s.deliveries;
                    lost += s.lost;
                    repeated += s.repeated;
                    behind += last.saturating_sub(s.last_seq);
                    reads += s.window_reads;
                    read_deliveries += s.window_read_deliveries;
                    read_bytes += s.window_read_bytes;
                    if let Some(e) = s.error {
                        *errors.entry(e).or_default() += 1;
                    }
                }
                _ => unfinished += 1,
            }
        }
        let server_cpu = s0.zip(s1).map(|(a, b)| b - a);
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e6;
        Ok::<_, String>(json!({
            "client": format!(
                "holdfast-bench fanout-client (tokio, {} threads: epoll, one task per subscriber, frames read by hand, text by serde derive; publisher on its own thread via {})",
                threads,
                a.publish_via
            ),
            "subscribers": a.subscribers,
            "subscribed": subscribed,
            "subscribe_seconds": ramp_s,
            "publish_rate": a.publish_rate,
            "publish_via": a.publish_via,
            "published": published,
            "publish_burst": a.publish_burst,
            // Publishes the server had not answered 10 s after publishing ended (a server
            // that fell behind its publisher).
            "publishes_unanswered": published.saturating_sub(answers.answered.load(Ordering::Relaxed)),
            // Publishes refused for now (the server's back-pressure: 503, or an error whose
            // reason asks to retry later), not retried; the first reason given. Any other
            // refusal ends the run with an error.
            "publishes_refused": answers.refused.load(Ordering::Relaxed),
            "refusal": answers.refusal.get(),
            "published_measured": p1.saturating_sub(p0),
            // Deliveries of the messages published in the window (arriving in it or in the
            // settle after it), per second of the window.
            "deliveries": measured,
            "deliveries_per_s": measured as f64 / secs,
            // Every delivery the subscribers read, warm-up and settle included.
            "deliveries_read": total,
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p99.9": ms(0.999), "max": hist.max() as f64 / 1e6, "count": hist.len()},
            "server_cpu_seconds": server_cpu,
            "deliveries_per_server_cpu_s": server_cpu.filter(|c| *c > 0.0).map(|c| measured as f64 / c),
            "client_cpu_seconds": m0.zip(m1).map(|(a, b)| b - a),
            // Deliveries per read that returned data in the window: a server send's worth
            // while the client keeps up; more when its sockets held a backlog (a client short
            // of CPU reads late, in bigger pieces).
            "deliveries_per_read": (reads > 0).then(|| read_deliveries as f64 / reads as f64),
            // What the kernel held for the client unread, summed over its sockets, sampled
            // every 3 s of the window (`holdfast_loadgen::unread`): the server had sent it,
            // the client had not read it. In ms, at the window's read rate: how late the
            // client itself was, out of the latency it reports.
            "client_unread": holdfast_loadgen::unread::summary(&unread, read_bytes as f64 / secs),
            "lost": lost,
            "repeated": repeated,
            "behind_at_end": behind,
            "errors": errors,
            "unfinished_subscribers": unfinished,
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
    fn frames_are_read_whole_and_bounded() {
        // A text frame, then the first bytes of a binary one.
        let mut b = vec![0x81, 3, b'a', b'b', b'c', 0x82, 126];
        assert_eq!(
            next_frame(&b).unwrap(),
            Some(Frame {
                fin: true,
                op: 1,
                payload: 2..5
            })
        );
        assert_eq!(next_frame(&b[5..]).unwrap(), None, "length not yet whole");
        b.extend_from_slice(&300u16.to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, 299));
        assert_eq!(next_frame(&b[5..]).unwrap(), None, "payload one byte short");
        b.push(7);
        let f = next_frame(&b[5..]).unwrap().unwrap();
        assert_eq!((f.op, f.payload), (2, 4..304));
        assert!(
            next_frame(&[0x81, 0x83, 1, 2, 3, 4, 0, 0, 0]).is_err(),
            "masked"
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        assert!(next_frame(&huge).is_err(), "over the bound");
        assert!(!next_frame(&[0x01, 0]).unwrap().unwrap().fin);
    }

    #[test]
    fn a_client_frame_is_masked_and_unmasks_to_its_payload() {
        for len in [0usize, 5, 125, 126, 70_000] {
            let p: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = client_frame(1, &p);
            assert_eq!(f[0], 0x81);
            assert!(f[1] & 0x80 != 0, "masked");
            let (head, n) = match f[1] & 0x7f {
                126 => (4, usize::from(u16::from_be_bytes([f[2], f[3]]))),
                127 => (
                    10,
                    u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, usize::from(n)),
            };
            assert_eq!(n, len);
            let mask = &f[head..head + 4];
            let back: Vec<u8> = f[head + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn deliveries_read_in_both_encodings() {
        let mut b = vec![3];
        b.extend_from_slice(b"t.1");
        b.extend_from_slice(&42u64.to_be_bytes());
        b.extend_from_slice(&123_456u64.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        assert_eq!(delivery(2, &b), Some(Ok((42, Some(123_456)))));
        assert_eq!(delivery(2, &b[..12]), Some(Ok((42, None))), "no stamp");
        assert_eq!(delivery(2, &b[..8]), None, "cut short");
        let t = br#"{"data":"99","seq":7,"topic":"t \"x\"","type":"message"}"#;
        assert_eq!(delivery(1, t), Some(Ok((7, Some(99)))));
        let s = br#"{"type":"subscribed","topic":"t","seq":3}"#;
        assert_eq!(delivery(1, s), Some(Err(3)));
        assert_eq!(delivery(1, br#"{"type":"gap","from":1,"to":2}"#), None);
        assert_eq!(delivery(1, b"not json"), None);
    }

    #[test]
    fn only_back_pressure_asks_to_retry_later() {
        for why in [
            "overloaded (worker 0's delivery queue is full; retry later)",
            "overloaded (the server's memory budget of 100 bytes is exhausted; retry later)",
            "handing_over (the server is upgrading; retry in a second)",
            "backplane_unavailable (cannot connect)",
        ] {
            assert!(retry_later(why), "{why}");
        }
        for why in [
            "publish_disabled (the server was started without --client-publish)",
            "forbidden: no grant to publish on t",
            "topic_empty",
            "message_too_large_to_deliver (9 bytes encoded; a connection queues at most 8)",
            "backplane_error (ERR)",
            "",
        ] {
            assert!(!retry_later(why), "{why}");
        }
    }

    #[test]
    fn an_upgrade_answer_is_found_or_named() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
        assert_eq!(upgraded(ok).unwrap(), Some(ok.len() - 2));
        assert_eq!(upgraded(b"HTTP/1.1 101 Sw").unwrap(), None);
        let e = upgraded(b"HTTP/1.1 503 Busy\r\n\r\n").unwrap_err();
        assert!(e.contains("503"), "{e}");
        assert!(upgraded(&[b'x'; 20 << 10]).is_err());
        let u = url_of("ws://127.0.0.1:9/ws").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("127.0.0.1:9", "/ws"));
        assert!(url_of("http://x").is_err());
    }
}
