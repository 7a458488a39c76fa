//! The opening handshake, server side (RFC 6455 §4.2).
//!
//! [`HeadScanner`] finds the end of the request head in bytes that arrive in any number of
//! pieces, enforcing the size limits as it goes (so an over-long line fails before its end
//! arrives) and never rescanning bytes it has seen. [`parse_request`] then validates the
//! complete head and returns a [`Request`] that borrows from it. The `write_*` functions
//! append responses to a caller-owned buffer.

use std::io::Write as _;

use sha1::{Digest, Sha1};

use super::base64;
use super::error::Error;

/// The GUID of §1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bounds on the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole head, request line to the blank line, in bytes.
    pub max_head_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
    /// One line (request line or header field), without its CRLF.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8192,
            max_headers: 32,
            max_line: 4096,
        }
    }
}

/// Finds the end of a request head incrementally. 12 bytes; one per handshaking connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadScanner {
    scanned: u32,
    line_start: u32,
    headers: u16,
}

impl HeadScanner {
    /// A scanner at the start of a request.
    pub const fn new() -> Self {
        Self {
            scanned: 0,
            line_start: 0,
            headers: 0,
        }
    }

    /// Look at `buf` (everything received so far, the same prefix each call) and return the
    /// head's length once its blank line has arrived. Limits are checked on partial input.
    ///
    /// Where input breaks several limits, the one broken at the earliest byte is reported, so
    /// the answer does not depend on how the bytes were split into reads.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
        if self.line_start == 0 {
            // Only as far as the line and head limits reach, so that which error a head gets
            // does not depend on how it was cut (the earliest violation wins either way).
            let n = buf
                .len()
                .min(limits.max_line + 1)
                .min(limits.max_head_bytes);
            check_start(&buf[..n])?;
        }
        let mut i = self.scanned as usize;
        let mut line_start = self.line_start as usize;
        while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
            let nl = i + off;
            let is_end = line_start > 0 && nl - line_start <= 1;
            let counts = line_start > 0 && !is_end;
            let headers = self.headers.saturating_add(u16::from(counts));
            let too_many = (usize::from(headers) > limits.max_headers).then_some(nl);
            first_violation(line_start, nl, nl + 1, limits, too_many)?;
            if is_end {
                // An empty line (CRLF, or a bare LF that parsing will reject) ends the head.
                return Ok(Some(nl + 1));
            }
            self.headers = headers;
            line_start = nl + 1;
            i = nl + 1;
        }
        // No newline in buf[i..]: the current line is still arriving.
        first_violation(line_start, buf.len(), buf.len(), limits, None)?;
        self.scanned = buf.len() as u32;
        self.line_start = line_start as u32;
        Ok(None)
    }
}

/// Longest method token accepted before the first space of a request line.
const MAX_METHOD: usize = 16;

/// The request line must begin with a method token and a space. Bytes that cannot (a TLS
/// ClientHello, binary garbage, another protocol) are refused on sight rather than after a
/// line end that may never come.
fn check_start(buf: &[u8]) -> Result<(), Error> {
    if buf.first() == Some(&0x16) {
        return Err(Error::TlsOnPlainPort);
    }
    for (i, &b) in buf.iter().take(MAX_METHOD + 1).enumerate() {
        if b == b' ' {
            return if i == 0 { Err(Error::NotHttp) } else { Ok(()) };
        }
        if !is_tchar(b) {
            return Err(Error::NotHttp);
        }
    }
    if buf.len() > MAX_METHOD {
        Err(Error::NotHttp)
    } else {
        Ok(())
    }
}

