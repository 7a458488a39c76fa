//! A fan-out worker's own per-publish and per-send work, apart from the kernel's (forty-
//! seventh sitting): the two parts of it that a profile of 18k subscribers × 120 publishes/s
//! with spaced sends put above 1% each.
//!
//! - `recipients`: listing a topic's 9,000 subscribers on one worker in slab order for a
//!   publish — kept between publishes (`steady`), or rebuilt from the map because the
//!   subscribers changed since the last publish (`after_a_join`, the cost before the order
//!   was kept).
//! - `outbound_step`: one phase step's 470 held subscribers each take a queue, gather 23
//!   frames of 110 bytes into one send, and give it back when the send completes — the queue
//!   taken from the thread's pool and given back to it (`pooled`), or allocated and freed
//!   (`fresh`, as before the pool).
//! - `deferral_interval` (forty-eighth sitting): one interval of a worker's deferred runs at
//!   120 publishes/s and 195 ms — 23 runs, each kept for the same 9,000 held subscribers
//!   (slots in slab order, 19 phase steps), and each step's recipients taking every run
//!   owed to them, as `drive_due` asks.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use holdfast::pubsub::local::LocalSubs;
use holdfast::pubsub::policy::SlowPolicy;
use holdfast::reactor::deferred::Deferred;
use holdfast::session::Outbound;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const SUBSCRIBERS: u32 = 9_000;
const STEP: usize = 470;
const FRAMES: usize = 23;
const FRAME: usize = 110;

fn recipients(c: &mut Criterion) {
    let mut g = c.benchmark_group("recipients");
    g.throughput(Throughput::Elements(u64::from(SUBSCRIBERS)));
    // Slots subscribed in a scrambled order (a multiplicative permutation), as clients
    // arrive; one more slot joins and leaves in the rebuilding case.
    let mut subs = LocalSubs::default();
    for i in 0..SUBSCRIBERS {
        let slot = (i.wrapping_mul(7_919)) % SUBSCRIBERS;
        subs.subscribe(slot, 1, "t", SlowPolicy::Drop, 0);
    }
    let mut out = Vec::new();
    let mut seq = 1;
    g.bench_function("steady", |b| {
        b.iter(|| {
            seq += 1;
            subs.recipients(1, seq, &mut out);
            out.len()
        })
    });
    g.bench_function("after_a_join", |b| {
        b.iter(|| {
            seq += 1;
            subs.subscribe(SUBSCRIBERS, 1, "t", SlowPolicy::Drop, 0);
            subs.unsubscribe(SUBSCRIBERS, 1);
            subs.recipients(1, seq, &mut out);
            out.len()
        })
    });
    g.finish();
}

fn outbound_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("outbound_step");
    g.throughput(Throughput::Elements(STEP as u64));
    let frames: Vec<Vec<u8>> = (0..FRAMES).map(|i| vec![i as u8; FRAME]).collect();
    let mut held: Vec<Box<Outbound>> = Vec::with_capacity(STEP);
    let mut sends = Vec::with_capacity(STEP);
    for pooled in [true, false] {
        let name = if pooled { "pooled" } else { "fresh" };
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                for _ in 0..STEP {
                    let mut o = if pooled {
                        Outbound::boxed()
                    } else {
                        Box::default()
                    };
                    o.write_owned(|v| {
                        v.reserve_exact(FRAMES * FRAME);
                        frames.iter().for_each(|f| v.extend_from_slice(f));
                    });
                    sends.push(o.next_send(|_, _, _| None).expect("a send"));
                    held.push(o);
                }
                // The step's completions.
                for (mut o, buf) in held.drain(..).zip(sends.drain(..)) {
                    o.on_sent(buf);
                    if pooled {
                        Outbound::recycle(o);
                    }
                }
                Outbound::trim_pool()
            })
        });
    }
    g.finish();
}

fn deferral_interval(c: &mut Criterion) {
    const STEPS: u32 = 19;
    const RUNS: usize = 23;
    let mut g = c.benchmark_group("deferral_interval");
    g.throughput(Throughput::Elements(RUNS as u64 * u64::from(SUBSCRIBERS)));
    let held: Vec<u32> = (0..SUBSCRIBERS).collect();
    let mut d: Deferred<u64> = Deferred::new(STEPS);
    let mut out = Vec::new();
    let mut swept = 0u64;
    g.bench_function("9000_held_23_runs", |b| {
        b.iter(|| {
            let mut taken = 0;
            for r in 0..RUNS {
                d.defer(vec![r as u64], 110, &held, swept);
                // The runs spread over the interval's steps, about one a step.
                if r * STEPS as usize / RUNS != (r + 1) * STEPS as usize / RUNS {
                    swept += 1;
                    d.take_step((swept % u64::from(STEPS)) as u32, &mut out);
                    taken += out.len();
                    out.clear();
                    d.expire(swept);
                }
            }
            taken
        })
    });
    g.finish();
}

criterion_group!(benches, recipients, outbound_step, deferral_interval);
criterion_main!(benches);
