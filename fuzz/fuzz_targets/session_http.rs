//! Plain HTTP on the server session: calls, long polls, event streams, preflights and
//! refusals, several requests on one kept-alive connection. A client sends its requests
//! as "units", each after the answers to the one before have arrived (a unit may still hold
//! more than one request: pipelining). Within a unit the bytes are cut at random, and the
//! answers stay in flight until the unit is in, so input that comes while an answer is
//! going out is seen as it would be on a socket.
//!
//! Checked: the session never panics or loops (the harness bounds every drive); what it
//! sends is a sequence of whole HTTP answers, each with its Content-Length body (after a
//! 101 or an event stream's head, what follows is compared between the runs, not parsed);
//! and the run cut at random answers and ends as the run fed each unit whole, except for
//! one thing the cuts decide on purpose: an answer sent before the pipelined bytes arrived
//! says `Connection: keep-alive`, one sent after says `close` (either way the connection
//! closes after it).
#![no_main]

use holdfast::session::pair::{test_config, Pair};
use libfuzzer_sys::fuzz_target;

/// What separates the client's units in the fuzzer's bytes.
const UNIT: &[u8] = b"\xff\xfe";

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    wire: Vec<u8>,
    fin: bool,
    closed: bool,
    answers: usize,
}

fn run(units: &[&[u8]], cuts: &[usize], flags: u8) -> Outcome {
    let mut cfg = test_config();
    if flags & 2 != 0 {
        cfg.max_message = 300;
        cfg.max_outbound = 4096;
        cfg.keepalive_requests = 3;
    }
    let mut p = Pair::new(cfg);
    for unit in units {
        if p.closed {
            break;
        }
        p.stall = true;
        p.send(unit, cuts);
        p.stall = false;
        p.release();
    }
    if flags & 4 != 0 {
        p.end();
    }
    if flags & 8 != 0 {
        // Let every deadline pass (handshake, close, idle), a tick at a time.
        p.advance(1_000);
    }
    Outcome {
        wire: p.wire,
        fin: p.fin,
        closed: p.closed,
        answers: p.answers,
    }
}

/// `wire` as the server must have written it: whole HTTP answers, each with a status line
/// and a head, a body of its Content-Length (an event stream's runs to the end; after a 101,
/// frames). Returns the answers, each with its `Connection:` value made `close`.
fn answers(mut wire: &[u8]) -> Vec<Vec<u8>> {
    let mut heads = Vec::new();
    while !wire.is_empty() {
        let end = wire
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("an answer without a whole head: {wire:?}"));
        let head = &wire[..end + 4];
        assert!(
            head.starts_with(b"HTTP/1.1 "),
            "not an HTTP answer: {head:?}"
        );
        let text = std::str::from_utf8(head).expect("an answer's head is ASCII");
        let status: u16 = text[9..12].parse().expect("a status code");
        assert!((100..600).contains(&status), "status {status}");
        let mut answer = text
            .replace("Connection: keep-alive", "Connection: close")
            .into_bytes();
        wire = &wire[end + 4..];
        if status == 101 || text.contains("text/event-stream") {
            answer.extend_from_slice(wire); // frames or events to the end
            heads.push(answer);
            return heads;
        }
        let len = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("Content-Length: ")
                    .map(|v| v.parse::<usize>().expect("a length"))
            })
            .unwrap_or_else(|| panic!("an answer without Content-Length: {text}"));
        assert!(wire.len() >= len, "a body cut short: {text}");
        answer.extend_from_slice(&wire[..len]);
        heads.push(answer);
        wire = &wire[len..];
    }
    heads
}

fuzz_target!(|data: &[u8]| {
    // data = [flags, ncuts, cuts..., client bytes (units separated by UNIT)...]
    let [flags, ncuts, rest @ ..] = data else {
        return;
    };
    let ncuts = usize::from(*ncuts % 16).min(rest.len());
    let (cuts, bytes) = rest.split_at(ncuts);
    let cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c).max(1)).collect();
    let mut units = Vec::new();
    let mut left = bytes;
    while let Some(at) = left.windows(UNIT.len()).position(|w| w == UNIT) {
        units.push(&left[..at]);
        left = &left[at + UNIT.len()..];
    }
    units.push(left);

    let whole = run(&units, &[], *flags);
    let chunked = run(&units, &cuts, *flags);
    let (a, b) = (answers(&whole.wire), answers(&chunked.wire));
    assert_eq!(a, b, "the cuts changed the answers");
    assert_eq!(
        (whole.fin, whole.closed),
        (chunked.fin, chunked.closed),
        "the cuts changed how it ended"
    );
    for o in [&whole, &chunked] {
        assert!(o.answers <= a.len(), "more kept-alive answers than answers");
    }
});
