//! In-place (un)masking (RFC 6455 §5.3).
//!
//! XOR is its own inverse, so one function masks and unmasks. The bulk runs 32 bytes at a
//! time as four u64 lanes (which the compiler turns into SIMD loads where the target has
//! them), then 8 bytes, then single bytes; `phase` lets a frame be unmasked in pieces as it
//! arrives across reads.

/// XOR `buf` with `key`, where `buf[0]` is byte number `phase` of the payload (so the key
/// starts rotated by `phase % 4`). Returns the phase after `buf`.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let phase = phase & 3;
    let rotated = u32::from_ne_bytes(key).rotate_right(8 * phase as u32);
    // On little-endian, rotate_right by 8 moves byte 1 into byte 0: the key as seen from
    // `phase`. On big-endian the byte order inside the word is reversed, so rotate left.
    let word = if cfg!(target_endian = "little") {
        rotated
    } else {
        u32::from_ne_bytes(key).rotate_left(8 * phase as u32)
    };
    let wide = (u64::from(word) << 32) | u64::from(word);

    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for lane in chunk.chunks_exact_mut(8) {
            let v = u64::from_ne_bytes([
                lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7],
            ]) ^ wide;
            lane.copy_from_slice(&v.to_ne_bytes());
        }
    }
    let rest = chunks.into_remainder();
    let mut eights = rest.chunks_exact_mut(8);
    for lane in &mut eights {
        let v = u64::from_ne_bytes([
            lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7],
        ]) ^ wide;
        lane.copy_from_slice(&v.to_ne_bytes());
    }
    let tail = eights.into_remainder();
    let k = word.to_ne_bytes();
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
    (phase + buf.len()) & 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], phase: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(phase + i) % 4];
        }
    }

    #[test]
    fn matches_bytewise_definition_for_every_length_and_phase() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..200 {
            for phase in 0..4 {
                let orig: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = orig.clone();
                let mut slow = orig.clone();
                assert_eq!(apply_mask(&mut fast, key, phase), (phase + len) % 4);
                naive(&mut slow, key, phase);
                assert_eq!(fast, slow, "len {len} phase {phase}");
            }
        }
    }

    #[test]
    fn split_unmasking_equals_whole() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let orig: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        for cut in [1, 3, 5, 31, 33, 999] {
            let mut parts = orig.clone();
            let (a, b) = parts.split_at_mut(cut);
            let p = apply_mask(a, key, 0);
            apply_mask(b, key, p);
            assert_eq!(parts, whole, "cut {cut}");
        }
    }
}
