//! What arrives on the hand-over socket (the other process, or whatever holds the socket):
//! any bytes must decode or be refused without a panic and without allocating more than
//! they hold; a frame that decodes encodes back to the same bytes; and a session state
//! that decodes is either refused by `Session::import` or imported without a panic.
#![no_main]

use holdfast::handover::format::{decode, encode, Msg, HEADER, MAGIC, VERSION};
use holdfast::session::Session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Most inputs get a valid header, so the payload decoders are what is explored.
    let mut frame = Vec::with_capacity(HEADER + data.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&VERSION.to_be_bytes());
    frame.push(data.first().map_or(5, |k| k % 12));
    let payload = data.get(1..).unwrap_or_default();
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    for bytes in [data, frame.as_slice()] {
        if let Ok(m) = decode(bytes) {
            assert_eq!(encode(&m), bytes, "a decoded frame encodes back the same");
            if let Msg::Batch { conns, .. } = m {
                for c in conns {
                    let _ = Session::import(c.session, 7);
                }
            }
        }
    }
});