/// The earliest limit broken by the line starting at `line_start`. `content_end` is where
/// its bytes before any LF end (exclusive) and `head_end` where the head seen so far ends
/// (exclusive; an LF counts toward the head but not the line). A line breaks `max_line` at
/// its byte `max_line + 2` (content plus a CR allowance); the head breaks `max_head_bytes` at
/// byte `max_head_bytes + 1`; `too_many` is where a header count was exceeded.
fn first_violation(
    line_start: usize,
    content_end: usize,
    head_end: usize,
    limits: &Limits,
    too_many: Option<usize>,
) -> Result<(), Error> {
    let line_at = line_start + limits.max_line + 1;
    let line = (line_at < content_end).then_some(line_at);
    let head = (limits.max_head_bytes < head_end).then_some(limits.max_head_bytes);
    let line_err = if line_start == 0 {
        Error::RequestLineTooLong
    } else {
        Error::HeaderLineTooLong
    };
    let candidates = [
        (line, line_err),
        (head, Error::HeadTooLarge),
        (too_many, Error::TooManyHeaders),
    ];
    match candidates
        .iter()
        .filter_map(|&(at, e)| at.map(|a| (a, e)))
        .min_by_key(|&(a, _)| a)
    {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// A validated WebSocket upgrade request, borrowing from the head it was parsed from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method: `GET` for an upgrade; `GET`, `POST` or `OPTIONS` for a plain request.
    pub method: &'a str,
    /// The body's length (`Content-Length`; only a plain `POST` may have one).
    pub body_len: usize,
    /// The path of the request target, e.g. `/ws`.
    pub path: &'a str,
    /// The query string without `?`, if any (not percent-decoded).
    pub query: Option<&'a str>,
    /// The Host header (empty only for an HTTP/1.0 request that sent none).
    pub host: &'a str,
    /// The Origin header, if any.
    pub origin: Option<&'a str>,
    /// The Sec-WebSocket-Key header (validated).
    pub key: &'a str,
    /// An HTTP/1.0 request (a plain one only: an upgrade needs HTTP/1.1). Its answer
    /// closes the connection.
    pub http10: bool,
    /// The header block: every field line, for lookups of headers not extracted above.
    fields: &'a str,
    /// A one-word Bloom filter of the header names present ([`name_bit`]): a lookup of a
    /// header the request does not carry (the usual case for `Authorization` and
    /// `Sec-WebSocket-Protocol`) returns without reading the block.
    names: u64,
}

impl<'a> Request<'a> {
    /// Every value of header `name` (case-insensitive), in order, with surrounding
    /// whitespace removed.
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let present = self.names & name_bit(name.as_bytes()) != 0;
        crlf_lines(if present { self.fields } else { "" }).filter_map(move |line| {
            let (n, v) = split_field(line)?;
            n.eq_ignore_ascii_case(name).then(|| v.trim_matches(is_ows))
        })
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &'a str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// The subprotocols the client offers (Sec-WebSocket-Protocol), in its order of
    /// preference.
    pub fn offered_protocols(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.header_values("sec-websocket-protocol")
            .flat_map(tokens)
    }

    /// The first subprotocol, in the client's order, that `supported` contains.
    pub fn choose_protocol(&self, supported: &[&str]) -> Option<&'a str> {
        self.offered_protocols().find(|p| supported.contains(p))
    }

    /// The raw (not percent-decoded) value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// A bearer token from `Authorization: Bearer <token>`, else from the `query_param`
    /// query parameter (browsers cannot set headers on a WebSocket).
    pub fn auth_token(&self, query_param: &str) -> Option<&'a str> {
        self.header("authorization")
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim_matches(is_ows))
            })
            .filter(|t| !t.is_empty())
            .or_else(|| self.query_param(query_param).filter(|t| !t.is_empty()))
    }

    /// The Sec-WebSocket-Accept value for this request's key.
    pub fn accept_key(&self) -> [u8; 28] {
        accept_key(self.key.as_bytes())
    }
}

/// A 0-or-1 query parameter's value: `default` when absent, None for anything else
/// (`binary=true` and `members=false` were once read silently the other way).
pub fn zero_or_one(value: Option<&str>, default: bool) -> Option<bool> {
    match value {
        None => Some(default),
        Some("1") => Some(true),
        Some("0") => Some(false),
        Some(_) => None,
    }
}

/// The first of `once` (parameters that each name one thing) that `query` gives twice. A
/// second value is refused rather than one of the two read: a proxy or firewall in front may
/// read the other (HTTP parameter pollution). At most 32 names; one pass over the query.
pub fn repeated_param<'n>(query: &str, once: &[&'n str]) -> Option<&'n str> {
    debug_assert!(once.len() <= 32);
    let mut seen = 0u32;
    for kv in query.split('&') {
        let k = kv.split_once('=').map_or(kv, |(k, _)| k);
        if let Some(i) = once.iter().position(|n| *n == k) {
            if seen & (1 << i) != 0 {
                return Some(once[i]);
            }
            seen |= 1 << i;
        }
    }
    None
}

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key ++ GUID)).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::encode_20(&h.finalize().into())
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub(crate) fn tokens(list: &str) -> impl Iterator<Item = &str> {
    list.split(',')
        .map(|t| t.trim_matches(is_ows))
        .filter(|t| !t.is_empty())
}

