//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `POST /drain`, and pub/sub's
//! `POST /publish?topic=T` and `GET /topics`.
//!
//! Plain blocking threads, one per admin connection (at most [`MAX_CONNECTIONS`]; a request
//! with `Connection: keep-alive` keeps it open, so a backend publishing at a high rate reuses
//! one connection; without it the answer ends at EOF, as scripts expect): admin traffic
//! is small next to the data plane, and keeping it off the workers' rings keeps it so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::Lifecycle;
use crate::metrics::{self, WorkerMetrics};
use crate::pubsub::Hub;
use crate::pubsub::Payload;

/// Admin connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// What the admin listener reads and changes: the lifecycle flags, every worker's counters
/// and the pub/sub hub.
#[derive(Debug)]
pub struct State {
    /// Drain and stop flags.
    pub life: Arc<Lifecycle>,
    /// Every worker's counters.
    pub metrics: Vec<Arc<WorkerMetrics>>,
    /// Pub/sub: topics, numbering, replay windows, fan-out to workers.
    pub hub: Arc<Hub>,
    /// Largest `POST /publish` body (the `--max-message` limit).
    pub max_publish: usize,
}

/// Why a request could not be read.
#[derive(Debug)]
enum ReadError {
    /// The connection failed or timed out.
    Io(std::io::Error),
    /// The declared body is larger than the limit (413).
    TooLarge { length: usize, max: usize },
    /// The request is malformed (400).
    Malformed(&'static str),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Bind the admin listener and serve it on background threads.
pub fn spawn(addr: SocketAddr, shared: Arc<State>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("holdfast-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let s = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        continue;
                    }
                };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = respond(
                        &mut &s,
                        503,
                        "text/plain",
                        "too many admin connections\n",
                        false,
                    );
                    continue;
                }
                let (shared, active) = (shared.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("holdfast-admin-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_connection(s, &shared) {
                            tracing::debug!("admin connection ended: {e}");
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    tracing::warn!("cannot start an admin thread: {e}");
                }
            }
        })?;
    Ok(local)
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
    content_type: String,
    keep_alive: bool,
}

/// Headers read per request, at most.
const MAX_HEADERS: usize = 100;

fn read_request(
    r: &mut BufReader<TcpStream>,
    max_body: usize,
) -> Result<Option<Request>, ReadError> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let version = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (mut length, mut content_type) = (0usize, String::new());
    // Keep-alive only when asked for: many scripts read an admin answer to EOF.
    let mut keep_alive = false;
    for _ in 0..MAX_HEADERS {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| ReadError::Malformed("bad Content-Length"))?
            }
            "content-type" => content_type = value.to_ascii_lowercase(),
            "connection" => {
                keep_alive = version == "HTTP/1.1" && value.eq_ignore_ascii_case("keep-alive")
            }
            _ => {}
        }
    }
    if length > max_body {
        return Err(ReadError::TooLarge {
            length,
            max: max_body,
        });
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        body,
        content_type,
        keep_alive,
    }))
}

fn serve_connection(stream: TcpStream, shared: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let req = match read_request(&mut reader, shared.max_publish) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(ReadError::TooLarge { length, max }) => {
                let body = format!("body of {length} bytes exceeds --max-message {max}\n");
                return respond(&mut out, 413, "text/plain", &body, false);
            }
            Err(ReadError::Malformed(why)) => {
                return respond(&mut out, 400, "text/plain", &format!("{why}\n"), false);
            }
            Err(ReadError::Io(e)) => return Err(e),
        };
        let (status, ctype, body) = route(&req, shared);
        respond(&mut out, status, ctype, &body, req.keep_alive)?;
        if !req.keep_alive {
            return Ok(());
        }
    }
}

fn respond(
    s: &mut impl Write,
    status: u16,
    ctype: &str,
    body: &str,
    keep_alive: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let retry = if status == 503 {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    write!(
        s,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         {retry}Connection: {conn}\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

/// The value of `key` in a query string (no percent-decoding: topic names do not need it).
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn route(req: &Request, shared: &State) -> (u16, &'static str, String) {
    let draining = shared.life.draining();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => {
            let mut text = metrics::render(&shared.metrics, draining);
            metrics::render_pubsub(&mut text, &shared.hub);
            (200, "text/plain; version=0.0.4", text)
        }
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if draining => (503, "text/plain", "draining\n".to_string()),
        ("GET", "/readyz") => (200, "text/plain", "ready\n".to_string()),
        ("POST", "/drain") => {
            if shared.life.drain() {
                tracing::info!("drain requested through the admin API");
            }
            (202, "text/plain", "draining\n".to_string())
        }
        ("POST", "/publish") => publish(req, shared),
        ("GET", "/topics") => (200, "application/json", topics_json(shared)),
        (_, "/metrics" | "/healthz" | "/readyz" | "/drain" | "/publish" | "/topics") => {
            (405, "text/plain", "method not allowed\n".to_string())
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    }
}

/// `POST /publish?topic=T`: the body is the message. `Content-Type:
/// application/octet-stream` publishes binary; anything else must be UTF-8 and publishes
/// text. 503 + Retry-After when a worker's delivery queue is full (backpressure: the message
/// is not numbered, nothing is lost).
fn publish(req: &Request, shared: &State) -> (u16, &'static str, String) {
    let Some(topic) = query_param(&req.query, "topic") else {
        return (400, "text/plain", "missing ?topic=\n".into());
    };
    let payload =
        if req.content_type.starts_with("application/octet-stream") {
            Payload::Binary(&req.body)
        } else {
            match std::str::from_utf8(&req.body) {
                Ok(t) => Payload::Text(t),
                Err(_) => return (
                    400,
                    "text/plain",
                    "body is not UTF-8; send binary with Content-Type: application/octet-stream\n"
                        .into(),
                ),
            }
        };
    match shared.hub.publish(topic, payload) {
        Ok(p) => (
            200,
            "application/json",
            serde_json::json!({
                "topic": topic, "seq": p.seq, "subscribers": p.subscribers, "workers": p.workers,
            })
            .to_string()
                + "\n",
        ),
        Err(e @ crate::pubsub::TopicError::Overloaded { .. }) => {
            (503, "text/plain", format!("{}\n", e.reason()))
        }
        Err(e @ crate::pubsub::TopicError::TooLargeToDeliver { .. }) => {
            (413, "text/plain", format!("{}\n", e.reason()))
        }
        Err(e) => (400, "text/plain", format!("{}\n", e.reason())),
    }
}

/// `GET /topics`: every topic with its subscribers, in total and per worker.
fn topics_json(shared: &State) -> String {
    let topics: Vec<_> = shared
        .hub
        .presence()
        .into_iter()
        .map(|(t, per)| {
            serde_json::json!({
                "topic": t, "subscribers": per.iter().sum::<u64>(), "per_worker": per,
            })
        })
        .collect();
    serde_json::json!({ "topics": topics }).to_string() + "\n"
}
