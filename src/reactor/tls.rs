//! The worker's TLS connections: a table indexed by slab slot (the 48-byte connection entry
//! does not grow; a plain connection costs one empty pointer here), each boxed: during the
//! handshake a rustls [`TlsStream`] (~3.4 KB), then, once the handshake is over, the compact
//! [`Records`] layer with the keys it agreed on (~170 B; see `crate::tls::records`), and the
//! session's plaintext whose ciphertext is being sent.
//!
//! During the handshake each record's plaintext is copied into a worker-wide scratch buffer
//! (rustls hands it out read-only); after it, records are decrypted in place where the
//! receive put them and the session unmasks them there. The session's output is encrypted
//! into a buffer from a small worker-wide pool, so an idle connection holds no buffer.

use std::sync::Arc;

use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::HandshakeKind;

use crate::io::SendBuf;
use crate::metrics::{TlsFailure, WorkerMetrics};
use crate::tls::{Records, TlsError, TlsStream};

/// Ciphertext buffers kept for reuse, per worker.
const POOL: usize = 64;
/// A pooled buffer larger than this is dropped instead of kept (a burst's big send).
const POOL_MAX_CAPACITY: usize = 64 * 1024;

/// The answer to a plain HTTP request on the TLS port.
static PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 63\r\n\r\nThis port speaks TLS: connect with wss:// (or https://) instead.\n";

/// Where a connection's TLS is.
#[derive(Debug)]
enum Layer {
    /// rustls runs the handshake.
    Handshake(Box<TlsStream<UnbufferedServerConnection>>),
    /// Established: records only.
    Records(Records),
}

/// One connection's TLS state.
#[derive(Debug)]
pub struct TlsConn {
    layer: Layer,
    /// TLS-level bytes to send once in the record layer (the tickets rustls encoded before
    /// the switch, close_notify).
    out: Vec<u8>,
    /// The session's plaintext whose ciphertext is in flight (given back to the session
    /// when the send completes).
    plain: Option<SendBuf>,
    /// Input arrived at least once (a plain HTTP request is recognised by its first byte).
    seen_input: bool,
}

impl TlsConn {
    /// Whether application data may flow.
    pub fn is_established(&self) -> bool {
        matches!(self.layer, Layer::Records(_))
    }

    /// Bytes held for a partial record and unsent TLS-level output.
    pub fn held_bytes(&self) -> usize {
        self.out.capacity()
            + match &self.layer {
                Layer::Handshake(s) => s.held_bytes(),
                Layer::Records(r) => r.held_bytes(),
            }
    }

    /// Whether it can be handed to another process now: established, nothing of the
    /// session's being sent.
    pub fn movable(&self) -> bool {
        matches!(&self.layer, Layer::Records(r) if !r.failed()) && self.plain.is_none()
    }

    /// The peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        match &self.layer {
            Layer::Handshake(s) => s.peer_closed(),
            Layer::Records(r) => r.peer_closed(),
        }
    }
}

/// What a send completion was.
#[derive(Debug)]
pub enum Sent {
    /// The session's bytes went out (encrypted): its plaintext buffer, back to it.
    Session(SendBuf),
    /// TLS's own bytes (handshake, tickets, alerts).
    Tls,
}

/// Why input ended the connection, with what to send before closing.
#[derive(Debug)]
pub struct Failed {
    /// An alert or an HTTP 400 to send first (best effort).
    pub last_words: Option<SendBuf>,
    /// Why, for the close log.
    pub why: &'static str,
    /// rustls' own words, for a debug line.
    pub detail: String,
}

/// The worker's TLS side.
#[derive(Debug)]
pub struct TlsSide {
    config: Arc<ServerConfig>,
    conns: Vec<Option<Box<TlsConn>>>,
    scratch: Vec<u8>,
    pool: Vec<Vec<u8>>,
}

