//! The compact TLS record layer (`holdfast::tls::Records`) reads bytes any client sends once
//! its handshake is over. Arbitrary input, split anywhere, must never panic and never hold
//! more than one record; and records one side seals must open on the other, byte for byte,
//! however the reads split them — in every version and suite.
#![no_main]

use holdfast::tls::Records;
use libfuzzer_sys::fuzz_target;
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

fn secrets(suite: u8, key: u8, iv: u8) -> ConnectionTrafficSecrets {
    let (k, i) = (AeadKey::from([key; 32]), Iv::new([iv; 12]));
    match suite % 3 {
        0 => ConnectionTrafficSecrets::Aes128Gcm { key: k, iv: i },
        1 => ConnectionTrafficSecrets::Aes256Gcm { key: k, iv: i },
        _ => ConnectionTrafficSecrets::Chacha20Poly1305 { key: k, iv: i },
    }
}

/// Two ends of one connection: a's tx is b's rx and the other way round.
fn pair(sel: u8) -> (Records, Records) {
    let version = if sel & 1 == 0 {
        ProtocolVersion::TLSv1_3
    } else {
        ProtocolVersion::TLSv1_2
    };
    let suite = sel >> 1;
    let end = |tx: (u8, u8), rx: (u8, u8)| {
        Records::new(
            version,
            ExtractedSecrets {
                tx: (0, secrets(suite, tx.0, tx.1)),
                rx: (0, secrets(suite, rx.0, rx.1)),
            },
            Vec::new(),
        )
        .expect("valid keys")
    };
    (end((1, 2), (3, 4)), end((3, 4), (1, 2)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Some((&split, rest)) = rest.split_first() else { return };
    let step = usize::from(split).max(1);
    let (mut a, mut b) = pair(sel);

    // Arbitrary bytes: errors are fine, panics and unbounded holding are not.
    for piece in rest.chunks(step) {
        if b.input(&mut piece.to_vec(), &mut |_| {}).is_err() {
            break;
        }
        assert!(b.held_bytes() <= 5 + (1 << 14) + 2048 + 4096);
    }

    // Sealed by one end, opened by the other, in pieces.
    let (mut a2, mut b2) = pair(sel);
    let _ = (&mut a, &mut b);
    let mut wire = Vec::new();
    a2.encrypt(rest, &mut wire).expect("seal");
    let mut got = Vec::new();
    for piece in wire.chunks(step) {
        b2.input(&mut piece.to_vec(), &mut |p| got.extend_from_slice(p))
            .expect("open what the other end sealed");
    }
    assert_eq!(got, rest);
    // A record replayed after it was opened no longer verifies.
    if !wire.is_empty() {
        assert!(b2.input(&mut wire.clone(), &mut |_| {}).is_err());
    }
});
