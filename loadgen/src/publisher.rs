//! The `fanout` scenario's publisher: the admin API (`POST /publish` pipelined over one
//! keep-alive connection) or a WebSocket client sending `publish` control messages, paced
//! open-loop with the intended send time as the stamp, so a publisher that falls behind
//! shows up as latency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use holdfast::ws::assembler::{Assembler, Message};
use holdfast::ws::client::{scan_response, Response, MAX_RESPONSE_HEAD};
use holdfast::ws::frame::encode_frame;
use holdfast::ws::{Decoder, OpCode, Role};

use crate::counters::Control;

/// How the publisher reaches the server.
#[derive(Debug, Clone)]
pub enum Via {
    /// `POST /publish?topic=…` to this admin address (binary payloads).
    Admin(String),
    /// `{"op":"publish",…}` over a WebSocket to this `ws://` URL (text payloads; the server
    /// needs `--client-publish`).
    Ws(String),
}

/// The publisher's settings.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    /// Where to publish.
    pub via: Via,
    /// Topic names, published to in turn.
    pub topics: Vec<String>,
    /// Messages per second in total.
    pub rate: f64,
    /// Payload bytes (at least 8: the stamp).
    pub size: usize,
    /// Admin publishes carry the stamp as text digits (`text/plain`) instead of binary.
    pub text: bool,
}

/// The number the server gave each published message (by its stamp), so that every
/// subscriber — whichever node it is connected to — can check its delivery carries the same
/// number: with a backplane, one numbering across the fleet. A ring of the newest messages
/// per topic (16,384, fewer when there are many topics: 1M slots in all, 16 MB).
#[derive(Debug)]
pub struct Numbering {
    seqs: Box<[AtomicU64]>,
    stamps: Box<[AtomicU64]>,
    ring: usize,
}

impl Numbering {
    /// Room for `topics` topics.
    pub fn new(topics: usize) -> Self {
        let ring = ((1 << 20) / topics.max(1)).clamp(64, 1 << 14);
        let n = topics * ring;
        Self {
            seqs: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stamps: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ring,
        }
    }

    fn slot(&self, topic: usize, seq: u64) -> usize {
        topic * self.ring + (seq as usize % self.ring)
    }

    /// The server numbered the message stamped `stamp` on `topic` as `seq`.
    pub fn record(&self, topic: usize, seq: u64, stamp: u64) {
        let i = self.slot(topic, seq);
        if i >= self.seqs.len() {
            return;
        }
        self.seqs[i].store(0, Ordering::Release); // being rewritten
        self.stamps[i].store(stamp, Ordering::Release);
        self.seqs[i].store(seq, Ordering::Release);
    }

    /// Whether a delivery of `seq` stamped `stamp` agrees with the publisher's answer
    /// (None: the answer is not known, or was overwritten while reading).
    pub fn check(&self, topic: usize, seq: u64, stamp: u64) -> Option<bool> {
        let i = self.slot(topic, seq);
        let s = self.seqs.get(i)?;
        if s.load(Ordering::Acquire) != seq {
            return None;
        }
        let st = self.stamps[i].load(Ordering::Acquire);
        (s.load(Ordering::Acquire) == seq).then_some(st == stamp)
    }
}

/// What the publisher did.
#[derive(Debug)]
pub struct Published {
    /// Messages published.
    pub sent: AtomicU64,
    /// Publishes the server refused or that failed.
    pub errors: AtomicU64,
    /// The newest sequence number per topic, as the server answered (shared with the
    /// engines, which read it at the end for the messages never received).
    pub last: std::sync::Arc<[AtomicU64]>,
    /// The number given to each message (admin publishing).
    pub numbering: std::sync::Arc<Numbering>,
}

/// Publish until `stop`, pacing messages at `rate` (open loop); returns the first error.
pub fn publish(
    spec: &PublisherSpec,
    stats: &Control,
    stop: &AtomicBool,
    out: &Published,
) -> Result<(), String> {
    match &spec.via {
        Via::Admin(addr) => publish_admin(addr, spec, stats, stop, out),
        Via::Ws(url) => publish_ws(url, spec, stats, stop, out),
    }
}

/// Wait until message `n`'s intended time; returns that time (ns since the epoch).
fn pace(stats: &Control, start_ns: u64, n: u64, rate: f64) -> u64 {
    let due = start_ns + (n as f64 * 1e9 / rate) as u64;
    let now = stats.now_ns();
    if due > now {
        std::thread::sleep(Duration::from_nanos(due - now));
    }
    due
}

