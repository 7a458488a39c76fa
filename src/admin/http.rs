//! Just enough HTTP/1.1 for the admin listener, bounded everywhere: a request head of at
//! most [`MAX_HEAD`] bytes, one deadline for the whole request (head and body, however the
//! client trickles it), a body cap, no chunked bodies (411), persistent connections unless
//! the client says `Connection: close` (HTTP/1.1's default).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The largest request head read.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Header lines read per request, at most.
const MAX_HEADERS: usize = 64;

/// One parsed request.
#[derive(Debug)]
pub(super) struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub keep_alive: bool,
    pub authorization: Option<String>,
    pub origin: Option<String>,
    pub host: Option<String>,
}

/// Why a request could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    /// The connection failed.
    Io(std::io::Error),
    /// The request did not arrive whole within the deadline (408).
    TimedOut,
    /// The listener was full and this request, the slowest to arrive, made room (408).
    Displaced,
    /// The head is larger than [`MAX_HEAD`] (431).
    HeadTooLarge,
    /// The request is malformed (400).
    Malformed(&'static str),
    /// A body without Content-Length (chunked) (411).
    LengthRequired,
    /// The declared body is larger than the limit (413).
    TooLarge { length: usize, max: usize },
}

/// Read the next request from `s` (bytes already received are in `buf`; what follows the
/// request stays there for the next one), within `deadline` from now.
pub(super) fn read_request(
    s: &TcpStream,
    buf: &mut Vec<u8>,
    max_body: usize,
    deadline: Duration,
) -> Result<Request, ReadError> {
    let until = Instant::now() + deadline;
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::HeadTooLarge);
        }
        if fill(s, buf, until)? == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed inside a request")
            });
        }
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::HeadTooLarge);
    }
    let mut req = parse_head(&buf[..head_end])?;
    let length = req.1;
    if length > max_body {
        return Err(ReadError::TooLarge {
            length,
            max: max_body,
        });
    }
    while buf.len() < head_end + length {
        if fill(s, buf, until)? == 0 {
            return Err(ReadError::Malformed("connection closed inside a body"));
        }
    }
    req.0.body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Ok(req.0)
}

/// Read what is there into `buf`, waiting no later than `until`.
fn fill(s: &TcpStream, buf: &mut Vec<u8>, until: Instant) -> Result<usize, ReadError> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::TimedOut);
    }
    s.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
    let mut chunk = [0u8; 4096];
    let mut reader = s;
    match reader.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(ReadError::TimedOut)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => fill(s, buf, until),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Parse a complete head (ending in CRLF CRLF): the request and its body length.
fn parse_head(head: &[u8]) -> Result<(Request, usize), ReadError> {
    let head = std::str::from_utf8(head).map_err(|_| ReadError::Malformed("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(ReadError::Malformed("malformed request line")),
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(ReadError::Malformed("unsupported HTTP version")),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body: Vec::new(),
        content_type: String::new(),
        // HTTP/1.1 connections persist unless the client says otherwise; 1.0 ones do not.
        keep_alive: http11,
        authorization: None,
        origin: None,
        host: None,
    };
    let mut length = 0usize;
    for (n, line) in lines.filter(|l| !l.is_empty()).enumerate() {
        if n == MAX_HEADERS {
            return Err(ReadError::HeadTooLarge);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("header line without a colon"));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| ReadError::Malformed("bad Content-Length"))?;
            }
            "transfer-encoding" => return Err(ReadError::LengthRequired),
            "content-type" => req.content_type = value.to_ascii_lowercase(),
            "connection" => {
                let tokens = value.split(',').map(str::trim);
                for t in tokens {
                    if t.eq_ignore_ascii_case("close") {
                        req.keep_alive = false;
                    } else if t.eq_ignore_ascii_case("keep-alive") {
                        req.keep_alive = true;
                    }
                }
            }
            "authorization" => req.authorization = Some(value.to_string()),
            "origin" => req.origin = Some(value.to_string()),
            "host" => req.host = Some(value.to_string()),
            _ => {}
        }
    }
    Ok((req, length))
}

/// After an error answer: send our FIN and drop what the client still sends, for a
/// moment (bounded in time and bytes), so that closing with unread input does not reset
/// the connection and destroy the answer before the client reads it.
pub(super) fn linger(mut s: &TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut chunk = [0u8; 16 * 1024];
    let mut dropped = 0usize;
    while dropped < 8 << 20 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => dropped += n,
        }
    }
}

/// Write a response; `extra` are whole header lines.
pub(super) fn respond(
    s: &mut impl Write,
    status: u16,
    ctype: &str,
    body: &str,
    keep_alive: bool,
    extra: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let retry = if status == 503 {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    // Formatted into one buffer and written once: `write!` straight onto a socket makes a
    // send per formatted piece, and with TCP_NODELAY each was its own segment — about ten
    // per answer, each waking the client. That was half the admin thread's CPU per publish
    // (docs/benchmarks.md, "Fan-out to many small topics").
    let mut out = Vec::with_capacity(160 + extra.len() + body.len());
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         {retry}{extra}Connection: {conn}\r\n\r\n{body}",
        body.len()
    )?;
    s.write_all(&out)?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each `write` call.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_answer_is_one_write() {
        let mut w = Writes::default();
        respond(
            &mut w,
            503,
            "application/json",
            "{\"a\":1}",
            true,
            "X-Y: z\r\n",
        )
        .unwrap();
        assert_eq!(
            w.0.len(),
            1,
            "each write on a TCP_NODELAY socket is a segment"
        );
        let text = String::from_utf8(w.0.concat()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
             Content-Length: 7\r\nRetry-After: 1\r\nX-Y: z\r\nConnection: keep-alive\r\n\r\n\
             {\"a\":1}"
        );
    }

    fn head(s: &str) -> Result<(Request, usize), ReadError> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn heads_parse_with_http11_persistence_and_refusals() {
        let (r, n) =
            head("POST /publish?topic=a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str(), n),
            ("POST", "/publish", "topic=a", 3)
        );
        assert!(r.keep_alive, "HTTP/1.1 persists by default");
        let (r, _) = head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        let (r, _) = head("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive, "HTTP/1.0 closes by default");
        assert!(matches!(
            head("POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ReadError::LengthRequired)
        ));
        assert!(matches!(
            head("nonsense\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        assert!(matches!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(ReadError::HeadTooLarge)
        ));
    }
}
