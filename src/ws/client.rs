//! The client side of the opening handshake (RFC 6455 §4.1): the request to send, and the
//! scan and validation of the server's answer. Used by the load generator, the benchmarks
//! and the tests, so every client in the project checks a 101 the same way.

use super::handshake::accept_key;

/// The longest response head a client reads before giving up.
pub const MAX_RESPONSE_HEAD: usize = 8192;

/// An upgrade request ready to send, and the `Sec-WebSocket-Accept` it must get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The whole request head.
    pub bytes: Vec<u8>,
    /// The accept value the server must answer with.
    pub accept: [u8; 28],
}

/// Build an upgrade request for `path` (with its query) on `host`, with `key` (base64 of
/// 16 bytes; one key may be shared by many connections of a load generator) and extra
/// header lines (`Origin`, `Authorization`, `Sec-WebSocket-Protocol`, ...).
pub fn request(host: &str, path: &str, key: &str, extra: &[(&str, &str)]) -> ClientRequest {
    let mut s = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    ClientRequest {
        bytes: s.into_bytes(),
        accept: accept_key(key.as_bytes()),
    }
}

/// A complete response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// 101 with the right accept key: frames start after `head_len` bytes.
    Upgraded {
        /// Bytes of the head (frames may follow in the same buffer).
        head_len: usize,
    },
    /// Any other status (the server refused: 400, 403, 429, 503, ...).
    Refused {
        /// The status code.
        status: u16,
        /// Bytes of the head.
        head_len: usize,
    },
}

/// Why a response is not a valid answer to an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// No end of head within [`MAX_RESPONSE_HEAD`] bytes.
    HeadTooLong,
    /// The status line is not `HTTP/1.1 NNN ...`.
    BadStatusLine,
    /// A 101 without `Upgrade: websocket` and `Connection: upgrade` (§4.1 rules 2 and 3).
    NotAnUpgrade,
    /// A 101 whose `Sec-WebSocket-Accept` is missing or wrong (§4.1 rule 4).
    WrongAccept,
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HeadTooLong => "response head too long",
            Self::BadStatusLine => "malformed status line",
            Self::NotAnUpgrade => "101 without Upgrade: websocket / Connection: upgrade",
            Self::WrongAccept => "missing or wrong Sec-WebSocket-Accept",
        })
    }
}

/// Look for a complete response head at the start of `buf`: `Ok(None)` while more bytes
/// are needed.
pub fn scan_response(buf: &[u8], accept: &[u8; 28]) -> Result<Option<Response>, ResponseError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_RESPONSE_HEAD {
            Err(ResponseError::HeadTooLong)
        } else {
            Ok(None)
        };
    };
    let head_len = end + 4;
    if head_len > MAX_RESPONSE_HEAD {
        return Err(ResponseError::HeadTooLong);
    }
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse::<u16>().ok())
        .ok_or(ResponseError::BadStatusLine)?;
    if status != 101 {
        return Ok(Some(Response::Refused { status, head_len }));
    }
    let (mut upgrade, mut connection, mut accepted) = (false, false, false);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = value.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection = value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            accepted = value == accept;
        }
    }
    if !(upgrade && connection) {
        return Err(ResponseError::NotAnUpgrade);
    }
    if !accepted {
        return Err(ResponseError::WrongAccept);
    }
    Ok(Some(Response::Upgraded { head_len }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::handshake::{parse_request, write_accept};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn our_request_is_accepted_by_our_server_side_and_its_answer_checks_out() {
        let req = request("h:1", "/ws?topics=a", KEY, &[("Origin", "https://o")]);
        let parsed = parse_request(&req.bytes).unwrap();
        assert_eq!((parsed.path, parsed.query), ("/ws", Some("topics=a")));
        assert_eq!(parsed.header("origin"), Some("https://o"));
        let mut answer = Vec::new();
        write_accept(&mut answer, &parsed.accept_key(), None);
        let n = answer.len();
        answer.extend_from_slice(&[0x81, 0x00]); // a frame right behind the head
        for cut in 0..n {
            assert_eq!(scan_response(&answer[..cut], &req.accept), Ok(None));
        }
        assert_eq!(
            scan_response(&answer, &req.accept),
            Ok(Some(Response::Upgraded { head_len: n }))
        );
        assert_eq!(
            scan_response(&answer, &[b'x'; 28]),
            Err(ResponseError::WrongAccept)
        );
    }

    #[test]
    fn refusals_and_nonsense_are_told_apart() {
        let acc = [0u8; 28];
        assert_eq!(
            scan_response(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n",
                &acc
            ),
            Ok(Some(Response::Refused {
                status: 503,
                head_len: 52
            }))
        );
        assert_eq!(
            scan_response(b"SSH-2.0-OpenSSH\r\n\r\n", &acc),
            Err(ResponseError::BadStatusLine)
        );
        assert_eq!(
            scan_response(b"HTTP/1.1 101 Switching\r\n\r\n", &acc),
            Err(ResponseError::NotAnUpgrade)
        );
        assert_eq!(
            scan_response(&[b'a'; MAX_RESPONSE_HEAD + 1], &acc),
            Err(ResponseError::HeadTooLong)
        );
    }
}
