//! What a broker (or whatever answers on its port) sends the backplane: any bytes, split
//! anywhere, must decode or be refused without a panic, without allocating past the limits,
//! and the same whether they arrive whole, in two pieces, or in many through the
//! connection's resumable [`Decoder`] (the used bytes dropped after every read). A value that
//! decodes encodes back (as a command of its strings) without a panic.
#![no_main]

use holdfast::backplane::resp::{decode, encode, Decoder, Limits, Value};
use libfuzzer_sys::fuzz_target;

fn strings(v: &Value, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::Bulk(Some(b)) => out.push(b.clone()),
        Value::Simple(s) | Value::Error(s) => out.push(s.as_bytes().to_vec()),
        Value::Int(i) => out.push(i.to_string().into_bytes()),
        Value::Array(Some(items)) => items.iter().for_each(|i| strings(i, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        bulk: 1 << 16,
        elements: 1 << 10,
        depth: 8,
    };
    let whole = decode(data, &limits);
    // The same bytes read in pieces whose sizes the input's own bytes choose.
    let (mut d, mut buf, mut at, mut first) = (Decoder::default(), Vec::new(), 0, None);
    let mut failed = false;
    while at < data.len() && first.is_none() && !failed {
        let n = (usize::from(data[at]) % 17 + 1).min(data.len() - at);
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        match d.next(&buf, &limits) {
            Ok((v, used)) => {
                assert!(used <= buf.len());
                buf.drain(..used);
                first = v;
            }
            Err(_) => failed = true,
        }
    }
    match &whole {
        Ok(Some((v, _))) => assert_eq!(first.as_ref(), Some(v), "pieces and whole differ"),
        Ok(None) => assert!(first.is_none() && !failed, "pieces and whole differ"),
        Err(_) => assert!(first.is_none() && failed, "pieces and whole differ"),
    }
    if let Ok(Some((v, used))) = &whole {
        assert!(*used <= data.len());
        // The same value from a prefix cut anywhere: incomplete (None) or the same.
        for cut in [used / 2, used.saturating_sub(1)] {
            match decode(&data[..cut], &limits) {
                Ok(None) | Err(_) => {}
                Ok(Some((w, n))) => assert!(n <= cut && (n < *used || &w == v)),
            }
        }
        let mut parts = Vec::new();
        strings(v, &mut parts);
        let mut out = Vec::new();
        encode(&mut out, &parts);
        let (again, n) = decode(
            &out,
            &Limits {
                bulk: usize::MAX,
                elements: usize::MAX,
                depth: 8,
            },
        )
        .expect("our own encoding decodes")
        .expect("and is complete");
        assert_eq!(n, out.len());
        assert!(matches!(again, Value::Array(Some(ref a)) if a.len() == parts.len()));
    }
});
