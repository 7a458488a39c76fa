//! Server-sent events (the WHATWG `text/event-stream` format), sans-IO: the response head,
//! events, heartbeats and the end of a stream. A session in stream mode writes these where a
//! WebSocket session writes frames (docs/protocol.md "Server-sent events").

/// The response head of an event stream, then the first reconnect hint. No length and no
/// chunking: the body ends when the connection does (`Connection: close`); `X-Accel-Buffering`
/// asks nginx-style proxies not to buffer it. Any origin may read it (CORS `*`): streams
/// authenticate with a token in the URL or a header, never a cookie, and origins outside
/// `--allowed-origins` were refused before this.
pub fn write_head(out: &mut Vec<u8>, retry_ms: u32) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
          Cache-Control: no-store\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\
          Access-Control-Allow-Origin: *\r\n\r\n",
    );
    write_retry(out, retry_ms);
}

/// `retry: N`: the reconnect delay the client should use.
pub fn write_retry(out: &mut Vec<u8>, retry_ms: u32) {
    out.extend_from_slice(format!("retry: {retry_ms}\n\n").as_bytes());
}

/// A comment line: keeps proxies from reaping an idle stream.
pub static HEARTBEAT: [u8; 3] = *b":\n\n";

/// One event: `id` (the stream's cursor after it), `event` (its type; none: "message") and
/// `data` (one line: JSON never holds a raw newline; any line break in `data` would start a
/// new `data:` line, which the client joins back with `\n`).
pub fn write_event(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        // An id may not hold a line break or NUL (the client would ignore the id).
        out.extend(id.bytes().filter(|b| !matches!(b, b'\n' | b'\r' | 0)));
        out.push(b'\n');
    }
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// An event whose `id` is written by `id` (which must write no line break: a cursor of
/// validated topic names, numbers and hex epochs), without building it first.
pub fn write_event_with(out: &mut Vec<u8>, id: impl FnOnce(&mut Vec<u8>), data: &[u8]) {
    out.extend_from_slice(b"id: ");
    id(out);
    out.push(b'\n');
    write_event(out, None, None, data);
}

/// The last event of a stream the server ends: `event: close` with the code and reason a
/// WebSocket would have been closed with, after the reconnect hint when there is one.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str, retry_ms: Option<u64>) {
    if let Some(ms) = retry_ms {
        write_retry(out, ms.min(u64::from(u32::MAX)) as u32);
    }
    let data = serde_json::json!({"code": code, "reason": reason}).to_string();
    write_event(out, None, Some("close"), data.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_event_stream_format() {
        let mut v = Vec::new();
        write_event(&mut v, Some("a:4@e1\nx"), None, b"{\"x\":1}");
        assert_eq!(v, b"id: a:4@e1x\ndata: {\"x\":1}\n\n");
        v.clear();
        write_event(&mut v, None, Some("close"), b"two\r\nlines");
        assert_eq!(v, b"event: close\ndata: two\ndata: lines\n\n");
        v.clear();
        write_event_with(&mut v, |v| v.extend_from_slice(b"a:4@e1"), b"{}");
        assert_eq!(v, b"id: a:4@e1\ndata: {}\n\n");
        v.clear();
        write_close(
            &mut v,
            1012,
            r#"{"reason":"draining","reconnect_after_ms":700}"#,
            Some(700),
        );
        let t = String::from_utf8(v).unwrap();
        assert!(t.starts_with("retry: 700\n\nevent: close\ndata: {"), "{t}");
        let mut h = Vec::new();
        write_head(&mut h, 1000);
        let h = String::from_utf8(h).unwrap();
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\nretry: 1000\n\n"));
    }
}
