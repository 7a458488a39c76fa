//! The two base64 operations the handshake needs: decode a 16-byte key, encode a 20-byte
//! digest. Standard alphabet, padded (RFC 4648 §4).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decode `s` if it is the padded base64 form of exactly 16 bytes (24 characters ending in
/// `==`).
pub(crate) fn decode_16(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 24 || &s[22..] != b"==" {
        return None;
    }
    let mut out = [0u8; 16];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for &c in &s[..22] {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out[n] = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // 22 characters carry 132 bits: 128 of data and 4 that must be zero in canonical form.
    (n == 16 && acc == 0).then_some(out)
}

/// Encode 20 bytes (a SHA-1 digest) as 28 base64 characters.
pub(crate) fn encode_20(d: &[u8; 20]) -> [u8; 28] {
    let mut out = [b'='; 28];
    let mut o = 0;
    for chunk in d.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let emit = chunk.len() + 1;
        for i in 0..emit {
            out[o + i] = ALPHABET[((v >> (18 - 6 * i)) & 63) as usize];
        }
        o += 4;
    }
    out
}

/// Decode padded base64 of any length (None: not canonical base64).
pub fn decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut v: u32 = 0;
        for &c in &chunk[..4 - pad] {
            v = (v << 6) | value(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Encode any bytes (padded): binary payloads carried in text (event streams).
pub fn encode(d: &[u8]) -> String {
    let mut out = String::with_capacity(d.len().div_ceil(3) * 4);
    for chunk in d.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rfc_sample_key() {
        let k = decode_16(b"dGhlIHNhbXBsZSBub25jZQ==").unwrap();
        assert_eq!(&k, b"the sample nonce");
    }

    #[test]
    fn rejects_wrong_lengths_alphabet_and_stray_bits() {
        assert!(decode_16(b"dGhlIHNhbXBsZSBub25jZQ").is_none());
        assert!(decode_16(b"dGhlIHNhbXBsZSBub25jZQ=").is_none());
        assert!(decode_16(b"dGhlIHNhbXBsZSBub25j*Q==").is_none());
        assert!(decode_16(b"AAAAAAAAAAAAAAAAAAAAAA==").is_some());
        assert!(decode_16(b"AAAAAAAAAAAAAAAAAAAAAB==").is_none()); // non-zero pad bits
        assert!(decode_16(b"dGhlIHNhbXBsZSBub25jZSE=").is_none()); // 17 bytes
    }

    #[test]
    fn encodes_any_length() {
        for (d, e) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
        ] {
            assert_eq!(encode(d), e);
        }
    }

    #[test]
    fn encodes_a_digest() {
        let d: [u8; 20] = *b"abcdefghijklmnopqrst";
        assert_eq!(&encode_20(&d), b"YWJjZGVmZ2hpamtsbW5vcHFyc3Q=");
    }
}
