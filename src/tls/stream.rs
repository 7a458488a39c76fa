//! One TLS connection as a sans-IO byte transformer over rustls' unbuffered API: ciphertext
//! in, plaintext out to a callback; plaintext in, ciphertext out into the caller's buffer.
//! The caller owns every buffer, so an idle connection holds no buffer at all: received
//! ciphertext is processed where the receive put it (a provided buffer) and only a record
//! split across reads is copied aside ([`TlsStream::held_bytes`]) until its end arrives.
//!
//! The same type serves the server (`UnbufferedServerConnection`) and the load generator
//! (`UnbufferedClientConnection`) through [`Endpoint`].

use std::mem;

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{CommonState, HandshakeKind};

/// The most ciphertext a connection may hold between reads: the largest record (16 KiB of
/// plaintext + 2 KiB of expansion + the header, 18,437 B) and a few KiB more for a client's
/// handshake message split across records. A client's handshake messages are small (no
/// client certificates are asked for), so more is an attack: the connection fails.
pub const MAX_HELD: usize = 24 * 1024;

/// Per-record expansion at most (header, content type, nonce, tag), for sizing output.
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 1 + 32;
/// Largest plaintext per record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// A rustls unbuffered connection of either side.
pub trait Endpoint {
    /// The side's connection data.
    type Data;
    /// Process the records in `incoming` (see rustls' `process_tls_records`).
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// The state both sides share (handshake kind, version, suite).
    fn common(&self) -> &CommonState;
    /// The traffic keys and sequence numbers (the configuration must allow extraction).
    fn into_secrets(self) -> Result<rustls::ExtractedSecrets, rustls::Error>;
}

/// Both sides' connections implement it the same way (their methods share names, not a
/// trait of rustls').
macro_rules! endpoint {
    ($conn:ty, $data:ty) => {
        impl Endpoint for $conn {
            type Data = $data;
            fn process<'c, 'i>(
                &'c mut self,
                incoming: &'i mut [u8],
            ) -> UnbufferedStatus<'c, 'i, Self::Data> {
                self.process_tls_records(incoming)
            }
            fn common(&self) -> &CommonState {
                self
            }
            fn into_secrets(self) -> Result<rustls::ExtractedSecrets, rustls::Error> {
                self.dangerous_into_kernel_connection().map(|(s, _)| s)
            }
        }
    };
}

endpoint!(
    UnbufferedServerConnection,
    rustls::server::ServerConnectionData
);
endpoint!(
    UnbufferedClientConnection,
    rustls::client::ClientConnectionData
);

/// Why a TLS connection cannot go on.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsError {
    /// The peer broke the protocol or the handshake failed (an alert may be queued: send
    /// [`TlsStream::take_output`] before closing).
    Protocol(rustls::Error),
    /// More than [`MAX_HELD`] bytes of an unfinished record or handshake message.
    TooMuchHeld,
    /// Application data was offered before the handshake finished or after close_notify.
    NotWritable,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "TLS: {e}"),
            Self::TooMuchHeld => write!(f, "TLS: more than {MAX_HELD} bytes of one record"),
            Self::NotWritable => f.write_str("TLS: the connection cannot send application data"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Protocol(e)
    }
}

/// The peer sent close_notify.
const PEER_CLOSED: u8 = 1 << 0;
/// A protocol error ended it.
const FAILED: u8 = 1 << 1;

/// One TLS connection's state and the only two buffers it may hold: a partial record
/// received, and TLS-level output (handshake flights, tickets, alerts) not yet sent.
pub struct TlsStream<E> {
    conn: E,
    held: Vec<u8>,
    out: Vec<u8>,
    flags: u8,
}

