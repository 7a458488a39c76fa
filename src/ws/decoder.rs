//! The incremental frame decoder: bytes in, events out, no copies, no allocation.
//!
//! # Contract
//! Call [`Decoder::decode`] with everything received and not yet consumed. It returns a
//! [`Step`]: how many bytes it consumed and at most one [`Event`] whose ranges point into the
//! buffer you passed (payloads are unmasked in place). Keep `buf[consumed..]` and call again,
//! appending new bytes when a step consumes nothing and carries no event.
//!
//! Data payloads are handed out in pieces as they arrive, so a large frame never needs to be
//! buffered by the decoder; only a split frame header (≤ 14 bytes) or a split control frame
//! (≤ 139 bytes) must be kept by the caller until the rest arrives. Whether to assemble a
//! message from pieces, and where, is the caller's choice: when a whole message arrives in
//! one read, its single piece has `first && last` set and can be used in place.
//!
//! # Rules enforced
//! RSV bits, reserved opcodes, control frames ≤ 125 bytes and unfragmented, masking by role,
//! minimal length encoding, fragmentation order, message size (from the header, before any
//! payload is read), UTF-8 of text messages (incrementally, across pieces and fragments,
//! failing on the first impossible byte) and Close payloads (length, code, UTF-8 reason).
//! Once a Close arrives, the decoder reads nothing more.

use core::ops::Range;

use super::close::{CloseCode, CloseState};
use super::error::Error;
use super::frame::{OpCode, Role};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Whether a data message is text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// UTF-8 text, validated by the decoder.
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// Something the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece of a data message's payload, unmasked, at `buf[range]` (possibly empty).
    /// `first` marks the message's first piece and `last` its final one.
    Data {
        /// Text or binary.
        kind: DataKind,
        /// Where the piece is in the buffer passed to `decode`.
        range: Range<usize>,
        /// First piece of the message.
        first: bool,
        /// Last piece of the message: the message is complete (and, if text, valid UTF-8).
        last: bool,
    },
    /// A Ping; answer with a Pong carrying `buf[range]`.
    Ping(Range<usize>),
    /// A Pong carrying `buf[range]`.
    Pong(Range<usize>),
    /// A Close. `code` is None for an empty payload. `reply` says what to send back: the code
    /// to echo (`Some(code)`), or `None` when our own Close was sent first and the closing
    /// handshake is now complete.
    Close {
        /// The peer's status code.
        code: Option<CloseCode>,
        /// The peer's reason (valid UTF-8) at `buf[reason]`.
        reason: Range<usize>,
        /// The Close frame to send back, if one is due.
        reply: Option<Option<CloseCode>>,
    },
}

/// The outcome of one [`Decoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input used up; keep the rest.
    pub consumed: usize,
    /// The event, or None when more input is needed.
    pub event: Option<Event>,
}

const IN_FRAME: u8 = 1 << 0; // payload bytes of a data frame are pending
const FRAME_FIN: u8 = 1 << 1; // the current data frame ends its message
const MSG_ACTIVE: u8 = 1 << 2; // a data message has begun and not ended
const MSG_TEXT: u8 = 1 << 3; // the current message is text
const MSG_EMITTED: u8 = 1 << 4; // a piece of the current message was handed out
const MASKED: u8 = 1 << 5; // the current frame is masked
const CLIENT: u8 = 1 << 6; // role: client (expects unmasked frames)

/// Per-connection decoder state: 16 bytes.
#[derive(Debug, Clone)]
pub struct Decoder {
    remaining: u32,
    message_len: u32,
    mask: [u8; 4],
    phase: u8,
    flags: u8,
    utf8: Utf8Validator,
    close: CloseState,
}

const _: () = assert!(core::mem::size_of::<Decoder>() <= 16);

impl Decoder {
    /// A decoder for frames received by `role`.
    pub const fn new(role: Role) -> Self {
        Self {
            remaining: 0,
            message_len: 0,
            mask: [0; 4],
            phase: 0,
            flags: match role {
                Role::Server => 0,
                Role::Client => CLIENT,
            },
            utf8: Utf8Validator::new(),
            close: CloseState::Open,
        }
    }