fn publish_admin(
    addr: &str,
    spec: &PublisherSpec,
    stats: &Control,
    stop: &AtomicBool,
    out: &Published,
) -> Result<(), String> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let start = stats.now_ns();
    let mut n = 0u64;
    // A connection the server closes (a restart, a live upgrade handing the port to a new
    // process) is opened again: the publish in flight counts as an error (unanswered: it
    // may or may not have been numbered), and publishing goes on.
    let mut failures = 0u32;
    loop {
        match admin_session(addr, spec, stats, stop, out, start, &mut n) {
            Ok(()) => return Ok(()),
            Err(e) if failures < 50 && !stop.load(Ordering::Relaxed) => {
                failures += 1;
                out.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("publisher: {e}; connecting again");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Publishes one admin connection may have sent and not yet seen answered. The requests
/// are pipelined (HTTP/1.1): a publisher that waited for each answer before sending the
/// next would let the server's answer time set the publish rate — a one-thread server that
/// fans out before it reads the next request would then see one message per fan-out and
/// never a batch, which is not how a fleet of publishing backends loads it.
const ADMIN_IN_FLIGHT: usize = 1024;

/// Publish over one admin connection until `stop` or an error: requests are written at the
/// paced times, answers read on a second thread in order.
fn admin_session(
    addr: &str,
    spec: &PublisherSpec,
    stats: &Control,
    stop: &AtomicBool,
    out: &Published,
    start: u64,
    n: &mut u64,
) -> Result<(), String> {
    let mut w = TcpStream::connect(addr).map_err(|e| format!("admin {addr}: {e}"))?;
    w.set_nodelay(true).map_err(|e| e.to_string())?;
    // Bounded both ways: a server that stops reading (up to ADMIN_IN_FLIGHT requests fill
    // the socket buffers) fails the write, as one that stops answering fails the read.
    w.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let r = w.try_clone().map_err(|e| e.to_string())?;
    r.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    // (topic, stamp) of each request written, in order; bounded, so a server that stops
    // answering stops the writer too (the stamps then show the delay as latency).
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, u64)>(ADMIN_IN_FLIGHT);
    std::thread::scope(|scope| {
        // The queue's receiving end goes with the reader, so a writer waiting for room
        // sees the reader's end instead of waiting for ever.
        let reader = scope.spawn(move || {
            let answered = read_admin_answers(BufReader::new(r), addr, &rx, out);
            // Whatever was written and not answered may or may not have been numbered.
            let unanswered = rx.try_iter().count() as u64;
            out.errors.fetch_add(unanswered, Ordering::Relaxed);
            answered
        });
        let mut body = vec![0u8; spec.size.max(8)];
        let mut req = Vec::new();
        let mut result = Ok(());
        while !stop.load(Ordering::Relaxed) && !reader.is_finished() {
            let k = (*n % spec.topics.len() as u64) as usize;
            let stamp = pace(stats, start, *n, spec.rate);
            *n += 1;
            let digits;
            let (payload, ct): (&[u8], &str) = if spec.text {
                digits = stamp.to_string();
                (digits.as_bytes(), "text/plain")
            } else {
                body[..8].copy_from_slice(&stamp.to_le_bytes());
                (&body, "application/octet-stream")
            };
            req.clear();
            let _ = write!(
                req,
                "POST /publish?topic={} HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\
                 Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                spec.topics[k],
                payload.len()
            );
            req.extend_from_slice(payload);
            // Queued before it is written, so every answer finds its request.
            if tx.send((k, stamp)).is_err() {
                break; // the reader ended: its error is the session's
            }
            if let Err(e) = w.write_all(&req) {
                result = Err(format!("admin {addr}: {e}"));
                break;
            }
        }
        drop(tx);
        if result.is_err() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
        // At a stop the reader takes the answers still coming, then sees the queue closed.
        let answered = reader
            .join()
            .unwrap_or_else(|_| Err("admin publisher's reader panicked".into()));
        result.and(answered)
    })
}

/// Read one answer per queued request until the writer is done and every request is
/// answered, or an error.
fn read_admin_answers(
    mut r: BufReader<TcpStream>,
    addr: &str,
    queued: &std::sync::mpsc::Receiver<(usize, u64)>,
    out: &Published,
) -> Result<(), String> {
    while let Ok((k, stamp)) = queued.recv() {
        // The answer: status line, headers, a JSON body with the sequence number.
        let mut line = String::new();
        if r.read_line(&mut line)
            .map_err(|e| format!("admin {addr}: {e}"))?
            == 0
        {
            out.errors.fetch_add(1, Ordering::Relaxed);
            return Err(format!("admin {addr}: connection closed"));
        }
        let ok = line.split(' ').nth(1) == Some("200");
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).map_err(|e| e.to_string())? == 0 {
                out.errors.fetch_add(1, Ordering::Relaxed);
                return Err(format!("admin {addr}: connection closed"));
            }
            if h == "\r\n" {
                break;
            }
            if let Some((name, v)) = h.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut answer = vec![0u8; len];
        r.read_exact(&mut answer).map_err(|e| e.to_string())?;
        if !ok {
            out.errors.fetch_add(1, Ordering::Relaxed);
            if out.errors.load(Ordering::Relaxed) == 1 {
                eprintln!(
                    "publish refused: {} {}",
                    line.trim(),
                    String::from_utf8_lossy(&answer).trim()
                );
            }
            continue;
        }
        out.sent.fetch_add(1, Ordering::Relaxed);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&answer) {
            if let Some(seq) = v["seq"].as_u64() {
                out.last[k].fetch_max(seq, Ordering::Relaxed);
                out.numbering.record(k, seq, stamp);
            }
        }
    }
    Ok(())
}

