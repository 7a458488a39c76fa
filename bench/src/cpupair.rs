//! How far apart two CPUs are: the round trip of one cache line between them, two pinned
//! threads bouncing an atomic counter.
//!
//! On a cloud guest the host may put two vCPUs on cores that share a last-level cache or on
//! cores that do not, and may move them while a report runs. On the fifty-seventh sitting's
//! AMD EPYC guest the round trip was ~55–85 ns or ~380–420 ns, and every echo round of every
//! server (the floor too) landed on one of two levels 1.3–1.5x apart with it: loopback TCP
//! moves each message's cache lines between the server's CPU and the client's. So the echo
//! section records the round trip beside each round, and a comparison of servers reads only
//! between rounds at the same distance (`bench/results/2026-12-07-new-guest-57-notes.md`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Round trips per batch; the figure is the median batch's mean.
const PER_BATCH: u64 = 20_000;
const BATCHES: usize = 15;
/// A partner thread that is not running (both pinned to one CPU, or a CPU taken away) would
/// make the other spin for good: each wait gives up after this.
const GIVE_UP: Duration = Duration::from_millis(200);

/// Spin until `flag` holds `want`; false if it did not within [`GIVE_UP`].
fn wait_for(flag: &AtomicU64, want: u64) -> bool {
    let started = Instant::now();
    let mut spins = 0u32;
    while flag.load(Ordering::Acquire) != want {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        // Reading the clock every spin would be most of the round trip.
        if spins % 4096 == 0 && started.elapsed() > GIVE_UP {
            return false;
        }
    }
    true
}

/// The cache-line round trip between CPUs `a` and `b` in ns (median of [`BATCHES`]), or
/// `None` where either thread could not be pinned or the partner stopped answering. Both
/// sides run on threads of their own, so the caller's CPU mask (which the processes it
/// starts inherit) is left as it was.
pub fn round_trip_ns(a: usize, b: usize) -> Option<f64> {
    let flag = AtomicU64::new(0);
    let total = PER_BATCH * BATCHES as u64;
    std::thread::scope(|scope| {
        let partner = scope.spawn(|| {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: b }) {
                flag.store(u64::MAX, Ordering::Release);
                return;
            }
            for i in 0..total {
                if !wait_for(&flag, 2 * i + 1) {
                    return;
                }
                flag.store(2 * i + 2, Ordering::Release);
            }
        });
        let leader = scope.spawn(|| {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: a }) {
                return None;
            }
            let mut batches = Vec::with_capacity(BATCHES);
            let mut k = 0u64;
            for _ in 0..BATCHES {
                let started = Instant::now();
                for _ in 0..PER_BATCH {
                    flag.store(2 * k + 1, Ordering::Release);
                    if !wait_for(&flag, 2 * k + 2) {
                        return None;
                    }
                    k += 1;
                }
                batches.push(started.elapsed().as_nanos() as f64 / PER_BATCH as f64);
            }
            batches.sort_by(f64::total_cmp);
            Some(batches[BATCHES / 2])
        });
        let ns = leader.join().ok().flatten();
        // Release a partner still waiting (the leader gave up): it gives up at its next wait.
        flag.store(u64::MAX, Ordering::Release);
        let _ = partner.join();
        ns
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cpus_give_a_round_trip_and_a_missing_cpu_gives_none() {
        let cpus = holdfast::topology::allowed_cpus();
        if let [a, .., b] = cpus[..] {
            let ns = round_trip_ns(a, b).expect("two allowed CPUs answer");
            // A cache line cannot cross between cores in under a nanosecond, nor take a
            // millisecond per round trip while both threads spin.
            assert!(ns > 1.0 && ns < 1_000_000.0, "{ns}");
        }
        // A CPU that does not exist cannot be pinned to: no figure rather than a wrong one.
        assert_eq!(round_trip_ns(cpus[0], 1000), None);
    }
}
