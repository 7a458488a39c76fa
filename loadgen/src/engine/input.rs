//! What comes back from the kernel for a client connection: connect results, the 101,
//! frames (through the one reassembler), pings, closes, send completions.

use holdfast::io::{Completion, Extra, Op, Read, SendBuf};
use holdfast::ws::assembler::{self, Flow, Message};
use holdfast::ws::client::{scan_response, Response};
use holdfast::ws::frame::{encode_close, encode_frame};
use holdfast::ws::OpCode;

use super::{reconnect_hint, Engine, Phase, MASK};
use crate::counters::{CloseKey, Failure, C};

impl Engine {
    // ------------------------------------------------------------------ completions

    pub(super) fn complete(&mut self, c: Completion) {
        let tok = c.token;
        if matches!(tok.op, Op::Ignore | Op::Accept | Op::Wake) {
            return;
        }
        let idx = tok.index;
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return;
        };
        if !conn.socket.owns(tok) {
            return; // an earlier connection's (its buffer goes back as `c` drops)
        }
        let mode = self.spec.read_mode;
        match tok.op {
            // The first failing step's error; the connect then completes -ECANCELED and
            // the failure is counted once, under this error.
            Op::Step if c.res < 0 && conn.step_error == 0 => conn.step_error = c.res,
            Op::Connect => {
                let step = conn.step_error;
                self.on_connected(idx, if step < 0 { step } else { c.res });
            }
            Op::Send => {
                conn.socket.on_sent();
                if let Extra::Sent(SendBuf::Owned(mut v)) = c.extra {
                    v.clear();
                    conn.spare = v;
                }
                if conn.phase == Phase::Closed {
                    return;
                }
                if c.res < 0 {
                    self.close_key(CloseKey::Reason("send_error"));
                    return self.finish(idx);
                }
                self.flush(idx);
            }
            Op::Poll => {
                let wants = conn.wants_input();
                conn.socket.on_poll(&mut self.ring, mode, &c, idx, wants);
            }
            Op::Recv => {
                match conn.socket.on_recv(mode, c) {
                    Read::Data(mut buf) => {
                        let bytes = buf.bytes_mut();
                        self.counts.add(C::BytesIn, bytes.len() as u64);
                        self.counts.add(C::Reads, 1);
                        self.on_bytes(idx, bytes)
                    }
                    Read::End(res) => self.on_read_end(idx, res),
                    Read::Nothing => {}
                }
                if let Some(conn) = self.conns.get_mut(idx as usize) {
                    let wants = conn.wants_input();
                    conn.socket.resume(&mut self.ring, mode, idx, wants);
                }
            }
            Op::Shutdown => {
                if c.res < 0 && c.res != -libc::ENOTCONN {
                    self.close_key(CloseKey::ShutdownErrno(-c.res));
                }
                if let Some(conn) = self.conns.get_mut(idx as usize) {
                    conn.socket.on_shutdown(&mut self.ring, idx);
                }
            }
            Op::Close => {
                let conn = self.conns.remove(idx as usize);
                self.free.push(conn.socket.slot());
            }
            _ => {}
        }
    }

    fn on_connected(&mut self, idx: u32, res: i32) {
        if res < 0 {
            let why = match -res {
                libc::ECONNREFUSED => Failure::Refused,
                libc::ETIMEDOUT => Failure::Timeout,
                libc::ECONNRESET => Failure::Reset,
                libc::EADDRNOTAVAIL | libc::EADDRINUSE => Failure::Ports,
                libc::ECANCELED => Failure::Aborted,
                _ => Failure::Other,
            };
            return self.fail(idx, why);
        }
        let c = &mut self.conns[idx as usize];
        c.phase = Phase::Handshaking;
        let target = &self.spec.targets[usize::from(c.target)];
        if let Some(t) = &target.tls {
            // The ClientHello first; the upgrade request once the handshake is over.
            // A reconnect comes back with the ticket its first connection received.
            let config = match c.attempt {
                Some(_) => &t.configs.returning,
                None => &t.configs.fresh,
            };
            let conn =
                rustls::client::UnbufferedClientConnection::new(config.clone(), t.name.clone());
            let Ok(conn) = conn else {
                self.close_key(CloseKey::Reason("tls_setup"));
                return self.fail(idx, Failure::Protocol);
            };
            let mut tls = Box::new(holdfast::tls::TlsStream::new(conn));
            let _ = tls.input(&mut [], &mut |_| {});
            c.tls = Some(tls);
            c.socket.arm(&mut self.ring, self.spec.read_mode, idx);
            return self.flush(idx);
        }
        if target.poll {
            // A poll is open once asked: the server may hold it for its whole hold time.
            // The first one counts the client as established; later ones carry its cursor.
            let first = c.cursor.is_none();
            let req = match &c.cursor {
                Some(cursor) => SendBuf::Owned(target.poll_request(cursor)),
                None => SendBuf::Shared(target.request.clone()),
            };
            c.socket.send(&mut self.ring, req, idx);
            c.socket.arm(&mut self.ring, self.spec.read_mode, idx);
            if first {
                return self.on_upgraded(idx);
            }
            c.phase = Phase::Open;
            self.in_flight -= 1;
            return;
        }
        let req = target.request.clone();
        c.socket.send(&mut self.ring, SendBuf::Shared(req), idx);
        c.socket.arm(&mut self.ring, self.spec.read_mode, idx);
    }

    /// Long-poll bytes: the answer's head and body (`Content-Length`), held until whole.
    /// 200: every item goes to the scenario as the JSON a stream would carry, then the next
    /// poll from the answer's cursor. 503 (a drain): the connection ends with the
    /// `Retry-After` hint. Anything else ends it under its status.
    fn poll_answer(&mut self, idx: u32, data: &mut [u8]) {
        let c = &mut self.conns[idx as usize];
        let mut buf = c.held.take().map(|h| h.pending).unwrap_or_default();
        buf.extend_from_slice(data);
        let hold = |e: &mut Self, buf: Vec<u8>| {
            let mut h = Box::<holdfast::ws::assembler::Partial>::default();
            h.pending = buf;
            e.conns[idx as usize].held = Some(h);
        };
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > 8192 {
                self.close_key(CloseKey::Reason("poll_head_too_large"));
                return self.finish(idx);
            }
            return hold(self, buf);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|d| d.parse::<u16>().ok());
        let header = |name: &str| {
            head.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let len = header("content-length").and_then(|v| v.parse::<usize>().ok());
        match (status, len) {
            (Some(200), Some(len)) => {
                if len > 64 << 20 {
                    self.close_key(CloseKey::Reason("poll_answer_too_large"));
                    return self.finish(idx);
                }
                if buf.len() < end + 4 + len {
                    return hold(self, buf);
                }
                let Some((cursor, items)) = poll_items(&buf[end + 4..end + 4 + len]) else {
                    self.close_key(CloseKey::Reason("poll_answer_malformed"));
                    return self.finish(idx);
                };
                self.counts.inc(C::Polls);
                let kept = header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"))
                    && buf.len() == end + 4 + len;
                for m in items {
                    // Each item's own text, as an event stream's data line would carry it
                    // (not parsed into a tree and printed again: the client's cost per
                    // message is the scenario's parse, as for the other transports).
                    self.on_data(idx, false, m.get().as_bytes());
                    if self
                        .conns
                        .get(idx as usize)
                        .is_none_or(|c| c.phase != Phase::Open)
                    {
                        return;
                    }
                }
                self.repoll(idx, cursor, kept);
            }
            (Some(503), _) => {
                let secs = header("retry-after").and_then(|v| v.parse::<u32>().ok());
                self.close_key(CloseKey::Http(503));
                self.conns[idx as usize].hint_ms = secs.map_or(0, |s| s.saturating_mul(1000));
                self.finish(idx);
            }
            (Some(s), _) => {
                self.close_key(CloseKey::Http(s));
                self.finish(idx);
            }
            (None, _) => {
                self.close_key(CloseKey::Reason("poll_answer_malformed"));
                self.finish(idx);
            }
        }
    }

    /// wss://: decrypt, send what TLS has to say (its handshake, the upgrade request once
    /// it is over), and hand the plaintext on.
    fn on_tls_bytes(&mut self, idx: u32, data: &mut [u8]) {
        let c = &mut self.conns[idx as usize];
        let Some(tls) = c.tls.as_mut() else { return };
        let was = tls.is_established();
        let mut plain = std::mem::take(&mut self.tls_plain);
        plain.clear();
        let r = tls.input(data, &mut |p| plain.extend_from_slice(p));
        let now = tls.is_established();
        let resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        if r.is_err() {
            self.tls_plain = plain;
            let handshaking = c.phase == Phase::Handshaking;
            // Send the alert (best effort) before the close.
            self.flush(idx);
            if handshaking {
                self.close_key(CloseKey::Reason("tls_handshake_failed"));
                return self.fail(idx, Failure::Protocol);
            }
            self.close_key(CloseKey::Reason("tls_error"));
            return self.finish(idx);
        }
        if !was && now {
            self.counts
                .inc(if resumed { C::TlsResumed } else { C::TlsFull });
            let req = self.spec.targets[usize::from(c.target)].request.clone();
            c.queued.extend_from_slice(&req);
        }
        self.flush(idx);
        if !plain.is_empty() {
            self.on_plain(idx, &mut plain);
        }
        self.tls_plain = plain;
    }

    /// The read side ended: EOF (`res` 0) or an error.
    fn on_read_end(&mut self, idx: u32, res: i32) {
        match self.conns[idx as usize].phase {
            Phase::Handshaking => {
                let why = if res == 0 {
                    "handshake_eof"
                } else {
                    "handshake_error"
                };
                self.close_key(CloseKey::Reason(why));
                self.fail(idx, Failure::Reset);
            }
            Phase::Open => {
                self.close_key(CloseKey::Reason(if res == 0 { "eof" } else { "reset" }));
                self.finish(idx);
            }
            Phase::Closing => self.finish(idx),
            Phase::Connecting | Phase::Closed => {}
        }
    }

    fn on_bytes(&mut self, idx: u32, data: &mut [u8]) {
        if self.conns[idx as usize].tls.is_some() {
            return self.on_tls_bytes(idx, data);
        }
        self.on_plain(idx, data);
    }

    /// Plaintext: the 101 and frames.
    fn on_plain(&mut self, idx: u32, data: &mut [u8]) {
        if self
            .conns
            .get(idx as usize)
            .is_none_or(|c| c.phase == Phase::Closed)
        {
            return;
        }
        if self.conns[idx as usize].phase == Phase::Handshaking {
            return self.on_response(idx, data);
        }
        let target = usize::from(self.conns[idx as usize].target);
        if self.spec.targets[target].sse {
            return self.events(idx, data);
        }
        if self.spec.targets[target].poll {
            return self.poll_answer(idx, data);
        }
        self.frames(idx, data);
    }

    /// Bytes of the 101 (and perhaps frames behind it).
    fn on_response(&mut self, idx: u32, data: &mut [u8]) {
        let c = &mut self.conns[idx as usize];
        if self.spec.targets[usize::from(c.target)].sse {
            return self.on_stream_response(idx, data);
        }
        let accept = self.spec.targets[usize::from(c.target)].accept;
        let mut joined = c.held.take().map(|h| h.pending);
        if let Some(p) = joined.as_mut() {
            p.extend_from_slice(data);
        }
        let head: &[u8] = joined.as_deref().unwrap_or(data);
        match scan_response(head, &accept) {
            Ok(None) => {
                let mut h = Box::<holdfast::ws::assembler::Partial>::default();
                h.pending = joined.unwrap_or_else(|| data.to_vec());
                self.conns[idx as usize].held = Some(h);
            }
            Ok(Some(Response::Refused { status, .. })) => {
                self.close_key(CloseKey::Http(status));
                self.fail(idx, Failure::Http);
            }
            Err(_) => self.fail(idx, Failure::Protocol),
            Ok(Some(Response::Upgraded { head_len })) => {
                self.on_upgraded(idx);
                let rest = match joined.as_mut() {
                    Some(p) => &mut p[head_len..],
                    None => &mut data[head_len..],
                };
                if !rest.is_empty() {
                    self.frames(idx, rest);
                }
            }
        }
    }

    /// An event stream's response head: 200 opens it (events may follow in the same
    /// bytes); anything else is a refusal.
    fn on_stream_response(&mut self, idx: u32, data: &mut [u8]) {
        let c = &mut self.conns[idx as usize];
        let mut joined = c.held.take().map(|h| h.pending).unwrap_or_default();
        joined.extend_from_slice(data);
        let Some(end) = joined.windows(4).position(|w| w == b"\r\n\r\n") else {
            if joined.len() > 8192 {
                return self.fail(idx, Failure::Protocol);
            }
            let mut h = Box::<holdfast::ws::assembler::Partial>::default();
            h.pending = joined;
            self.conns[idx as usize].held = Some(h);
            return;
        };
        let status = joined
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u16>().ok());
        match status {
            Some(200) => {
                self.on_upgraded(idx);
                let mut rest = joined[end + 4..].to_vec();
                if !rest.is_empty() {
                    self.events(idx, &mut rest);
                }
            }
            Some(s) => {
                self.close_key(CloseKey::Http(s));
                self.fail(idx, Failure::Http);
            }
            None => self.fail(idx, Failure::Protocol),
        }
    }

    /// Event-stream bytes: whole events (up to a blank line) go to the scenario as the
    /// JSON of their data; comments (heartbeats) are counted as pings; a `close` event ends
    /// the connection (with a drain's hint).
    fn events(&mut self, idx: u32, data: &mut [u8]) {
        let c = &mut self.conns[idx as usize];
        let mut buf = c.held.take().map(|h| h.pending).unwrap_or_default();
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(n) = buf[start..].windows(2).position(|w| w == b"\n\n") {
            let block = &buf[start..start + n];
            start += n + 2;
            let (mut event, mut payload, mut comment) = (&b""[..], Vec::new(), false);
            for line in block.split(|&b| b == b'\n') {
                if line.starts_with(b":") {
                    comment = true;
                } else if let Some(v) = line.strip_prefix(b"data: ") {
                    if !payload.is_empty() {
                        payload.push(b'\n');
                    }
                    payload.extend_from_slice(v);
                } else if let Some(v) = line.strip_prefix(b"event: ") {
                    event = v;
                }
            }
            if comment && payload.is_empty() {
                self.counts.inc(C::Pings);
            }
            if event == b"close" {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                let code = v["code"].as_u64().unwrap_or(1005) as u16;
                let reason = v["reason"].as_str().unwrap_or("").to_string();
                self.close_key(CloseKey::Code(code));
                self.conns[idx as usize].hint_ms = reconnect_hint(reason.as_bytes());
                return self.finish(idx);
            }
            if !payload.is_empty() {
                self.on_data(idx, false, &payload);
                if self
                    .conns
                    .get(idx as usize)
                    .is_none_or(|c| c.phase == Phase::Closed)
                {
                    return;
                }
            }
        }
        if start < buf.len() {
            if buf.len() - start > 1 << 20 {
                self.close_key(CloseKey::Reason("event_too_large"));
                return self.finish(idx);
            }
            let mut h = Box::<holdfast::ws::assembler::Partial>::default();
            h.pending = buf[start..].to_vec();
            self.conns[idx as usize].held = Some(h);
        }
    }

    fn on_upgraded(&mut self, idx: u32) {
        let now_us = (self.now_ns() / 1000) as u32;
        let c = &mut self.conns[idx as usize];
        let micros = u64::from(now_us.wrapping_sub(c.started_us).max(1));
        let _ = self.out.connect_us.record(micros);
        c.phase = Phase::Open;
        let reconnect = c.attempt.is_some();
        self.in_flight -= 1;
        self.counts.inc(C::Established);
        self.counts.inc(C::Open);
        if reconnect {
            self.counts.inc(C::Reconnected);
            self.counts.dec(C::Awaiting);
            let now = self.now_ns();
            self.counts.record(C::LastReconnectNs, now);
        }
        self.on_open(idx);
    }

    /// Frames: decoded in the received buffer; whole messages go to the scenario.
    fn frames(&mut self, idx: u32, data: &mut [u8]) {
        let c = &mut self.conns[idx as usize];
        let generation = c.socket.generation();
        let mut decoder = std::mem::replace(
            &mut c.decoder,
            holdfast::ws::Decoder::new(holdfast::ws::Role::Client),
        );
        let mut held = c.held.take();
        let r = assembler::feed_in_place(&mut decoder, &mut held, data, u32::MAX, |m| {
            self.on_message(idx, m)
        });
        let Some(c) = self.conns.get_mut(idx as usize) else {
            return;
        };
        if c.socket.generation() != generation || c.phase == Phase::Closed {
            return;
        }
        c.decoder = decoder;
        c.held = held;
        if r.is_err() {
            self.close_key(CloseKey::Reason("protocol_error"));
            self.finish(idx);
        }
    }

    fn on_message(&mut self, idx: u32, m: Message<'_>) -> Flow {
        match m {
            Message::Ping(p) => {
                self.counts.inc(C::Pings);
                if p.is_empty() {
                    self.pong_empty(idx);
                } else {
                    let mut f = Vec::new();
                    encode_frame(&mut f, true, OpCode::Pong, Some(MASK), p);
                    self.send_control(idx, &f);
                }
            }
            Message::Pong(_) => self.counts.inc(C::Pongs),
            Message::Close(code, reason, reply) => {
                self.close_key(CloseKey::Code(code.map_or(1005, |c| c.0)));
                self.conns[idx as usize].hint_ms = reconnect_hint(reason.as_bytes());
                if let Some(echo) = reply {
                    let mut f = Vec::new();
                    encode_close(&mut f, echo, "", Some(MASK));
                    let _ = self.send(idx, &f);
                }
                // Our reply (if any) is queued ahead of the shutdown.
                self.finish(idx);
                return Flow::Stop;
            }
            Message::Text(t) => self.on_data(idx, false, t.as_bytes()),
            Message::Binary(b) => self.on_data(idx, true, b),
        }
        if self.conns[idx as usize].phase == Phase::Closed {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// A long poll's answer body `{"cursor":…,"messages":[…]}`: its cursor and each item's
/// JSON text; None if it is not that shape.
fn poll_items(body: &[u8]) -> Option<(Box<str>, Vec<&serde_json::value::RawValue>)> {
    use serde_json::value::RawValue;
    let fields: std::collections::HashMap<&str, &RawValue> = serde_json::from_slice(body).ok()?;
    let cursor: String = serde_json::from_str(fields.get("cursor")?.get()).ok()?;
    let items: Vec<&RawValue> = match fields.get("messages") {
        Some(m) => serde_json::from_str(m.get()).ok()?,
        None => Vec::new(),
    };
    Some((cursor.into(), items))
}

#[cfg(test)]
mod poll_tests {
    use super::poll_items;

    #[test]
    fn a_poll_answer_yields_its_cursor_and_each_item_as_sent() {
        let body = br#"{"cursor":"a:3@00000000000000ff,b\u00e9:1","messages":[{"type":"message","seq":2,"data":{"x":[1, 2]}},{"type":"gap","from":1,"to":1}]}"#;
        let (cursor, items) = poll_items(body).unwrap();
        assert_eq!(&*cursor, "a:3@00000000000000ff,b\u{e9}:1");
        let texts: Vec<&str> = items.iter().map(|m| m.get()).collect();
        assert_eq!(
            texts,
            [
                r#"{"type":"message","seq":2,"data":{"x":[1, 2]}}"#,
                r#"{"type":"gap","from":1,"to":1}"#
            ]
        );
        assert_eq!(poll_items(br#"{"cursor":"c:0"}"#).unwrap().1.len(), 0);
        assert!(poll_items(br#"{"messages":[]}"#).is_none(), "no cursor");
        assert!(poll_items(br#"{"cursor":7,"messages":[]}"#).is_none());
        assert!(poll_items(br#"{"cursor":"c:0","messages":{}}"#).is_none());
        assert!(poll_items(b"not json").is_none());
    }
}
