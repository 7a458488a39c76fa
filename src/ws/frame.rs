//! Frame headers (RFC 6455 §5.2) and the encoder for both roles.
//!
//! The encoder writes into a caller-owned `Vec<u8>` (reused across frames, so no allocation
//! in the steady state): server frames unmasked, client frames masked with a key the caller
//! supplies (the core has no randomness source; the load generator brings its own).

use super::close::CloseCode;
use super::mask::apply_mask;

/// Frame opcode (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation = 0x0,
    /// 0x1: text (UTF-8).
    Text = 0x1,
    /// 0x2: binary.
    Binary = 0x2,
    /// 0x8: connection close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for a 4-bit value, or None for the reserved ones (0x3–0x7, 0xB–0xF).
    pub const fn from_u4(v: u8) -> Option<Self> {
        match v {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// Close, Ping and Pong are control frames.
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Which end of the connection this codec is: decides which frames must be masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames, sends unmasked ones.
    Server,
    /// Receives unmasked frames, sends masked ones.
    Client,
}

/// The largest frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// The largest control-frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Write a frame header into `out`; returns its length. `mask` is set for client frames.
#[inline]
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    out[0] = (u8::from(fin) << 7) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if payload_len <= u64::from(u16::MAX) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(key) = mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// Append one whole frame (header and payload, masked when `mask` is set) to `out`.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut head, fin, opcode, mask, payload.len() as u64);
    out.reserve(n + payload.len());
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Append a Close frame. `None` sends an empty payload (no status code); the reason is cut to
/// fit the 125-byte control-frame limit at a UTF-8 boundary.
pub fn encode_close(
    out: &mut Vec<u8>,
    code: Option<CloseCode>,
    reason: &str,
    mask: Option<[u8; 4]>,
) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let len = match code {
        None => 0,
        Some(c) => {
            payload[..2].copy_from_slice(&c.0.to_be_bytes());
            let mut r = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
            while !reason.is_char_boundary(r) {
                r -= 1;
            }
            payload[2..2 + r].copy_from_slice(&reason.as_bytes()[..r]);
            2 + r
        }
    };
    encode_frame(out, true, OpCode::Close, mask, &payload[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_use_minimal_encoding() {
        let mut h = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(&mut h, true, OpCode::Text, None, 125), 2);
        assert_eq!(h[..2], [0x81, 125]);
        assert_eq!(encode_header(&mut h, true, OpCode::Binary, None, 126), 4);
        assert_eq!(h[..4], [0x82, 126, 0, 126]);
        assert_eq!(encode_header(&mut h, false, OpCode::Binary, None, 65535), 4);
        assert_eq!(h[..4], [0x02, 126, 0xff, 0xff]);
        assert_eq!(encode_header(&mut h, true, OpCode::Binary, None, 65536), 10);
        assert_eq!(h[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        let n = encode_header(&mut h, true, OpCode::Ping, Some([1, 2, 3, 4]), 5);
        assert_eq!(h[..n], [0x89, 0x85, 1, 2, 3, 4]);
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let mut out = Vec::new();
        let reason = "é".repeat(100); // 200 bytes
        encode_close(&mut out, Some(CloseCode::NORMAL), &reason, None);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for v in 0..16u8 {
            let known = matches!(v, 0 | 1 | 2 | 8 | 9 | 10);
            assert_eq!(OpCode::from_u4(v).is_some(), known, "{v:#x}");
        }
    }
}
