//! The frame decoder fed in random chunks must behave exactly as when fed everything at once:
//! the same messages, then the same error (or none). It must never panic or stall.
#![no_main]

use holdfast::ws::assembler::{Assembler, Message};
use holdfast::ws::{Decoder, Error, Role};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn run(role: Role, wire: &[u8], cuts: &[u8], max: u32) -> (Vec<Owned>, Result<(), Error>) {
    let mut a = Assembler::new(Decoder::new(role));
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = match cuts.get(i % cuts.len().max(1)) {
            Some(&c) => usize::from(c).clamp(1, rest.len()),
            None => rest.len(),
        };
        i += 1;
        let (now, later) = rest.split_at(n);
        rest = later;
        let r = a.feed(now, max, |m| {
            out.push(match m {
                Message::Text(t) => Owned::Text(t.to_owned()),
                Message::Binary(b) => Owned::Binary(b.to_vec()),
                Message::Ping(b) => Owned::Ping(b.to_vec()),
                Message::Pong(b) => Owned::Pong(b.to_vec()),
                Message::Close(c, r, _) => Owned::Close(c.map(|c| c.0), r.to_owned()),
            })
        });
        if r.is_err() {
            return (out, r);
        }
    }
    // Never more than a header plus a control frame is held back.
    assert!(a.pending_len() <= 14 + 125);
    (out, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    // data = [flags, ncuts, cuts..., wire...]
    let [flags, ncuts, rest @ ..] = data else { return };
    let ncuts = usize::from(*ncuts % 16).min(rest.len());
    let (cuts, wire) = rest.split_at(ncuts);
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let max = if flags & 2 == 0 { 1 << 16 } else { 300 };
    let whole = run(role, wire, &[], max);
    let chunked = run(role, wire, cuts, max);
    assert_eq!(whole, chunked);
});
