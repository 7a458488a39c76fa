//! What the loadgen pays to read one fan-out delivery (`holdfast_loadgen::scenario::fanout::
//! parse_delivery`): the cost a client-published fan-out multiplies by millions of
//! deliveries per second on the cores the server shares (docs/benchmarks.md, thirty-sixth
//! sitting).
//!
//! - `server_text`: the text frame's body exactly as holdfast writes it (read in place);
//! - `keys_reordered`: the same message with its keys in another order (the key-walking
//!   reader, which the server's own layout went through before);
//! - `binary`: the binary layout;
//! - `full_parser`: a subscription acknowledgement (serde_json).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use holdfast::pubsub::delivery::{encode_delivery, Payload};
use holdfast_loadgen::scenario::fanout::parse_delivery;
use mimalloc::MiMalloc;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn delivery_read(c: &mut Criterion) {
    let stamp = 1_764_876_543_210_987u64.to_string();
    let frame = encode_delivery("fanout.0", 123_456, Payload::Text(&stamp));
    assert!(frame[1] < 126, "a short frame's header is two bytes");
    let server_text = frame[2..].to_vec();
    let reordered =
        format!(r#"{{"type":"message","topic":"fanout.0","seq":123456,"data":"{stamp}"}}"#);
    let frame = encode_delivery("fanout.0", 123_456, Payload::Binary(&[7; 16]));
    let binary = frame[2..].to_vec();
    let subscribed = br#"{"type":"subscribed","topic":"fanout.0","seq":123456}"#.to_vec();
    let mut g = c.benchmark_group("delivery_read");
    g.throughput(Throughput::Elements(1));
    for (name, is_binary, body) in [
        ("server_text", false, server_text),
        ("keys_reordered", false, reordered.into_bytes()),
        ("binary", true, binary),
        ("full_parser", false, subscribed),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| parse_delivery(black_box(is_binary), black_box(&body)))
        });
    }
    g.finish();
}

criterion_group!(benches, delivery_read);
criterion_main!(benches);
