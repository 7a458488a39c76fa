//! The record layer of an established TLS connection, kept in ~170 bytes: once rustls has
//! finished the handshake its connection (about 3.4 KB with its key schedules, AEAD key
//! contexts and buffers) is turned into the traffic keys it agreed on (rustls' secret
//! extraction, the interface kernel TLS uses) and this type protects the records itself with
//! *ring*'s AEADs, as the kernel would. Key contexts are built per call from the raw keys
//! (an AES key expansion and a GHASH table: well under a microsecond), so an idle
//! connection holds 2 × (key, IV, sequence number) and nothing else.
//!
//! Supported: TLS 1.3 and TLS 1.2 with AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 (every
//! suite the server offers). Decryption is in place in the caller's buffer, so the plaintext
//! reaches the session without a copy.
//!
//! Not supported after the handshake, each ending the connection with a clear error: a TLS
//! 1.3 KeyUpdate from the peer (browsers do not send one unprompted), TLS 1.2
//! renegotiation (rustls refuses it too), and more records on one key than AES-GCM's
//! confidentiality limit (2^24 here, RFC 8446 §5.5: ~16M records, after which the client
//! reconnects — with a session ticket).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

use super::stream::{feed_held, TlsError};

/// Record header length.
const HEADER: usize = 5;
/// AEAD tag length (all three suites).
const TAG: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce in each record.
const EXPLICIT: usize = 8;
/// Largest plaintext per record.
const MAX_PLAIN: usize = 1 << 14;
/// The most ciphertext a partial record may hold: the largest TLS 1.2 record.
const MAX_RECORD: usize = HEADER + MAX_PLAIN + 2048;
/// Records one AES-GCM key may protect here (RFC 8446 §5.5 allows 2^24.5).
const AES_GCM_LIMIT: u64 = 1 << 24;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// Which AEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20,
}

impl Suite {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Chacha20 => &aead::CHACHA20_POLY1305,
        }
    }

    fn limit(self) -> u64 {
        match self {
            Self::Chacha20 => u64::MAX,
            _ => AES_GCM_LIMIT,
        }
    }
}

/// One direction's key, IV and next sequence number.
#[derive(Clone)]
struct Direction {
    key: [u8; 32],
    iv: [u8; 12],
    seq: u64,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Direction {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<(Suite, Self), TlsError> {
        let (suite, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Suite::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Suite::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (Suite::Chacha20, key, iv),
            _ => {
                return Err(unsupported(
                    "a cipher suite this record layer does not know",
                ))
            }
        };
        let mut d = Self {
            key: [0; 32],
            iv: [0; 12],
            seq,
        };
        let (k, i) = (key.as_ref(), iv.as_ref());
        if k.len() > 32 || i.len() != 12 {
            return Err(unsupported("unexpected key or IV length"));
        }
        d.key[..k.len()].copy_from_slice(k);
        d.iv.copy_from_slice(i);
        Ok((suite, d))
    }

    fn aead(&self, suite: Suite) -> LessSafeKey {
        let len = suite.algorithm().key_len();
        // The length matches the suite by construction (checked in `new`).
        LessSafeKey::new(UnboundKey::new(suite.algorithm(), &self.key[..len]).expect("key length"))
    }

    /// The IV with the sequence number XORed into its last 8 bytes (TLS 1.3, TLS 1.2
    /// ChaCha20, and the nonce a TLS 1.2 GCM sender uses).
    fn nonce(&self) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        // Best effort: the key does not outlive the connection in freed memory.
        self.key = [0; 32];
    }
}

fn unsupported(what: &'static str) -> TlsError {
    TlsError::Protocol(rustls::Error::General(what.into()))
}

/// Bytes of one direction in an exported state (key, IV, sequence number).
const DIRECTION: usize = 32 + 12 + 8;
/// Bytes of an exported state before its partial record.
const STATE: usize = 3 + 2 * DIRECTION;

/// The peer sent close_notify.
const PEER_CLOSED: u8 = 1 << 0;
/// An error ended it.
const FAILED: u8 = 1 << 1;

/// An established connection's record protection.
#[derive(Debug)]
pub struct Records {
    tx: Direction,
    rx: Direction,
    suite: Suite,
    tls13: bool,
    flags: u8,
    /// A record split across reads, until its end arrives (empty, unallocated, otherwise).
    held: Vec<u8>,
}

impl Records {
    /// The record layer for the keys rustls extracted at the end of a handshake of
    /// `version`; `held` is ciphertext rustls had not processed yet (a partial record).
    pub fn new(
        version: ProtocolVersion,
        secrets: ExtractedSecrets,
        held: Vec<u8>,
    ) -> Result<Self, TlsError> {
        let tls13 = match version {
            ProtocolVersion::TLSv1_3 => true,
            ProtocolVersion::TLSv1_2 => false,
            _ => return Err(unsupported("a protocol version other than TLS 1.2 or 1.3")),
        };
        let (suite, tx) = Direction::new(secrets.tx)?;
        let (rx_suite, rx) = Direction::new(secrets.rx)?;
        if suite != rx_suite {
            return Err(unsupported("different suites for each direction"));
        }
        Ok(Self {
            tx,
            rx,
            suite,
            tls13,
            flags: 0,
            held,
        })
    }