/// RFC 9110 `tchar`, one bit per byte value.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// The bit a header name sets in [`Request`]'s filter: from its length and its first and
/// last bytes, case-folded (names compare case-insensitively).
fn name_bit(name: &[u8]) -> u64 {
    let (Some(first), Some(last)) = (name.first(), name.last()) else {
        return 1;
    };
    let h = (name.len() as u32).wrapping_mul(31)
        ^ u32::from(first.to_ascii_lowercase()).wrapping_mul(7)
        ^ u32::from(last.to_ascii_lowercase());
    1 << (h % 64)
}

/// The pieces of `s` between CRLFs, exactly as `s.split("\r\n")` (an empty `s` is one
/// empty piece) but found with a byte scan: a two-byte `str` pattern builds a searcher per
/// call, which the upgrade profile showed as the largest userspace cost of a handshake
/// (docs/benchmarks.md, "Upgrades").
fn crlf_lines(s: &str) -> CrLfLines<'_> {
    CrLfLines { rest: Some(s) }
}

struct CrLfLines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for CrLfLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let b = rest.as_bytes();
        let mut from = 0;
        while let Some(k) = b[from..].iter().position(|&c| c == b'\n') {
            let nl = from + k;
            if nl > 0 && b[nl - 1] == b'\r' {
                // Both bytes are ASCII: char boundaries.
                self.rest = Some(&rest[nl + 1..]);
                return Some(&rest[..nl - 1]);
            }
            from = nl + 1;
        }
        self.rest = None;
        Some(rest)
    }
}

/// A field line's name and value (untrimmed): the name is the tchars before the first other
/// byte, which must be a colon.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let colon = line.bytes().position(|b| !is_tchar(b))?;
    (colon > 0 && line.as_bytes()[colon] == b':').then(|| (&line[..colon], &line[colon + 1..]))
}

fn set_once<'a>(slot: &mut Option<&'a str>, value: &'a str) -> Result<(), Error> {
    match slot.replace(value) {
        Some(_) => Err(Error::DuplicateHeader),
        None => Ok(()),
    }
}

/// Validate a complete request head (as delimited by [`HeadScanner::scan`]) per §4.2.1.
pub fn parse_request(head: &[u8]) -> Result<Request<'_>, Error> {
    parse(head, true)
}

/// Validate a complete request head as a plain HTTP/1.1 or HTTP/1.0 request — the same
/// checks as [`parse_request`] but no upgrade is asked for: a `GET` (an event stream, a
/// long poll, a query), an `OPTIONS` (a browser's preflight) or a `POST` whose body is
/// announced by `Content-Length` (chunked bodies are refused). The request's `key` is
/// empty. HTTP/1.0 is what a proxy that does not keep connections may forward (nginx's
/// default `proxy_http_version`).
pub fn parse_plain(head: &[u8]) -> Result<Request<'_>, Error> {
    parse(head, false)
}

/// The largest `Content-Length` the parser passes on (the service applies its own, smaller
/// limit and answers 413 above it).
pub const MAX_BODY: usize = 1 << 30;

