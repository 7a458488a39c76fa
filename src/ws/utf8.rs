//! Incremental UTF-8 validation that fails on the first impossible byte.
//!
//! Text messages arrive in pieces (fragments, and reads that end mid-frame), so a code point
//! may be split anywhere. The validator keeps one byte of state: which bytes may come next.
//! ASCII and whole sequences go through `core::str::from_utf8` (vectorised in std); only the
//! bytes around a split go through the byte-at-a-time automaton.

/// One byte of state: 0 = between code points; otherwise what the next byte must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator(u8);

// States. The continuation-count states accept 0x80..=0xBF; the others narrow the first
// continuation byte to exclude overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4).
const ACCEPT: u8 = 0;
const CONT1: u8 = 1;
const CONT2: u8 = 2;
const CONT3: u8 = 3;
const AFTER_E0: u8 = 4; // A0..=BF, then 1
const AFTER_ED: u8 = 5; // 80..=9F, then 1
const AFTER_F0: u8 = 6; // 90..=BF, then 2
const AFTER_F4: u8 = 7; // 80..=8F, then 2
const REJECT: u8 = 8;

#[inline]
fn step(state: u8, b: u8) -> u8 {
    match state {
        ACCEPT => match b {
            0x00..=0x7F => ACCEPT,
            0xC2..=0xDF => CONT1,
            0xE0 => AFTER_E0,
            0xE1..=0xEC | 0xEE..=0xEF => CONT2,
            0xED => AFTER_ED,
            0xF0 => AFTER_F0,
            0xF1..=0xF3 => CONT3,
            0xF4 => AFTER_F4,
            _ => REJECT,
        },
        CONT1 | CONT2 | CONT3 if (0x80..=0xBF).contains(&b) => state - 1,
        AFTER_E0 if (0xA0..=0xBF).contains(&b) => CONT1,
        AFTER_ED if (0x80..=0x9F).contains(&b) => CONT1,
        AFTER_F0 if (0x90..=0xBF).contains(&b) => CONT2,
        AFTER_F4 if (0x80..=0x8F).contains(&b) => CONT2,
        _ => REJECT,
    }
}

/// The input can never become valid UTF-8, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator between code points.
    pub const fn new() -> Self {
        Self(ACCEPT)
    }

    /// Its state as one byte (for handing a connection to another process).
    pub const fn export(self) -> u8 {
        self.0
    }

    /// A validator in state `b` ([`Utf8Validator::export`]); None for no such state.
    pub const fn import(b: u8) -> Option<Self> {
        if b <= REJECT {
            Some(Self(b))
        } else {
            None
        }
    }

    /// Feed the next piece of the text. Errors as soon as a byte makes the text impossible.
    #[inline]
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        // Finish a code point split by the previous piece.
        while self.0 != ACCEPT {
            let Some((&b, rest)) = bytes.split_first() else {
                return Ok(());
            };
            self.0 = step(self.0, b);
            if self.0 == REJECT {
                return Err(InvalidUtf8);
            }
            bytes = rest;
        }
        // Most text is ASCII; this check is cheaper than from_utf8's setup on short pieces.
        if bytes.is_ascii() {
            return Ok(());
        }
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // A valid prefix of a code point ends the piece: remember what must follow.
                for &b in &bytes[e.valid_up_to()..] {
                    self.0 = step(self.0, b);
                }
                debug_assert!(self.0 != ACCEPT && self.0 != REJECT);
                Ok(())
            }
        }
    }

    /// True when the text so far ends on a code point boundary (a message may end here).
    pub const fn is_complete(self) -> bool {
        self.0 == ACCEPT
    }

    /// Forget any partial code point (a new message starts).
    pub fn reset(&mut self) {
        self.0 = ACCEPT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_whole(bytes: &[u8]) -> bool {
        let mut v = Utf8Validator::new();
        v.feed(bytes).is_ok() && v.is_complete()
    }

    #[test]
    fn agrees_with_std_on_edge_sequences() {
        let cases: &[&[u8]] = &[
            b"",
            b"hello",
            "κόσμε".as_bytes(),
            &[0xC0, 0x80],             // overlong NUL
            &[0xC1, 0xBF],             // overlong
            &[0xE0, 0x80, 0x80],       // overlong 3-byte
            &[0xE0, 0xA0, 0x80],       // U+0800
            &[0xED, 0xA0, 0x80],       // surrogate
            &[0xED, 0x9F, 0xBF],       // U+D7FF
            &[0xF0, 0x8F, 0xBF, 0xBF], // overlong 4-byte
            &[0xF0, 0x90, 0x80, 0x80], // U+10000
            &[0xF4, 0x8F, 0xBF, 0xBF], // U+10FFFF
            &[0xF4, 0x90, 0x80, 0x80], // > U+10FFFF
            &[0xF5, 0x80, 0x80, 0x80],
            &[0xFF],
            &[0x80],
            &[0xCE],
        ];
        for c in cases {
            assert_eq!(valid_whole(c), std::str::from_utf8(c).is_ok(), "{c:02x?}");
        }
    }

    #[test]
    fn every_split_of_valid_text_is_accepted() {
        let text = "aκόσμε𝄞€\u{10FFFF}z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let mut v = Utf8Validator::new();
                v.feed(&text[..i]).unwrap();
                v.feed(&text[i..j]).unwrap();
                v.feed(&text[j..]).unwrap();
                assert!(v.is_complete());
            }
        }
    }

    #[test]
    fn fails_fast_on_the_first_impossible_byte_across_pieces() {
        let mut v = Utf8Validator::new();
        v.feed(&[b'a', 0xF4]).unwrap(); // could still become U+10xxxx
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8)); // would exceed U+10FFFF
        let mut v = Utf8Validator::new();
        v.feed(&[0xED]).unwrap();
        assert_eq!(v.feed(&[0xA0]), Err(InvalidUtf8)); // surrogate half
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'o', b'k', 0xC0]), Err(InvalidUtf8)); // C0 never valid
    }

    #[test]
    fn truncated_text_is_incomplete() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xE2, 0x82]).unwrap();
        assert!(!v.is_complete());
        v.feed(&[0xAC]).unwrap();
        assert!(v.is_complete());
    }
}