impl TlsSide {
    /// A side for connections of `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            conns: Vec::new(),
            scratch: Vec::new(),
            pool: Vec::new(),
        }
    }

    /// Connection `idx` was accepted: start its TLS state.
    pub fn on_accept(&mut self, idx: u32, m: &WorkerMetrics) -> Result<(), rustls::Error> {
        let conn = UnbufferedServerConnection::new(self.config.clone())?;
        let i = idx as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(Box::new(TlsConn {
            layer: Layer::Handshake(Box::new(TlsStream::new(conn))),
            out: Vec::new(),
            plain: None,
            seen_input: false,
        }));
        m.tls_connections.add(1);
        Ok(())
    }

    /// Connection `idx` is gone.
    pub fn on_release(&mut self, idx: u32, m: &WorkerMetrics) {
        if let Some(slot) = self.conns.get_mut(idx as usize) {
            if slot.take().is_some() {
                m.tls_connections
                    .set(m.tls_connections.get().saturating_sub(1));
            }
        }
        // Give the table back when the tail empties (after a storm).
        while self.conns.last().is_some_and(Option::is_none) {
            self.conns.pop();
        }
        if self.conns.capacity() > 2 * self.conns.len() + 1024 {
            self.conns.shrink_to(self.conns.len() * 3 / 2);
        }
    }

    /// Write connection `idx`'s record layer and unsent TLS-level bytes out for a new
    /// process, and release it here. None (and nothing released) unless it is movable.
    pub fn export(&mut self, idx: u32, m: &WorkerMetrics) -> Option<(Vec<u8>, Vec<u8>)> {
        let t = self.get(idx).filter(|t| t.movable())?;
        let Layer::Records(r) = &t.layer else {
            return None;
        };
        let state = (r.export(), t.out.clone());
        self.on_release(idx, m);
        Some(state)
    }

    /// Connection `idx` arrived from the previous process established: take its record
    /// layer up from the exported state, with `out` (TLS-level bytes) to send first.
    pub fn adopt(
        &mut self,
        idx: u32,
        records: &[u8],
        out: Vec<u8>,
        m: &WorkerMetrics,
    ) -> Result<(), TlsError> {
        let records = Records::import(records)?;
        let i = idx as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(Box::new(TlsConn {
            layer: Layer::Records(records),
            out,
            plain: None,
            seen_input: true,
        }));
        m.tls_connections.add(1);
        Ok(())
    }

    /// Connection `idx`'s TLS state, if it is a TLS connection.
    pub fn get(&self, idx: u32) -> Option<&TlsConn> {
        self.conns.get(idx as usize).and_then(|c| c.as_deref())
    }

    /// Decrypt received ciphertext; each record's plaintext goes to `app` (mutable, for the
    /// session's in-place unmasking). An error ends the connection.
    pub fn input(
        &mut self,
        idx: u32,
        data: &mut [u8],
        m: &WorkerMetrics,
        app: &mut impl FnMut(&mut [u8]),
    ) -> Result<(), Failed> {
        let Some(t) = self
            .conns
            .get_mut(idx as usize)
            .and_then(|c| c.as_deref_mut())
        else {
            return Ok(());
        };
        if !t.seen_input {
            t.seen_input = true;
            if data.first().is_some_and(u8::is_ascii_uppercase) {
                m.tls_failures[TlsFailure::PlainHttp as usize].inc();
                return Err(Failed {
                    last_words: Some(SendBuf::Static(PLAIN_HTTP)),
                    why: "a plain HTTP request on the TLS port (400)",
                    detail: String::new(),
                });
            }
        }
        let r = match &mut t.layer {
            Layer::Records(r) => r.input(data, app),
            Layer::Handshake(stream) => {
                let scratch = &mut self.scratch;
                let r = stream.input(data, &mut |p| {
                    scratch.clear();
                    scratch.extend_from_slice(p);
                    app(scratch);
                });
                if self.scratch.capacity() > POOL_MAX_CAPACITY {
                    self.scratch = Vec::new();
                }
                r
            }
        };
        if let Err(e) = r {
            let (reason, why) = match &e {
                TlsError::Protocol(rustls::Error::AlertReceived(_)) => {
                    (TlsFailure::PeerAlert, "TLS: the peer sent a fatal alert")
                }
                TlsError::TooMuchHeld => (TlsFailure::Oversized, "TLS: a record too large"),
                _ => (TlsFailure::Protocol, "TLS: protocol error"),
            };
            m.tls_failures[reason as usize].inc();
            let last_words = match &mut t.layer {
                Layer::Handshake(s) => s.take_output().map(SendBuf::Owned),
                Layer::Records(_) => None,
            };
            return Err(Failed {
                last_words,
                why,
                detail: e.to_string(),
            });
        }
        // The handshake is over: count it and move to the record layer.
        let done = matches!(&t.layer, Layer::Handshake(s) if s.is_established());
        if done {
            let Layer::Handshake(stream) =
                std::mem::replace(&mut t.layer, Layer::Records(Records::placeholder()))
            else {
                unreachable!("checked above")
            };
            let resumed = stream.handshake_kind() == Some(HandshakeKind::Resumed);
            m.tls_handshakes[usize::from(resumed)].inc();
            match stream.into_records() {
                Ok((records, out)) => {
                    t.layer = Layer::Records(records);
                    t.out = out.unwrap_or_default();
                }
                Err(e) => {
                    m.tls_failures[TlsFailure::Protocol as usize].inc();
                    return Err(Failed {
                        last_words: None,
                        why: "TLS: the record layer could not take over",
                        detail: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The next bytes to send on connection `idx`: TLS's own output first, then (once the
    /// handshake is over) the session's, encrypted. `session` yields the session's next
    /// plaintext. `Ok(None)`: nothing to send; `Err`: the session's bytes could not be
    /// encrypted (the connection is to be aborted).
    pub fn next_send(
        &mut self,
        idx: u32,
        session: impl FnOnce() -> Option<SendBuf>,
    ) -> Result<Option<SendBuf>, TlsError> {
        let Some(t) = self
            .conns
            .get_mut(idx as usize)
            .and_then(|c| c.as_deref_mut())
        else {
            return Ok(None);
        };
        if !t.out.is_empty() {
            return Ok(Some(SendBuf::Owned(std::mem::take(&mut t.out))));
        }
        let records = match &mut t.layer {
            Layer::Handshake(s) => return Ok(s.take_output().map(SendBuf::Owned)),
            Layer::Records(r) => r,
        };
        if records.failed() {
            return Ok(None);
        }
        let Some(plain) = session() else {
            return Ok(None);
        };
        let mut out = self.pool.pop().unwrap_or_default();
        out.clear();
        records.encrypt(plain.bytes(), &mut out)?;
        t.plain = Some(plain);
        Ok(Some(SendBuf::Owned(out)))
    }

    /// A send on connection `idx` completed with `buf`.
    pub fn on_sent(&mut self, idx: u32, buf: SendBuf) -> Sent {
        if let SendBuf::Owned(v) = buf {
            if self.pool.len() < POOL && v.capacity() <= POOL_MAX_CAPACITY {
                self.pool.push(v);
            }
        }
        let plain = self
            .conns
            .get_mut(idx as usize)
            .and_then(|c| c.as_deref_mut())
            .and_then(|t| t.plain.take());
        match plain {
            Some(p) => Sent::Session(p),
            None => Sent::Tls,
        }
    }

    /// Connection `idx` is about to send its FIN: queue close_notify first.
    pub fn close_notify(&mut self, idx: u32) {
        if let Some(t) = self
            .conns
            .get_mut(idx as usize)
            .and_then(|c| c.as_deref_mut())
        {
            if let Layer::Records(r) = &mut t.layer {
                r.close_notify(&mut t.out);
            }
        }
    }
}