    /// A record layer that has failed (stands in while a connection's layer is replaced).
    pub(crate) fn placeholder() -> Self {
        let d = || Direction {
            key: [0; 32],
            iv: [0; 12],
            seq: 0,
        };
        Self {
            tx: d(),
            rx: d(),
            suite: Suite::Chacha20,
            tls13: true,
            flags: FAILED,
            held: Vec::new(),
        }
    }

    /// Its whole state, for handing the connection to another process (a live upgrade):
    /// suite, version, flags, each direction's key, IV and next sequence number, then a
    /// partial record. Key material: it travels only over the hand-over's socketpair.
    pub fn export(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(STATE + self.held.len());
        v.push(match self.suite {
            Suite::Aes128Gcm => 0,
            Suite::Aes256Gcm => 1,
            Suite::Chacha20 => 2,
        });
        v.push(u8::from(self.tls13));
        v.push(self.flags);
        for d in [&self.tx, &self.rx] {
            v.extend_from_slice(&d.key);
            v.extend_from_slice(&d.iv);
            v.extend_from_slice(&d.seq.to_be_bytes());
        }
        v.extend_from_slice(&self.held);
        v
    }

    /// The record layer [`Records::export`] wrote; an error for anything it cannot have
    /// written.
    pub fn import(b: &[u8]) -> Result<Self, TlsError> {
        if b.len() < STATE {
            return Err(unsupported("a truncated record state"));
        }
        let suite = match b[0] {
            0 => Suite::Aes128Gcm,
            1 => Suite::Aes256Gcm,
            2 => Suite::Chacha20,
            _ => return Err(unsupported("an unknown suite in a record state")),
        };
        let tls13 = match b[1] {
            0 => false,
            1 => true,
            _ => return Err(unsupported("an unknown version in a record state")),
        };
        let flags = b[2];
        if flags & !(PEER_CLOSED | FAILED) != 0 || b.len() - STATE > MAX_RECORD {
            return Err(unsupported("an impossible record state"));
        }
        let dir = |o: usize| {
            let mut d = Direction {
                key: [0; 32],
                iv: [0; 12],
                seq: 0,
            };
            d.key.copy_from_slice(&b[o..o + 32]);
            d.iv.copy_from_slice(&b[o + 32..o + 44]);
            d.seq = u64::from_be_bytes(b[o + 44..o + 52].try_into().unwrap_or_default());
            d
        };
        Ok(Self {
            tx: dir(3),
            rx: dir(3 + DIRECTION),
            suite,
            tls13,
            flags,
            held: b[STATE..].to_vec(),
        })
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.flags & PEER_CLOSED != 0
    }

    /// Whether an error ended it.
    pub fn failed(&self) -> bool {
        self.flags & FAILED != 0
    }

    /// Heap bytes held (a partial record).
    pub fn held_bytes(&self) -> usize {
        self.held.capacity()
    }

    /// Decrypt received records in place; each record's plaintext goes to `app` (mutable:
    /// the session unmasks in place). A record split across reads is kept until it is
    /// whole. Errors end the connection.
    pub fn input(
        &mut self,
        data: &mut [u8],
        app: &mut impl FnMut(&mut [u8]),
    ) -> Result<(), TlsError> {
        if self.failed() {
            return Err(TlsError::NotWritable);
        }
        let held = std::mem::take(&mut self.held);
        let r = feed_held(held, data, |buf| self.records(buf, app)).map(|mut h| {
            h.shrink_to_fit();
            self.held = h;
        });
        if r.is_err() {
            self.flags |= FAILED;
            self.held = Vec::new();
        }
        r
    }

    /// Open every whole record in `buf`; returns the bytes consumed.
    fn records(
        &mut self,
        buf: &mut [u8],
        app: &mut impl FnMut(&mut [u8]),
    ) -> Result<usize, TlsError> {
        let mut at = 0;
        while buf.len() - at >= HEADER {
            let h = &buf[at..at + HEADER];
            let (typ, len) = (h[0], usize::from(u16::from_be_bytes([h[3], h[4]])));
            if len > MAX_RECORD - HEADER {
                return Err(TlsError::Protocol(rustls::Error::PeerSentOversizedRecord));
            }
            if h[1] != 3 {
                return Err(TlsError::Protocol(rustls::Error::General(
                    "a record with a bad version".into(),
                )));
            }
            if buf.len() - at < HEADER + len {
                break; // partial: kept for the next read
            }
            let (head, rest) = buf[at..at + HEADER + len].split_at_mut(HEADER);
            let header = [head[0], head[1], head[2], head[3], head[4]];
            at += HEADER + len;
            if self.peer_closed() {
                continue; // nothing counts after close_notify
            }
            let (content, plain) = self.open(header, typ, rest)?;
            match content {
                APPLICATION_DATA if !plain.is_empty() => app(plain),
                APPLICATION_DATA => {}
                ALERT => self.alert(plain)?,
                HANDSHAKE => {
                    return Err(unsupported(if self.tls13 {
                        "a post-handshake message (KeyUpdate) on a connection that takes none: \
                         reconnect"
                    } else {
                        "TLS 1.2 renegotiation is not supported"
                    }))
                }
                CHANGE_CIPHER_SPEC if !self.tls13 => {
                    return Err(unsupported("a ChangeCipherSpec after the handshake"))
                }
                _ => {
                    return Err(TlsError::Protocol(rustls::Error::InvalidMessage(
                        rustls::InvalidMessage::InvalidContentType,
                    )))
                }
            }
        }
        Ok(at)
    }

