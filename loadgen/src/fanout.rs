//! The `fanout` scenario's pieces that are not the engine: reading holdfast's delivery
//! frames, and the publisher (admin API `POST /publish` over one keep-alive connection, or a
//! WebSocket client sending `publish` control messages), paced open-loop with the intended
//! send time as the stamp, so a publisher that falls behind shows up as latency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use holdfast::ws::frame::encode_frame;
use holdfast::ws::{Decoder, Event, OpCode, Role};

use crate::stats::Stats;

/// What a subscriber received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Message `seq`, with the publisher's stamp (ns since the run's epoch) when it has one.
    Message {
        /// Sequence number.
        seq: u64,
        /// Publish stamp.
        stamp: Option<u64>,
    },
    /// The subscription's acknowledgement: live messages follow `seq`.
    Subscribed {
        /// Newest sequence number at subscription.
        seq: u64,
    },
    /// Messages `from..=to` are gone.
    Gap {
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// Anything else (errors, acks of other kinds).
    Other,
}

/// Read one whole delivery message: binary `[len][topic][seq BE][payload]` (the payload's
/// first 8 bytes are the stamp, little-endian) or a JSON text frame.
pub fn parse_delivery(binary: bool, msg: &[u8]) -> Parsed {
    if binary {
        let Some(&l) = msg.first() else {
            return Parsed::Other;
        };
        let l = usize::from(l);
        let Some(seq) = msg.get(1 + l..9 + l) else {
            return Parsed::Other;
        };
        let seq = u64::from_be_bytes(seq.try_into().unwrap_or([0; 8]));
        let stamp = msg
            .get(9 + l..17 + l)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
        return Parsed::Message { seq, stamp };
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(msg) else {
        return Parsed::Other;
    };
    let n = |k: &str| v[k].as_u64();
    match v["type"].as_str() {
        Some("message") => match n("seq") {
            Some(seq) => Parsed::Message {
                seq,
                stamp: v["data"].as_str().and_then(|d| d.parse().ok()),
            },
            None => Parsed::Other,
        },
        Some("subscribed") => n("seq").map_or(Parsed::Other, |seq| Parsed::Subscribed { seq }),
        Some("gap") => match (n("from"), n("to")) {
            (Some(from), Some(to)) => Parsed::Gap { from, to },
            _ => Parsed::Other,
        },
        _ => Parsed::Other,
    }
}

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
}

/// Publish until `stop`, pacing messages at `rate` (open loop); returns the first error.
pub fn publish(
    spec: &PublisherSpec,
    stats: &Stats,
    stop: &AtomicBool,
    out: &Published,
) -> Result<(), String> {
    match &spec.via {
        Via::Admin(addr) => publish_admin(addr, spec, stats, stop, out),
        Via::Ws(url) => publish_ws(url, spec, stats, stop, out),
    }
}

/// Wait until message `n`'s intended time; returns that time (ns since the epoch).
fn pace(stats: &Stats, start_ns: u64, n: u64, rate: f64) -> u64 {
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
    stats: &Stats,
    stop: &AtomicBool,
    out: &Published,
) -> Result<(), String> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let s = TcpStream::connect(addr).map_err(|e| format!("admin {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut body = vec![0u8; spec.size.max(8)];
    let start = stats.now_ns();
    let mut n = 0u64;
    let mut req = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let k = (n % spec.topics.len() as u64) as usize;
        let stamp = pace(stats, start, n, spec.rate);
        n += 1;
        body[..8].copy_from_slice(&stamp.to_le_bytes());
        req.clear();
        let _ = write!(
            req,
            "POST /publish?topic={} HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            spec.topics[k],
            body.len()
        );
        req.extend_from_slice(&body);
        w.write_all(&req)
            .map_err(|e| format!("admin {addr}: {e}"))?;
        // The answer: status line, headers, a JSON body with the sequence number.
        let mut line = String::new();
        r.read_line(&mut line)
            .map_err(|e| format!("admin {addr}: {e}"))?;
        let ok = line.split(' ').nth(1) == Some("200");
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).map_err(|e| e.to_string())? == 0 {
                return Err(format!("admin {addr}: connection closed"));
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
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
            }
        }
    }
    Ok(())
}

fn publish_ws(
    url: &str,
    spec: &PublisherSpec,
    stats: &Stats,
    stop: &AtomicBool,
    out: &Published,
) -> Result<(), String> {
    let t = crate::target::parse_url(url)?;
    let mut s = TcpStream::connect(t.addr).map_err(|e| format!("{url}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(&t.request).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).map_err(|e| e.to_string())? == 0 || head.len() > 8192 {
            return Err(format!("{url}: no upgrade"));
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "{url}: {}",
            String::from_utf8_lossy(&head).lines().next().unwrap_or("")
        ));
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
    let mut dec = Decoder::new(Role::Client);
    let mut buf = vec![0u8; 65536];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut pos = 0;
        loop {
            let step = match dec.decode(&mut pending[pos..], u32::MAX) {
                Ok(s) => s,
                Err(_) => return,
            };
            let base = pos;
            pos += step.consumed;
            match step.event {
                Some(Event::Data { range, .. }) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&pending[base + range.start..base + range.end])
                            .unwrap_or_default();
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
                Some(Event::Close { .. }) => return,
                Some(_) => {}
                None => break,
            }
        }
        pending.drain(..pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_parse_in_both_encodings() {
        let mut b = vec![3];
        b.extend_from_slice(b"t.1");
        b.extend_from_slice(&42u64.to_be_bytes());
        b.extend_from_slice(&123_456u64.to_le_bytes());
        assert_eq!(
            parse_delivery(true, &b),
            Parsed::Message {
                seq: 42,
                stamp: Some(123_456)
            }
        );
        assert_eq!(
            parse_delivery(true, &b[..12]),
            Parsed::Message {
                seq: 42,
                stamp: None
            }
        );
        assert_eq!(parse_delivery(true, &b[..5]), Parsed::Other);
        assert_eq!(
            parse_delivery(
                false,
                br#"{"type":"message","topic":"a","seq":7,"data":"99"}"#
            ),
            Parsed::Message {
                seq: 7,
                stamp: Some(99)
            }
        );
        assert_eq!(
            parse_delivery(false, br#"{"type":"subscribed","topic":"a","seq":3}"#),
            Parsed::Subscribed { seq: 3 }
        );
        assert_eq!(
            parse_delivery(false, br#"{"type":"gap","topic":"a","from":4,"to":9}"#),
            Parsed::Gap { from: 4, to: 9 }
        );
        assert_eq!(parse_delivery(false, b"nonsense"), Parsed::Other);
    }
}
