//! The request-head scanner fed in random pieces must find the same head (or the same limit
//! error) as when fed everything at once; validation and response building must never panic.
#![no_main]

use holdfast::ws::handshake::{
    parse_plain, parse_request, write_accept, write_error, HeadScanner, Limits, MAX_BODY,
};
use libfuzzer_sys::fuzz_target;

fn scan(buf: &[u8], cuts: &[u8], limits: &Limits) -> Result<Option<usize>, holdfast::ws::Error> {
    let mut sc = HeadScanner::new();
    let mut got = 0;
    let mut i = 0;
    loop {
        let step = cuts.get(i % cuts.len().max(1)).map_or(buf.len(), |&c| usize::from(c).max(1));
        i += 1;
        got = (got + step).min(buf.len());
        match sc.scan(&buf[..got], limits)? {
            Some(n) => return Ok(Some(n)),
            None if got == buf.len() => return Ok(None),
            None => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [lim, ncuts, rest @ ..] = data else { return };
    let ncuts = usize::from(*ncuts % 16).min(rest.len());
    let (cuts, buf) = rest.split_at(ncuts);
    let limits = if lim & 1 == 0 {
        Limits::default()
    } else {
        Limits { max_head_bytes: 256, max_headers: 4, max_line: 64 }
    };
    let whole = scan(buf, &[], &limits);
    let pieces = scan(buf, cuts, &limits);
    assert_eq!(whole, pieces);
    let mut out = Vec::new();
    if let Ok(Some(n)) = whole {
        assert!(n <= limits.max_head_bytes);
        match parse_request(&buf[..n]) {
            Ok(req) => {
                let _ = req.offered_protocols().count();
                let _ = req.auth_token("access_token");
                write_accept(&mut out, &req.accept_key(), req.choose_protocol(&["chat"]));
            }
            Err(e) => write_error(&mut out, e),
        }
        // The plain-HTTP reading of the same head: a body only on POST, never a length
        // past the bound, and an upgrade's checks never weaker.
        if let Ok(req) = parse_plain(&buf[..n]) {
            assert!(req.body_len <= MAX_BODY);
            assert!(req.body_len == 0 || req.method == "POST");
            if let Ok(up) = parse_request(&buf[..n]) {
                assert_eq!((up.method, up.body_len), ("GET", 0));
            }
        }
    }
});