fn parse(head: &[u8], upgrade: bool) -> Result<Request<'_>, Error> {
    let head = core::str::from_utf8(head).map_err(|_| Error::MalformedHeader)?;
    let head = head
        .strip_suffix("\r\n\r\n")
        .ok_or(Error::MalformedHeader)?;
    let mut lines = crlf_lines(head);
    let request_line = lines.next().unwrap_or(head);
    let fields = lines.rest.unwrap_or("");

    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::MalformedRequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Error::MalformedRequestLine);
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" if !upgrade => true,
        v if v.len() == 8 && v.starts_with("HTTP/") && v.as_bytes()[6] == b'.' => {
            return Err(Error::UnsupportedHttpVersion)
        }
        _ => return Err(Error::MalformedRequestLine),
    };
    // A plain request may name any method: where it is served decides (405 with the path's
    // `Allow`, or the upgrade's own error where no plain request is served).
    if upgrade && method != "GET" {
        return Err(Error::MethodNotGet);
    }
    if !target.starts_with('/') || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(Error::InvalidRequestTarget);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };

    let mut host = None;
    let mut origin = None;
    let mut key = None;
    let mut version = None;
    let mut upgrade_ws = false;
    let mut connection_upgrade = false;
    let mut body_len = None;
    let mut names = 0u64;
    if !fields.is_empty() {
        for line in crlf_lines(fields) {
            let (name, value) = split_field(line).ok_or(Error::MalformedHeader)?;
            names |= name_bit(name.as_bytes());
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(Error::MalformedHeader);
            }
            let value = value.trim_matches(is_ows);
            if name.eq_ignore_ascii_case("host") {
                set_once(&mut host, value)?;
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade_ws |= tokens(value).any(|t| t.eq_ignore_ascii_case("websocket"));
            } else if name.eq_ignore_ascii_case("connection") {
                connection_upgrade |= tokens(value).any(|t| t.eq_ignore_ascii_case("upgrade"));
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                set_once(&mut key, value)?;
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                set_once(&mut version, value)?;
            } else if name.eq_ignore_ascii_case("origin") {
                set_once(&mut origin, value)?;
            } else if name.eq_ignore_ascii_case("content-length") {
                // Digits only (no sign, no list): a length two parsers could read two ways
                // is how requests get smuggled.
                let n = (!value.is_empty()
                    && value.len() <= 10
                    && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<usize>().ok())
                .flatten()
                .filter(|&n| n <= MAX_BODY)
                .ok_or(Error::InvalidContentLength)?;
                if body_len.replace(n).is_some() {
                    return Err(Error::DuplicateHeader);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Error::TransferEncodingNotAllowed);
            }
        }
    }
    // HTTP/1.1 requires a Host (RFC 9112 §3.2); HTTP/1.0 predates it, and a load balancer's
    // health check may still send none (HAProxy's `option httpchk` does by default).
    let host = match host.filter(|h| !h.is_empty()) {
        Some(h) => h,
        None if http10 => "",
        None => return Err(Error::MissingHost),
    };
    let body_len = body_len.unwrap_or(0);
    if body_len > 0 && (upgrade || method != "POST") {
        return Err(Error::RequestBodyNotAllowed);
    }
    let key = if upgrade {
        if !upgrade_ws {
            return Err(Error::MissingUpgradeWebsocket);
        }
        if !connection_upgrade {
            return Err(Error::MissingConnectionUpgrade);
        }
        if version != Some("13") {
            return Err(Error::UnsupportedWebSocketVersion);
        }
        let key = key.ok_or(Error::MissingKey)?;
        if base64::decode_16(key.as_bytes()).is_none() {
            return Err(Error::InvalidKey);
        }
        key
    } else {
        ""
    };
    Ok(Request {
        method,
        body_len,
        path,
        query,
        host,
        origin,
        key,
        http10,
        fields,
        names,
    })
}

/// Append the 101 response accepting the upgrade.
pub fn write_accept(out: &mut Vec<u8>, accept: &[u8; 28], protocol: Option<&str>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    if let Some(p) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// A refusal decided by server policy rather than by a malformed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400: the request is well-formed HTTP but asks for something invalid (e.g. a bad topic).
    BadRequest,
    /// 401: no valid credentials (a missing, expired or badly signed token); answered with
    /// `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// 403: e.g. Origin or token not allowed.
    Forbidden,
    /// 404: no WebSocket endpoint at this path.
    NotFound,
    /// 429: e.g. the per-source-IP connection cap; optionally when to retry (seconds).
    TooManyRequests {
        /// Retry-After in seconds.
        retry_after: Option<u32>,
    },
    /// 413: a request body over the service's limit.
    PayloadTooLarge,
    /// 503: e.g. at the connection limit, over the accept rate, or draining.
    Unavailable {
        /// Retry-After in seconds.
        retry_after: u32,
    },
}

impl Rejection {
    /// The HTTP status code.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::TooManyRequests { .. } => 429,
            Self::PayloadTooLarge => 413,
            Self::Unavailable { .. } => 503,
        }
    }
}

