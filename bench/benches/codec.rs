//! Decode + unmask throughput, holdfast's decoder against tungstenite's, on the same bytes.
//!
//! Both sides start from wire bytes in memory and end with every payload unmasked and
//! delivered: holdfast copies the batch into a receive buffer (as the kernel would into a
//! provided buffer) and decodes in place; tungstenite reads the same bytes through its own
//! buffer from an in-memory stream and returns `Message`s.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use holdfast::ws::{mask::apply_mask, Decoder, Event, OpCode, Role};
use holdfast_bench::{batch_count, client_frames, Duplex, MASK};
use mimalloc::MiMalloc;
use std::hint::black_box;
use tungstenite::protocol::{Role as TRole, WebSocket, WebSocketConfig};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn holdfast_decode(wire: &[u8], rx: &mut [u8], frames: usize) -> usize {
    rx.copy_from_slice(wire);
    let mut d = Decoder::new(Role::Server);
    let mut pos = 0;
    let mut got = 0;
    let mut sum = 0usize;
    while got < frames {
        let step = d.decode(&mut rx[pos..], u32::MAX).expect("valid input");
        if let Some(Event::Data {
            range, last: true, ..
        }) = &step.event
        {
            sum += rx[pos + range.start] as usize + range.len();
            got += 1;
        }
        pos += step.consumed;
    }
    sum
}

fn tungstenite_decode(ws: &mut WebSocket<Duplex<'_>>, frames: usize) -> usize {
    let mut sum = 0usize;
    for _ in 0..frames {
        let m = ws.read().expect("valid input");
        let data = m.into_data();
        sum += data[0] as usize + data.len();
    }
    sum
}

fn decode(c: &mut Criterion) {
    for (op, label) in [(OpCode::Binary, "binary"), (OpCode::Text, "text")] {
        let mut g = c.benchmark_group(format!("decode_{label}"));
        for size in [16usize, 128, 4096, 65536] {
            let frames = batch_count(size);
            let wire = client_frames(size, frames, op);
            g.throughput(Throughput::Bytes(wire.len() as u64));
            let mut rx = vec![0u8; wire.len()];
            g.bench_function(format!("holdfast/{size}"), |b| {
                b.iter(|| black_box(holdfast_decode(&wire, &mut rx, frames)))
            });
            let config = WebSocketConfig::default()
                .read_buffer_size(64 * 1024)
                .max_message_size(None);
            g.bench_function(format!("tungstenite/{size}"), |b| {
                b.iter_batched_ref(
                    || WebSocket::from_raw_socket(Duplex::new(&wire), TRole::Server, Some(config)),
                    |ws| black_box(tungstenite_decode(ws, frames)),
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [16usize, 128, 4096, 65536] {
        let mut buf = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("holdfast/{size}"), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), MASK, 0))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, unmask);
criterion_main!(benches);
