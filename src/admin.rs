//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `POST /drain`.
//!
//! A plain blocking thread: scrapes are rare and small, and keeping this off the workers'
//! rings keeps the data plane free of admin traffic.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics;
use crate::server::Shared;

/// Bind the admin listener and serve it on a background thread.
pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("holdfast-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = handle(s, &shared) {
                            tracing::debug!("admin request failed: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("admin accept failed: {e}"),
                }
            }
        })?;
    Ok(local)
}

fn handle(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Skip the headers (bounded: 100 lines).
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let draining = shared.draining.load(Ordering::Relaxed);
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            metrics::render(&shared.metrics, draining),
        ),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if draining => (503, "text/plain", "draining\n".to_string()),
        ("GET", "/readyz") => (200, "text/plain", "ready\n".to_string()),
        ("POST", "/drain") => {
            if !shared.draining.swap(true, Ordering::Relaxed) {
                tracing::info!("drain requested through the admin API");
            }
            (202, "text/plain", "draining\n".to_string())
        }
        (_, "/metrics" | "/healthz" | "/readyz" | "/drain") => {
            (405, "text/plain", "method not allowed\n".to_string())
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let mut s = stream;
    write!(
        s,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}
