//! The userspace work a long poll repeats on every request that is not the kernel's: what
//! its topic's replay window owes it, and the `subscribed` reply a WebSocket subscribe or
//! a fresh poll is sent; and what an event stream repeats on every event: its cursor, the
//! event's id, with the lookups that find it.
//!
//! A kept-alive poller asks again from its cursor after every answer, so each request
//! resumes its topic: `Replay::resume` lists what the window holds after the cursor (a full
//! window of 1,024 messages owing the newest 5: ~100k polls a second at 10k pollers × 50
//! messages/s, `docs/benchmarks.md` "Fifty-ninth sitting"). `reply_subscribed` is written
//! by hand; `reply_subscribed_via_value` is the `serde_json::Value` it replaced, kept here
//! as the line it is measured against.

use criterion::{criterion_group, criterion_main, Criterion};
use holdfast::pubsub::local::LocalSubs;
use holdfast::pubsub::policy::SlowPolicy;
use holdfast::pubsub::replay::{format_epoch, Replay};
use holdfast::pubsub::reply_subscribed;
use mimalloc::MiMalloc;
use std::hint::black_box;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn reply_subscribed_via_value(
    topic: &str,
    seq: u64,
    epoch: u64,
    recovered: Option<bool>,
) -> String {
    let mut v = serde_json::json!({
        "type": "subscribed", "topic": topic, "seq": seq, "epoch": format_epoch(epoch),
    });
    if let Some(r) = recovered {
        v["recovered"] = r.into();
    }
    v.to_string()
}

fn bench(c: &mut Criterion) {
    let mut window = Replay::new(1024, 1 << 20);
    let frame: Arc<[u8]> = Arc::from(&[7u8; 96][..]);
    for _ in 0..5_000 {
        window.push(frame.clone());
    }
    let last = window.last();
    c.bench_function("replay_resume_full_window_owing_5", |b| {
        b.iter(|| black_box(window.resume(black_box(last - 5))).frames.len())
    });
    c.bench_function("reply_subscribed", |b| {
        b.iter(|| {
            reply_subscribed(
                black_box("prices.eu:fx/EURUSD"),
                black_box(last),
                0x6f1c,
                Some(true),
                None,
            )
        })
    });
    c.bench_function("reply_subscribed_via_value", |b| {
        b.iter(|| {
            reply_subscribed_via_value(
                black_box("prices.eu:fx/EURUSD"),
                black_box(last),
                0x6f1c,
                Some(true),
            )
        })
    });
}

/// One event's work on an event stream subscribed to 2 of a worker's 1,000 topics: move its
/// position (`set_after`) and write its cursor (`write_cursor`).
fn event_cursor(c: &mut Criterion) {
    let mut subs = LocalSubs::default();
    for conn in 0..1_000u32 {
        subs.join(conn);
        let id = u64::from(conn);
        assert!(subs.subscribe(conn, id, &format!("room.{conn}"), SlowPolicy::Drop, 0));
        subs.set_epoch(id, 0x6f1c_0e2a_9b3d_4c57);
    }
    let conn = 500;
    assert!(subs.subscribe(conn, 7, "room.7", SlowPolicy::Drop, 0));
    let mut out = Vec::with_capacity(128);
    let mut seq = 1_000_000u64;
    c.bench_function("event_stream_cursor", |b| {
        b.iter(|| {
            seq += 1;
            subs.set_after(conn, 500, seq);
            out.clear();
            subs.write_cursor(black_box(conn), &mut out);
            out.len()
        })
    });
}

criterion_group!(benches, bench, event_cursor);
criterion_main!(benches);