fn publish_ws(
    url: &str,
    spec: &PublisherSpec,
    stats: &Control,
    stop: &AtomicBool,
    out: &Published,
) -> Result<(), String> {
    if url.starts_with("wss://") {
        return Err(format!(
            "{url}: --publish-via ws publishes over plain ws:// only (its publisher is a \
             blocking socket with a reader thread); publish with --publish-via admin, or give \
             a ws:// URL first"
        ));
    }
    let t = crate::target::parse_url(url, None)?;
    let mut s = TcpStream::connect(t.addr).map_err(|e| format!("{url}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(&t.request).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match scan_response(&head, &t.accept) {
            Ok(Some(Response::Upgraded { .. })) => break,
            Ok(Some(Response::Refused { status, .. })) => {
                return Err(format!("{url}: upgrade refused with {status}"))
            }
            Err(e) => return Err(format!("{url}: {e}")),
            Ok(None) if head.len() > MAX_RESPONSE_HEAD => unreachable!("scan_response bounds it"),
            Ok(None) => {}
        }
        if s.read(&mut b).map_err(|e| e.to_string())? == 0 {
            return Err(format!("{url}: no upgrade"));
        }
        head.push(b[0]);
    }
    // Acks come back on a reader thread (sequence numbers, refusals).
    let reader = s.try_clone().map_err(|e| e.to_string())?;
    let topics = spec.topics.clone();
    std::thread::scope(|scope| {
        let h = scope.spawn(|| read_acks(reader, &topics, out));
        let start = stats.now_ns();
        let mut n = 0u64;
        let mut frame = Vec::new();
        let mut result = Ok(());
        while !stop.load(Ordering::Relaxed) {
            let k = (n % spec.topics.len() as u64) as usize;
            let stamp = pace(stats, start, n, spec.rate);
            n += 1;
            let text = serde_json::json!({
                "op": "publish", "topic": spec.topics[k], "data": stamp.to_string(),
            })
            .to_string();
            frame.clear();
            encode_frame(
                &mut frame,
                true,
                OpCode::Text,
                Some([7, 7, 7, 7]),
                text.as_bytes(),
            );
            if let Err(e) = s.write_all(&frame) {
                result = Err(format!("{url}: {e}"));
                break;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = h.join();
        result
    })
}

fn read_acks(mut s: TcpStream, topics: &[String], out: &Published) {
    let mut asm = Assembler::new(Decoder::new(Role::Client));
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut closed = false;
        let r = asm.feed(&buf[..n], u32::MAX, |m| match m {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t).unwrap_or_default();
                match v["type"].as_str() {
                    Some("published") => {
                        out.sent.fetch_add(1, Ordering::Relaxed);
                        let k = topics.iter().position(|t| v["topic"] == t.as_str());
                        if let (Some(k), Some(seq)) = (k, v["seq"].as_u64()) {
                            out.last[k].fetch_max(seq, Ordering::Relaxed);
                        }
                    }
                    Some("error") if out.errors.fetch_add(1, Ordering::Relaxed) == 0 => {
                        eprintln!("publish refused: {v}");
                    }
                    _ => {}
                }
            }
            Message::Close(..) => closed = true,
            _ => {}
        });
        if r.is_err() || closed {
            return;
        }
    }
}
