//! A presence event as another node — or anyone who can publish into the broker — sends it
//! (`p <frame>` on a topic's member channel): any bytes must be dropped or rebuilt without
//! a panic, and what is rebuilt is one whole unmasked text frame within the bound, with no
//! raw line break (an event stream writes its payload as `data:` lines), that the same check
//! takes again unchanged.
#![no_main]

use holdfast::backplane::presence::event_from_broker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let topic = if sel & 1 == 0 { "presence:room" } else { "p" };
    let max = 64 + usize::from(sel) * 64;
    if let Some(out) = event_from_broker(topic, frame, max) {
        assert_eq!(out[0], 0x81, "a final text frame");
        assert_eq!(out[1] & 0x80, 0, "unmasked");
        // (The header's length bytes may be 10 or 13: only the payload is checked.)
        let header = match out[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        assert!(
            !out[header..].iter().any(|&b| b == b'\r' || b == b'\n'),
            "no raw line break"
        );
        let again = event_from_broker(topic, &out, usize::MAX).expect("its own output passes");
        assert_eq!(&again[..], &out[..]);
    }
});