    /// Decrypt one record's body in place: (inner content type, plaintext).
    fn open<'b>(
        &mut self,
        header: [u8; 5],
        typ: u8,
        body: &'b mut [u8],
    ) -> Result<(u8, &'b mut [u8]), TlsError> {
        let decrypt = || TlsError::Protocol(rustls::Error::DecryptError);
        if self.rx.seq >= self.suite.limit() {
            return Err(unsupported(
                "the peer's key is used up (no KeyUpdate support)",
            ));
        }
        let key = self.rx.aead(self.suite);
        let seq = self.rx.seq;
        let (content, plain) = if self.tls13 {
            if typ != APPLICATION_DATA {
                return Err(TlsError::Protocol(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType,
                )));
            }
            let nonce = Nonce::assume_unique_for_key(self.rx.nonce());
            let plain = key
                .open_in_place(nonce, Aad::from(header), body)
                .map_err(|_| decrypt())?;
            // Strip the zero padding; the last byte left is the real content type.
            let end = plain.iter().rposition(|&b| b != 0).ok_or_else(decrypt)?;
            let content = plain[end];
            (content, &mut plain[..end])
        } else {
            let gcm = self.suite != Suite::Chacha20;
            let skip = if gcm { EXPLICIT } else { 0 };
            if body.len() < skip + TAG {
                return Err(decrypt());
            }
            let nonce = if gcm {
                let mut n = [0u8; 12];
                n[..4].copy_from_slice(&self.rx.iv[..4]);
                n[4..].copy_from_slice(&body[..EXPLICIT]);
                n
            } else {
                self.rx.nonce()
            };
            let aad = tls12_aad(seq, typ, [header[1], header[2]], body.len() - skip - TAG);
            let plain = key
                .open_within(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    body,
                    skip..,
                )
                .map_err(|_| decrypt())?;
            (typ, plain)
        };
        self.rx.seq += 1;
        if plain.len() > MAX_PLAIN {
            return Err(TlsError::Protocol(rustls::Error::PeerSentOversizedRecord));
        }
        Ok((content, plain))
    }

    fn alert(&mut self, body: &[u8]) -> Result<(), TlsError> {
        match body {
            // close_notify (any level)
            [_, 0] => {
                self.flags |= PEER_CLOSED;
                Ok(())
            }
            // user_canceled is a warning that precedes close_notify
            [1, 90] => Ok(()),
            [_, desc] => Err(TlsError::Protocol(rustls::Error::AlertReceived(
                rustls::AlertDescription::from(*desc),
            ))),
            _ => Err(TlsError::Protocol(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooShort,
            ))),
        }
    }

    /// Encrypt `plain` as application data records appended to `out`.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.failed() {
            return Err(TlsError::NotWritable);
        }
        if plain.is_empty() {
            return Ok(());
        }
        let key = self.tx.aead(self.suite);
        for chunk in plain.chunks(MAX_PLAIN) {
            self.seal(&key, APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    /// Append close_notify (a warning alert) to `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        if self.failed() {
            return;
        }
        let key = self.tx.aead(self.suite);
        let _ = self.seal(&key, ALERT, &[1, 0], out);
    }

    fn seal(
        &mut self,
        key: &LessSafeKey,
        content: u8,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        if self.tx.seq >= self.suite.limit() {
            self.flags |= FAILED;
            return Err(TlsError::NotWritable);
        }
        let start = out.len();
        let seq = self.tx.seq;
        let nonce = self.tx.nonce();
        if self.tls13 {
            let len = chunk.len() + 1 + TAG;
            let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
            out.extend_from_slice(&header);
            out.extend_from_slice(chunk);
            out.push(content);
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(header),
                    &mut out[start + HEADER..],
                )
                .map_err(|_| TlsError::NotWritable)?;
            out.extend_from_slice(tag.as_ref());
        } else {
            let gcm = self.suite != Suite::Chacha20;
            let explicit = if gcm { EXPLICIT } else { 0 };
            let len = explicit + chunk.len() + TAG;
            out.extend_from_slice(&[content, 3, 3, (len >> 8) as u8, len as u8]);
            if gcm {
                out.extend_from_slice(&nonce[4..]);
            }
            out.extend_from_slice(chunk);
            let aad = tls12_aad(seq, content, [3, 3], chunk.len());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut out[start + HEADER + explicit..],
                )
                .map_err(|_| TlsError::NotWritable)?;
            out.extend_from_slice(tag.as_ref());
        }
        self.tx.seq += 1;
        Ok(())
    }
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, typ: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = typ;
    a[9..11].copy_from_slice(&version);
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}
