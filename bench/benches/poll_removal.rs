//! What ending one armed multishot poll costs as a ring holds more of them — the kernel
//! side of every close in poll read mode (`Socket::close` removes the connection's poll).
//!
//! io_uring finds the poll to remove by walking one bucket of the ring's cancel hash
//! (`hash_long(user_data)`; at most 256 buckets, `ilog2(cq_entries) - 5` capped at 8 bits,
//! however many polls the ring holds), and a poll is added at the head of its bucket: the
//! walk to a poll passes every poll of its bucket armed after it. A long-lived connection's
//! poll is behind most of its bucket, so the walk grows with the connections per ring.
//!
//! Each ring first arms `PROBES` polls on unbound UDP sockets (never readable), then `n`
//! more (each socket's descriptor closed once its poll is armed — the poll keeps the
//! socket — so `n` is not bounded by RLIMIT_NOFILE). An iteration removes one probe's poll
//! (armed before all `n`): submit, and reap the removal's completion. Once every probe is
//! removed, the ring is built again (not timed). Rings with a 32,768-entry completion queue
//! (a worker's first ring: 256 buckets) and 4,096 (its later rings: 128).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use holdfast::io::{Completion, Op, Ring, RingConfig, Token};
use mimalloc::MiMalloc;
use socket2::{Domain, Socket, Type};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Probe polls per ring (their sockets stay open: within the descriptor limit).
const PROBES: u32 = 8_192;

struct Armed {
    ring: Ring,
    _probes: Vec<Socket>,
    next: u32,
    out: Vec<Completion>,
}

fn udp() -> Socket {
    Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket")
}

/// Submit what is queued and reap until a completion of `op` came (bounded).
fn settle(ring: &mut Ring, out: &mut Vec<Completion>, op: Op) {
    out.clear();
    for _ in 0..1000 {
        ring.wait(Duration::from_millis(10)).expect("enter");
        ring.reap(out);
        if out.iter().any(|c| c.token.op == op) {
            return;
        }
    }
    panic!("no {op:?} completion");
}

fn armed(n: u32, cq_entries: u32) -> Armed {
    let mut ring = Ring::new(RingConfig {
        sq_entries: 4096,
        cq_entries,
        files: 16,
        buffers: 16,
        initial_buffers: 4,
        buffer_size: 4096,
        eventfd: false,
        gate_receives: false,
    })
    .expect("io_uring");
    let mut out = Vec::new();
    let probes: Vec<Socket> = (0..PROBES).map(|_| udp()).collect();
    for (i, s) in probes.iter().enumerate() {
        ring.poll_fd(s.as_raw_fd(), Token::new(Op::Poll, i as u32, 0));
        if i % 2048 == 2047 {
            ring.enter().expect("enter");
        }
    }
    ring.enter().expect("enter");
    // The others, in batches that stay within the descriptor limit: arm, submit, then
    // close the descriptors (the armed polls hold their sockets).
    let mut done = 0;
    while done < n {
        let batch: Vec<Socket> = (0..(n - done).min(2048)).map(|_| udp()).collect();
        for (i, s) in batch.iter().enumerate() {
            ring.poll_fd(
                s.as_raw_fd(),
                Token::new(Op::Poll, PROBES + done + i as u32, 0),
            );
        }
        ring.enter().expect("enter");
        done += batch.len() as u32;
    }
    ring.reap(&mut out);
    assert!(out.is_empty(), "an idle UDP socket's poll fired");
    Armed {
        ring,
        _probes: probes,
        next: 0,
        out,
    }
}

impl Armed {
    /// Remove the next probe's poll; false when none is left. Checks that it was found.
    fn remove_one(&mut self) -> bool {
        if self.next == PROBES {
            return false;
        }
        self.ring.poll_remove(Token::new(Op::Poll, self.next, 0));
        self.next += 1;
        settle(&mut self.ring, &mut self.out, Op::Ignore);
        let res = self
            .out
            .iter()
            .find(|c| c.token.op == Op::Ignore)
            .map(|c| c.res);
        assert_eq!(res, Some(0), "the probe's poll was armed and is removed");
        true
    }
}

fn poll_removal(c: &mut Criterion) {
    let mut g = c.benchmark_group("poll_removal");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_millis(500));
    for (ring, cq) in [("first_ring", 32_768), ("later_ring", 4_096)] {
        for n in [1_000u32, 16_384, 65_536, 262_144] {
            let mut a = armed(n, cq);
            g.bench_with_input(BenchmarkId::new(ring, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        let removed = a.remove_one();
                        spent += t.elapsed();
                        if !removed {
                            drop(std::mem::replace(&mut a, armed(n, cq)));
                            let t = Instant::now();
                            assert!(a.remove_one());
                            spent += t.elapsed();
                        }
                    }
                    spent
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, poll_removal);
criterion_main!(benches);