    /// Its whole state in 16 bytes, for handing the connection to another process.
    pub fn export(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.remaining.to_be_bytes());
        b[4..8].copy_from_slice(&self.message_len.to_be_bytes());
        b[8..12].copy_from_slice(&self.mask);
        b[12] = self.phase;
        b[13] = self.flags;
        b[14] = self.utf8.export();
        b[15] = self.close as u8;
        b
    }

    /// A decoder in the state [`Decoder::export`] gave; None when a field is impossible.
    pub fn import(b: [u8; 16]) -> Option<Self> {
        let close = match b[15] {
            0 => CloseState::Open,
            1 => CloseState::Sent,
            2 => CloseState::Received,
            3 => CloseState::Closed,
            _ => return None,
        };
        if b[12] > 3 || b[13] > (CLIENT << 1) - 1 {
            return None;
        }
        Some(Self {
            remaining: u32::from_be_bytes(b[0..4].try_into().ok()?),
            message_len: u32::from_be_bytes(b[4..8].try_into().ok()?),
            mask: b[8..12].try_into().ok()?,
            phase: b[12],
            flags: b[13],
            utf8: Utf8Validator::import(b[14])?,
            close,
        })
    }

    /// The closing-handshake state; call `close_state_mut().on_send()` when sending a Close.
    pub const fn close_state(&self) -> CloseState {
        self.close
    }

    /// Mutable access to the closing-handshake state.
    pub fn close_state_mut(&mut self) -> &mut CloseState {
        &mut self.close
    }

    /// True while a frame or a fragmented message is partly received.
    pub const fn mid_message(&self) -> bool {
        self.flags & (IN_FRAME | MSG_ACTIVE) != 0
    }

    /// Decode the next event from `buf`. `max_message` bounds a whole message (all its
    /// fragments) in bytes; a message that would exceed it fails with
    /// [`Error::MessageTooBig`] as soon as the offending frame header is read.
    pub fn decode(&mut self, buf: &mut [u8], max_message: u32) -> Result<Step, Error> {
        if self.close.peer_closed() {
            return Ok(Step {
                consumed: buf.len(),
                event: None,
            });
        }
        if self.flags & IN_FRAME != 0 {
            return self.payload(buf, 0);
        }
        if buf.len() < 2 {
            return Ok(NEED_MORE);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(Error::ReservedBitsSet);
        }
        let opcode = OpCode::from_u4(b0 & 0x0F).ok_or(Error::ReservedOpcode)?;
        let masked = b1 & 0x80 != 0;
        match (masked, self.flags & CLIENT != 0) {
            (false, false) => return Err(Error::UnmaskedClientFrame),
            (true, true) => return Err(Error::MaskedServerFrame),
            _ => {}
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(Error::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(Error::ControlFrameTooLong);
            }
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let head = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < head {
            return Ok(NEED_MORE);
        }
        let len: u64 = match ext {
            0 => u64::from(len7),
            2 => {
                let l = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
                if l < 126 {
                    return Err(Error::NonMinimalLength);
                }
                l
            }
            _ => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let l = u64::from_be_bytes(b);
                if l <= 0xFFFF || l >> 63 != 0 {
                    return Err(Error::NonMinimalLength);
                }
                l
            }
        };
        let mut key = [0u8; 4];
        if masked {
            key.copy_from_slice(&buf[head - 4..head]);
        }

        if opcode.is_control() {
            let end = head + len as usize;
            if buf.len() < end {
                return Ok(NEED_MORE);
            }
            let payload = &mut buf[head..end];
            if masked {
                apply_mask(payload, key, 0);
            }
            let event = match opcode {
                OpCode::Ping => Event::Ping(head..end),
                OpCode::Pong => Event::Pong(head..end),
                _ => self.close_frame(payload, head)?,
            };
            return Ok(Step {
                consumed: end,
                event: Some(event),
            });
        }

        let active = self.flags & MSG_ACTIVE != 0;
        match opcode {
            OpCode::Continuation if !active => return Err(Error::UnexpectedContinuation),
            OpCode::Text | OpCode::Binary if active => return Err(Error::ExpectedContinuation),
            _ => {}
        }
        let so_far = if active {
            u64::from(self.message_len)
        } else {
            0
        };
        let total = so_far + len;
        if total > u64::from(max_message) {
            return Err(Error::MessageTooBig);
        }
        // `total` fits in u32 because max_message does.
        self.message_len = total as u32;
        self.remaining = len as u32;
        self.mask = key;
        self.phase = 0;
        let mut flags = self.flags & (CLIENT | MSG_ACTIVE | MSG_TEXT | MSG_EMITTED);
        if !active {
            flags = (flags & CLIENT) | MSG_ACTIVE;
            if opcode == OpCode::Text {
                flags |= MSG_TEXT;
                self.utf8.reset();
            }
        }
        flags |= IN_FRAME;
        if fin {
            flags |= FRAME_FIN;
        }
        if masked {
            flags |= MASKED;
        }
        self.flags = flags;
        self.payload(buf, head)
    }

    /// Hand out the payload of the current data frame that `buf[at..]` holds.
    #[inline]
    fn payload(&mut self, buf: &mut [u8], at: usize) -> Result<Step, Error> {
        let avail = buf.len() - at;
        let n = (self.remaining as usize).min(avail);
        if n == 0 && self.remaining != 0 {
            return Ok(Step {
                consumed: at,
                event: None,
            });
        }
        let piece = &mut buf[at..at + n];
        if self.flags & MASKED != 0 {
            self.phase = apply_mask(piece, self.mask, usize::from(self.phase)) as u8;
        }
        let text = self.flags & MSG_TEXT != 0;
        if text && self.utf8.feed(piece).is_err() {
            return Err(Error::InvalidUtf8);
        }
        self.remaining -= n as u32;
        let frame_done = self.remaining == 0;
        let last = frame_done && self.flags & FRAME_FIN != 0;
        if last && text && !self.utf8.is_complete() {
            return Err(Error::InvalidUtf8);
        }
        let first = self.flags & MSG_EMITTED == 0;
        if last {
            self.flags &= CLIENT;
            self.message_len = 0;
        } else {
            self.flags |= MSG_EMITTED;
            if frame_done {
                self.flags &= !(IN_FRAME | FRAME_FIN | MASKED);
            }
        }
        let kind = if text {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        Ok(Step {
            consumed: at + n,
            event: Some(Event::Data {
                kind,
                range: at..at + n,
                first,
                last,
            }),
        })
    }

    fn close_frame(&mut self, payload: &[u8], at: usize) -> Result<Event, Error> {
        let (code, reason) = match payload.len() {
            0 => (None, at..at),
            1 => return Err(Error::CloseFrameOneByte),
            n => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_valid_on_wire() {
                    return Err(Error::InvalidCloseCode);
                }
                if core::str::from_utf8(&payload[2..]).is_err() {
                    return Err(Error::InvalidUtf8);
                }
                (Some(code), at + 2..at + n)
            }
        };
        let reply = self.close.on_receive(code);
        Ok(Event::Close {
            code,
            reason,
            reply,
        })
    }
}

const NEED_MORE: Step = Step {
    consumed: 0,
    event: None,
};
