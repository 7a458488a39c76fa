//! Just enough HTTP/1.1 for the admin listener, bounded everywhere: a request head of at
//! most [`MAX_HEAD`] bytes, one deadline for the whole request (head and body, however the
//! client trickles it), a body cap, no chunked bodies (411), persistent connections unless
//! the client says `Connection: close` (HTTP/1.1's default).
//!
//! The head is found and checked by the data port's own parser
//! ([`crate::ws::handshake`]): one set of rules for what a request may look like, so a
//! request a proxy in front could read two ways (a `Content-Length` with a sign, twice, or
//! behind a space before its colon; two `Host`s; control bytes in a value) is refused
//! on both listeners alike, instead of being read one way here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::ws::handshake::{self, HeadScanner, Limits};
use crate::ws::Error as HttpError;

/// The largest request head read.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Header lines read per request, at most.
const MAX_HEADERS: usize = 64;
/// The bounds the head scanner keeps (a line may be as long as the head).
const LIMITS: Limits = Limits {
    max_head_bytes: MAX_HEAD,
    max_headers: MAX_HEADERS,
    max_line: MAX_HEAD,
};

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
    /// When its head was read.
    pub arrived: std::time::Instant,
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
    /// The head broke a rule of HTTP/1.1 or a limit: answered with the status and reason
    /// the data port gives for it (400, 405, 414, 431, 505).
    Http(HttpError),
    /// The connection closed inside a request (400).
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
    let mut scanner = HeadScanner::new();
    let head_end = loop {
        if let Some(end) = scanner.scan(buf, &LIMITS).map_err(ReadError::Http)? {
            break end;
        }
        if fill(s, buf, until)? == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed inside a request")
            });
        }
    };
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
    let r = handshake::parse_plain(head).map_err(|e| match e {
        HttpError::TransferEncodingNotAllowed => ReadError::LengthRequired,
        e => ReadError::Http(e),
    })?;
    // HTTP/1.1 connections persist unless the client says otherwise; 1.0 ones do not.
    let mut keep_alive = !r.http10;
    for t in r.header_values("connection").flat_map(handshake::tokens) {
        if t.eq_ignore_ascii_case("close") {
            keep_alive = false;
        } else if t.eq_ignore_ascii_case("keep-alive") {
            keep_alive = true;
        }
    }
    // The token is compared against one value: two would leave which one counts to the
    // reader (a proxy may check the first).
    let mut auth = r.header_values("authorization");
    let authorization = auth.next().map(str::to_string);
    if auth.next().is_some() {
        return Err(ReadError::Http(HttpError::DuplicateHeader));
    }
    let req = Request {
        method: r.method.to_string(),
        path: r.path.to_string(),
        query: r.query.unwrap_or("").to_string(),
        body: Vec::new(),
        arrived: std::time::Instant::now(),
        content_type: r.header("content-type").unwrap_or("").to_ascii_lowercase(),
        keep_alive,
        authorization,
        origin: r.origin.map(str::to_string),
        host: (!r.host.is_empty()).then(|| r.host.to_string()),
    };
    Ok((req, r.body_len))
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
    answer(s, status, ctype, body, true, keep_alive, extra)
}

/// [`respond`], leaving the body out when `send_body` is false (a HEAD request: the
/// Content-Length still says what a GET would get).
pub(super) fn answer(
    s: &mut impl Write,
    status: u16,
    ctype: &str,
    body: &str,
    send_body: bool,
    keep_alive: bool,
    extra: &str,
) -> std::io::Result<()> {
    let reason = handshake::reason_phrase(status);
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
         {retry}{extra}Connection: {conn}\r\n\r\n",
        body.len()
    )?;
    if send_body {
        out.extend_from_slice(body.as_bytes());
    }
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
        assert_eq!(r.host.as_deref(), Some("x"));
        let (r, _) = head("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        // HTTP/1.0 closes by default, and may come without a Host (a load balancer's check).
        let (r, _) = head("GET /healthz HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive && r.host.is_none());
        let (r, _) = head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(r.keep_alive);
        let (r, _) = head("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n").unwrap();
        assert_eq!(r.authorization.as_deref(), Some("Bearer t"));
        assert!(matches!(
            head("POST /publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ReadError::LengthRequired)
        ));
        assert!(matches!(
            head("nonsense\r\n\r\n"),
            Err(ReadError::Http(HttpError::MalformedRequestLine))
        ));
    }

    #[test]
    fn a_head_that_could_be_read_two_ways_is_refused() {
        use HttpError::*;
        const P: &str = "POST /publish?topic=a HTTP/1.1\r\nHost: localhost\r\n";
        for (h, want) in [
            // A proxy in front may take the first length, or none: its next request would
            // then be read here from this one's body (request smuggling).
            (
                format!("{P}Content-Length: 1\r\nContent-Length: 5\r\n\r\n"),
                DuplicateHeader,
            ),
            (
                format!("{P}Content-Length: +1\r\n\r\n"),
                InvalidContentLength,
            ),
            (format!("{P}Content-Length : 5\r\n\r\n"), MalformedHeader),
            // The DNS-rebinding check read the last Host; a proxy may read the first.
            (
                "GET /topics HTTP/1.1\r\nHost: evil.example\r\nHost: localhost\r\n\r\n".into(),
                DuplicateHeader,
            ),
            ("GET /topics HTTP/1.1\r\n\r\n".into(), MissingHost),
            (
                format!("{P}Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n"),
                DuplicateHeader,
            ),
            (
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n".into(),
                MalformedHeader,
            ),
            (
                "GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n".into(),
                MalformedRequestLine,
            ),
            (
                "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n".into(),
                RequestBodyNotAllowed,
            ),
            ("GET /healthz HTTP/1.1\nHost: x\n\n".into(), MalformedHeader),
        ] {
            match head(&h) {
                Err(ReadError::Http(got)) => assert_eq!(got, want, "{h:?}"),
                other => panic!("{h:?}: {other:?}"),
            }
        }
    }

    /// The head's bounds hold on a real socket, however the bytes are cut.
    #[test]
    fn read_request_keeps_the_head_bounds_and_leaves_a_pipelined_request() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let read = |buf: &mut Vec<u8>| read_request(&s, buf, 16, Duration::from_secs(5));
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\n")
            .unwrap();
        let mut buf = Vec::new();
        assert_eq!(read(&mut buf).unwrap().path, "/healthz");
        c.write_all(b"Host: x\r\n\r\n").unwrap();
        assert_eq!(read(&mut buf).unwrap().path, "/readyz");
        assert!(buf.is_empty());
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        c.write_all(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes())
            .unwrap();
        assert!(matches!(
            read(&mut buf),
            Err(ReadError::Http(HttpError::TooManyHeaders))
        ));
        // Bytes that cannot begin a request are refused on sight, not after a line end.
        let mut buf = b"\x16\x03\x01".to_vec();
        assert!(matches!(
            read(&mut buf),
            Err(ReadError::Http(HttpError::TlsOnPlainPort))
        ));
        let mut buf = Vec::new();
        c.write_all(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n")
            .unwrap();
        assert!(matches!(
            read(&mut buf),
            Err(ReadError::TooLarge {
                length: 17,
                max: 16
            })
        ));
    }
}
