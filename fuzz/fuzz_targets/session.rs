//! The server session fed a client's bytes in random chunks must answer exactly as when fed
//! everything at once: the same bytes out, the same FIN, the same end. It must never panic
//! or loop. The session is sans-IO, so this needs no socket (the pair harness).
#![no_main]

use holdfast::session::pair::{test_config, upgrade_request, Pair};
use libfuzzer_sys::fuzz_target;

fn run(wire: &[u8], cuts: &[usize], small: bool) -> (Vec<u8>, bool, bool) {
    let mut cfg = test_config();
    if small {
        cfg.max_message = 300;
        cfg.max_outbound = 4096;
    }
    let mut p = Pair::new(cfg);
    p.send(wire, cuts);
    (p.wire, p.fin, p.closed)
}

fuzz_target!(|data: &[u8]| {
    // data = [flags, ncuts, cuts..., client bytes...]
    let [flags, ncuts, rest @ ..] = data else { return };
    let ncuts = usize::from(*ncuts % 16).min(rest.len());
    let (cuts, bytes) = rest.split_at(ncuts);
    let cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c).max(1)).collect();
    // Most inputs start with a valid upgrade so that frames are reached.
    let mut wire = if flags & 1 == 0 {
        upgrade_request("/echo")
    } else {
        Vec::new()
    };
    wire.extend_from_slice(bytes);
    let small = flags & 2 != 0;
    let whole = run(&wire, &[], small);
    let chunked = run(&wire, &cuts, small);
    assert_eq!(whole, chunked);
});
