//! Opening handshakes per second: parse a browser-like request and produce the 101 response.
//!
//! holdfast: find the head, validate it, compute the accept key, write the response into a
//! reused buffer; then the same with the lookups the server makes of every upgrade (its
//! credentials and subprotocol). tungstenite: `accept_with_config` over an in-memory stream (its real
//! server path: httparse, validation, response, and the `WebSocket` it returns), configured
//! with a small read buffer so the comparison is not dominated by its default 128 KiB one.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use holdfast::ws::handshake::{parse_request, repeated_param, write_accept, HeadScanner, Limits};
use holdfast_bench::{Duplex, UPGRADE_REQUEST};
use mimalloc::MiMalloc;
use std::hint::black_box;
use tungstenite::protocol::WebSocketConfig;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    let limits = Limits::default();
    let mut out = Vec::with_capacity(256);
    g.bench_function("holdfast", |b| {
        b.iter(|| black_box(holdfast_upgrade(&mut out, &limits, false)))
    });
    // What the server also asks of every upgrade: the credentials (Authorization, the token
    // query parameter, a bearer subprotocol), the subprotocol to answer with, and whether a
    // one-value query parameter is given twice.
    g.bench_function("holdfast, with the server's header lookups", |b| {
        b.iter(|| black_box(holdfast_upgrade(&mut out, &limits, true)))
    });
    let config = WebSocketConfig::default().read_buffer_size(4096);
    g.bench_function("tungstenite", |b| {
        b.iter(|| {
            let ws = tungstenite::accept_with_config(
                Duplex::new(black_box(UPGRADE_REQUEST)),
                Some(config),
            )
            .unwrap();
            black_box(ws.get_ref().output.len())
        })
    });
    g.finish();
}

/// One upgrade as the server handles it: find the head, validate it, (with `lookups`, look
/// up the credentials and the subprotocol), write the 101 into the reused `out`.
fn holdfast_upgrade(out: &mut Vec<u8>, limits: &Limits, lookups: bool) -> usize {
    out.clear();
    let mut scanner = HeadScanner::new();
    let n = scanner
        .scan(black_box(UPGRADE_REQUEST), limits)
        .unwrap()
        .unwrap();
    let req = parse_request(&UPGRADE_REQUEST[..n]).unwrap();
    let protocol = if lookups {
        black_box(holdfast::auth::request_token(&req));
        let once = ["topic", "binary", "members", "cursor", "client", "token"];
        black_box(repeated_param(req.query.unwrap_or(""), &once));
        req.choose_protocol(&[holdfast::auth::PROTOCOL])
    } else {
        None
    };
    write_accept(out, &req.accept_key(), protocol);
    out.len()
}

criterion_group!(benches, handshake);
criterion_main!(benches);