/// The reason phrase of a status this server answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn write_status(out: &mut Vec<u8>, status: u16, extra: &str, retry: Option<u32>, body: &str) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    out.extend_from_slice(extra.as_bytes());
    if let Some(s) = retry {
        let _ = write!(out, "Retry-After: {s}\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
}

/// Append the response to a request that failed validation: the status of
/// [`Error::reaction`], with `Sec-WebSocket-Version: 13` on 426 and `Allow: GET` on 405, and
/// the error's reason as the body. Panics in debug builds if `err` is not a handshake error.
pub fn write_error(out: &mut Vec<u8>, err: Error) {
    debug_assert!(
        err.http_status().is_some(),
        "{err} is not a handshake error"
    );
    let status = err.http_status().unwrap_or(400);
    let extra = match status {
        426 => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
        405 => "Allow: GET\r\n",
        _ => "",
    };
    let body = match err {
        Error::TlsOnPlainPort => {
            "tls_on_plain_port: this port speaks plain HTTP (ws://), and TLS was sent to it"
        }
        Error::NotHttp => "not_http: the bytes received cannot begin an HTTP request",
        _ => err.reason(),
    };
    write_status(out, status, extra, None, body);
}

/// Append a 405 for a path that takes only the methods in `allow`.
pub fn write_method_not_allowed(out: &mut Vec<u8>, allow: &str) {
    let extra = format!("Allow: {allow}\r\nAccess-Control-Allow-Origin: *\r\n");
    write_status(out, 405, &extra, None, "method_not_allowed");
}

/// Append the answer to a browser's CORS preflight (`OPTIONS`) for one of the plain-HTTP
/// endpoints: any origin may call them with the methods and headers they take (they
/// authenticate with a token, never a cookie), and the answer may be cached for a day.
/// `keep`: the connection stays open for the request the browser asked about.
pub fn write_preflight(out: &mut Vec<u8>, keep: bool) {
    out.extend_from_slice(
        b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\n\
          Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n\
          Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\n\
          Access-Control-Max-Age: 86400\r\nContent-Length: 0\r\nConnection: ",
    );
    out.extend_from_slice(if keep {
        b"keep-alive\r\n\r\n"
    } else {
        b"close\r\n\r\n"
    });
}

/// Append the response for a policy refusal, with `body` as a short plain-text explanation.
pub fn write_rejection(out: &mut Vec<u8>, rejection: Rejection, body: &str) {
    let retry = match rejection {
        Rejection::TooManyRequests { retry_after } => retry_after,
        Rejection::Unavailable { retry_after } => Some(retry_after),
        Rejection::BadRequest
        | Rejection::Unauthorized
        | Rejection::Forbidden
        | Rejection::NotFound
        | Rejection::PayloadTooLarge => None,
    };
    // Readable from any origin: a browser's fetch of an event stream or a poll must see a
    // 401 as a 401 (not a network error) to stop instead of retrying.
    let extra = if rejection == Rejection::Unauthorized {
        "WWW-Authenticate: Bearer realm=\"holdfast\", error=\"invalid_token\"\r\n\
         Access-Control-Allow-Origin: *\r\n"
    } else {
        "Access-Control-Allow-Origin: *\r\n"
    };
    write_status(out, rejection.status(), extra, retry, body);
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    #[test]
    fn crlf_lines_cut_exactly_where_split_does() {
        for s in [
            "",
            "a",
            "\r\n",
            "a\r\nb",
            "a\r\nb\r\n",
            "a\nb\r\nc",
            "a\r\r\nb",
            "\r\n\r\n",
            "a\rb\n\r\nc\r",
            "Host: x\r\nUpgrade: websocket",
        ] {
            let ours: Vec<&str> = crlf_lines(s).collect();
            let std: Vec<&str> = s.split("\r\n").collect();
            assert_eq!(ours, std, "{s:?}");
        }
    }

    #[test]
    fn lookups_find_every_present_header_in_any_case_and_skip_absent_ones() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\
            sec-websocket-protocol: a, b\r\nSEC-WEBSOCKET-PROTOCOL: c\r\nX-Y: 1\r\n\r\n";
        let req = parse_plain(head).unwrap();
        assert_eq!(req.header("AUTHORIZATION"), Some("Bearer t"));
        assert_eq!(req.header("x-y"), Some("1"));
        assert_eq!(req.offered_protocols().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(req.header("cookie"), None);
        assert_eq!(req.header("x-z"), None);
        // A name that shares the filter bit of a present one is still compared in full.
        assert_eq!(name_bit(b"xzy"), name_bit(b"X-Y"));
        assert_eq!(req.header("xzy"), None);
    }

    #[test]
    fn a_field_name_is_tchars_then_a_colon() {
        assert_eq!(split_field("Host: x"), Some(("Host", " x")));
        assert_eq!(split_field("Host:"), Some(("Host", "")));
        assert_eq!(split_field(": x"), None);
        assert_eq!(split_field("Host : x"), None);
        assert_eq!(split_field("Ho(st: x"), None);
        assert_eq!(split_field("Host"), None);
    }
}