impl<E: Endpoint> std::fmt::Debug for TlsStream<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("established", &self.is_established())
            .field("held", &self.held.len())
            .field("out", &self.out.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl<E: Endpoint> TlsStream<E> {
    /// Wrap a new rustls connection.
    pub fn new(conn: E) -> Self {
        Self {
            conn,
            held: Vec::new(),
            out: Vec::new(),
            flags: 0,
        }
    }

    /// The rustls connection.
    pub fn endpoint(&self) -> &E {
        &self.conn
    }

    /// The rustls connection, taken out.
    pub fn into_endpoint(self) -> E {
        self.conn
    }

    /// Once the handshake is over: the compact record layer that carries on with its keys
    /// (rustls' state is dropped), and the TLS-level output still to send (tickets). The
    /// configuration must allow secret extraction.
    pub fn into_records(mut self) -> Result<(super::Records, Option<Vec<u8>>), TlsError> {
        if !self.is_established() || self.failed() {
            return Err(TlsError::NotWritable);
        }
        let out = self.take_output();
        let version = self
            .conn
            .common()
            .protocol_version()
            .ok_or(TlsError::NotWritable)?;
        let held = mem::take(&mut self.held);
        let secrets = self.conn.into_secrets()?;
        let records = super::Records::new(version, secrets, held)?;
        Ok((records, out))
    }

    /// Whether the handshake is over (application data may flow both ways).
    pub fn is_established(&self) -> bool {
        !self.conn.common().is_handshaking()
    }

    /// Whether the handshake was a full or a resumed one (once known).
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.conn.common().handshake_kind()
    }

    /// Whether the peer sent close_notify (its input is over).
    pub fn peer_closed(&self) -> bool {
        self.flags & PEER_CLOSED != 0
    }

    /// Whether a protocol error ended it.
    pub fn failed(&self) -> bool {
        self.flags & FAILED != 0
    }

    /// Heap bytes held for this connection's input and TLS-level output (its buffers; the
    /// rustls state itself is not counted).
    pub fn held_bytes(&self) -> usize {
        self.held.capacity() + self.out.capacity()
    }

    /// TLS-level output waiting for a send (a handshake flight, tickets, an alert,
    /// close_notify), taken whole.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(mem::take(&mut self.out))
        }
    }

    /// Whether TLS-level output is waiting.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Feed received ciphertext (processed in place where possible); each decrypted
    /// application record goes to `app` in order. After an error the connection is over:
    /// send what [`TlsStream::take_output`] returns (an alert) and close.
    pub fn input(&mut self, data: &mut [u8], app: &mut impl FnMut(&[u8])) -> Result<(), TlsError> {
        if self.failed() {
            return Err(TlsError::NotWritable);
        }
        let held = mem::take(&mut self.held);
        let r = feed_held(held, data, |buf| self.process(buf, app)).map(|h| self.held = h);
        if let Err(e) = r {
            self.flags |= FAILED;
            self.held = Vec::new();
            self.queue_alert();
            return Err(e);
        }
        if self.held.len() > MAX_HELD {
            self.flags |= FAILED;
            self.held = Vec::new();
            return Err(TlsError::TooMuchHeld);
        }
        Ok(())
    }

    /// After a protocol error rustls has queued its alert: one more turn encodes it.
    fn queue_alert(&mut self) {
        let UnbufferedStatus { state, .. } = self.conn.process(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = state {
            let _ = encode_into(&mut e, &mut self.out);
        }
    }

    /// Run rustls over `buf` until it needs more input; returns the bytes it consumed.
    fn process(&mut self, buf: &mut [u8], app: &mut impl FnMut(&[u8])) -> Result<usize, TlsError> {
        let mut start = 0;
        // Bounded: each turn consumes a record, emits a chunk, or stops; a buffer holds at
        // most MAX_HELD / 5 records.
        for _ in 0..(buf.len() / 5 + 64) {
            let UnbufferedStatus { discard, state } = self.conn.process(&mut buf[start..]);
            let mut stop = false;
            match state? {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        app(rec?.payload);
                    }
                }
                // Early data is never enabled (max_early_data_size 0).
                ConnectionState::ReadEarlyData(_) => stop = true,
                ConnectionState::EncodeTlsData(mut e) => encode_into(&mut e, &mut self.out)?,
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::PeerClosed => self.flags |= PEER_CLOSED,
                ConnectionState::BlockedHandshake
                | ConnectionState::WriteTraffic(_)
                | ConnectionState::Closed => stop = true,
                _ => stop = true,
            }
            start += discard;
            if stop {
                return Ok(start);
            }
        }
        Ok(start)
    }

    /// Encrypt `plain` as application data, appended to `out`.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.write_with(out, |w, buf| w.encrypt(plain, buf), plain.len())
    }

    /// Send a TLS 1.3 KeyUpdate and move to new traffic keys (rustls also does this by
    /// itself before a key's confidentiality limit). The message goes out with the next
    /// [`TlsStream::encrypt`] or [`TlsStream::take_output`].
    pub fn refresh_traffic_keys(&mut self) -> Result<(), TlsError> {
        let UnbufferedStatus { state, .. } = self.conn.process(&mut []);
        match state? {
            ConnectionState::WriteTraffic(w) => Ok(w.refresh_traffic_keys()?),
            _ => Err(TlsError::NotWritable),
        }
    }

    /// Append close_notify to the TLS-level output (the last record we send).
    pub fn close_notify(&mut self) {
        let mut out = mem::take(&mut self.out);
        let _ = self.write_with(&mut out, |w, buf| w.queue_close_notify(buf), 0);
        self.out = out;
    }

    fn write_with(
        &mut self,
        out: &mut Vec<u8>,
        mut f: impl FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, E::Data>,
            &mut [u8],
        ) -> Result<usize, EncryptError>,
        len: usize,
    ) -> Result<(), TlsError> {
        if self.failed() {
            return Err(TlsError::NotWritable);
        }
        for _ in 0..8 {
            let UnbufferedStatus { state, .. } = self.conn.process(&mut []);
            match state? {
                ConnectionState::WriteTraffic(mut w) => {
                    let at = out.len();
                    let mut room = len + (len / MAX_FRAGMENT + 1) * RECORD_OVERHEAD;
                    for _ in 0..2 {
                        out.resize(at + room, 0);
                        match f(&mut w, &mut out[at..]) {
                            Ok(n) => {
                                out.truncate(at + n);
                                return Ok(());
                            }
                            Err(EncryptError::InsufficientSize(s)) => room = s.required_size,
                            Err(EncryptError::EncryptExhausted) => {
                                out.truncate(at);
                                return Err(TlsError::NotWritable);
                            }
                        }
                    }
                    out.truncate(at);
                    return Err(TlsError::NotWritable);
                }
                // A key update's answer, say: it goes first.
                ConnectionState::EncodeTlsData(mut e) => encode_into(&mut e, out)?,
                ConnectionState::TransmitTlsData(t) => t.done(),
                _ => return Err(TlsError::NotWritable),
            }
        }
        Err(TlsError::NotWritable)
    }
}

