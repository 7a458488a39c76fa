//! The storm signal: the connection setup rate over the last ten seconds against its
//! baseline over the last ten minutes. A reconnect storm (a drain elsewhere, a network blip,
//! a bad deploy of a client) shows as a ratio far above 1 while the baseline is steady.
//! Sans-IO: it is fed a counter once a second and does arithmetic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds in the short window.
pub const SHORT: usize = 10;
/// Seconds in the baseline window.
pub const LONG: usize = 600;

/// Once-a-second samples of the upgrades counter.
#[derive(Debug, Default)]
pub struct SetupRate {
    samples: VecDeque<u64>,
}

/// What the signal reads now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// Upgrades per second over the last [`SHORT`] seconds.
    pub rate: f64,
    /// Upgrades per second over the last [`LONG`] seconds (as much of it as has passed).
    pub baseline: f64,
}

impl Reading {
    /// `rate / baseline`, with the baseline floored at one upgrade a second so a quiet node's
    /// first handful of connections is not a storm.
    pub fn ratio(&self) -> f64 {
        self.rate / self.baseline.max(1.0)
    }
}

impl SetupRate {
    /// Record the counter's value one second after the previous one.
    pub fn observe(&mut self, upgrades_total: u64) -> Reading {
        self.samples.push_back(upgrades_total);
        if self.samples.len() > LONG + 1 {
            self.samples.pop_front();
        }
        let n = self.samples.len();
        let back = |secs: usize| {
            let span = secs.min(n - 1);
            if span == 0 {
                return 0.0;
            }
            (upgrades_total - self.samples[n - 1 - span]) as f64 / span as f64
        };
        Reading {
            rate: back(SHORT),
            baseline: back(LONG),
        }
    }
}

/// The last reading, shared with the scrape (f64 bits in atomics).
#[derive(Debug, Default)]
pub struct Shared {
    rate: AtomicU64,
    baseline: AtomicU64,
}

impl Shared {
    /// Store a reading.
    pub fn set(&self, r: Reading) {
        self.rate.store(r.rate.to_bits(), Ordering::Relaxed);
        self.baseline.store(r.baseline.to_bits(), Ordering::Relaxed);
    }

    /// The last reading.
    pub fn get(&self) -> Reading {
        Reading {
            rate: f64::from_bits(self.rate.load(Ordering::Relaxed)),
            baseline: f64::from_bits(self.baseline.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_a_steady_baseline_reads_as_a_storm() {
        let mut s = SetupRate::default();
        let mut total = 0;
        let mut r = Reading::default();
        for _ in 0..600 {
            total += 20; // 20 upgrades/s for ten minutes
            r = s.observe(total);
        }
        assert!((r.rate - 20.0).abs() < 1e-9 && (r.baseline - 20.0).abs() < 1e-9);
        assert!((r.ratio() - 1.0).abs() < 1e-9);
        for _ in 0..10 {
            total += 2_000; // a reconnect storm
            r = s.observe(total);
        }
        assert!((r.rate - 2_000.0).abs() < 1e-9);
        assert!(r.ratio() > 20.0, "{r:?}");
        // The first seconds of a quiet node are not a storm.
        let mut q = SetupRate::default();
        assert_eq!(q.observe(0).rate, 0.0);
        let r = q.observe(3);
        assert_eq!((r.rate, r.ratio()), (3.0, 1.0));
    }
}