/// Run `process` (which returns the bytes it consumed) over what is `held` from earlier
/// reads followed by `data` — over `data` where it lies when nothing is held — and return
/// what is left unconsumed (a partial record) for the next read; nothing is allocated when
/// everything was consumed.
pub(super) fn feed_held<E>(
    mut held: Vec<u8>,
    data: &mut [u8],
    process: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<Vec<u8>, E> {
    if held.is_empty() {
        let used = process(data)?;
        return Ok(data[used..].to_vec());
    }
    held.extend_from_slice(data);
    let used = process(&mut held)?;
    held.drain(..used);
    if held.is_empty() {
        held = Vec::new();
    }
    Ok(held)
}

/// Append a TLS-level chunk to `out` (asking rustls for its size first).
fn encode_into<D>(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, D>,
    out: &mut Vec<u8>,
) -> Result<(), TlsError> {
    let need = match e.encode(&mut []) {
        Ok(_) => return Ok(()),
        Err(EncodeError::InsufficientSize(s)) => s.required_size,
        Err(EncodeError::AlreadyEncoded) => return Ok(()),
    };
    let at = out.len();
    out.resize(at + need, 0);
    match e.encode(&mut out[at..]) {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(_) => {
            out.truncate(at);
            Err(TlsError::NotWritable)
        }
    }
}
