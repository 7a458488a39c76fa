//! The process's lifecycle state that workers, the admin listener and the signal thread
//! share (draining, stopping), and the drain's pacing arithmetic.
//!
//! **Architecture Invariant:** this is the only state the reactor shares with the control
//! plane besides counters and the pub/sub hub; it is touched once per tick, never per
//! message.

use std::sync::atomic::{AtomicBool, Ordering};

/// Drain and stop flags.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    stop: AtomicBool,
}

impl Lifecycle {
    /// Start draining (idempotent); true when this call started it.
    pub fn drain(&self) -> bool {
        !self.draining.swap(true, Ordering::Relaxed)
    }

    /// Whether a drain has started.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Make every worker exit at once.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the workers must exit now.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// How many of `total` connections a drain spread over `window` ticks has asked to close by
/// `elapsed` ticks: a straight line, everything once the window is over.
pub fn drain_target(total: usize, elapsed: u32, window: u32) -> usize {
    let window = window.max(1);
    if elapsed >= window {
        usize::MAX
    } else {
        (total * elapsed as usize).div_ceil(window as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_spreads_closes_evenly_and_finishes_at_the_window() {
        let (total, window) = (1000, 300);
        let mut last = 0;
        let mut per_tick = Vec::new();
        for t in 0..=window {
            let n = drain_target(total, t, window).min(total);
            per_tick.push(n - last);
            last = n;
        }
        assert_eq!(
            last, total,
            "every connection asked by the end of the window"
        );
        // Evenly: no tick asks for more than ceil(total / window) + 1.
        assert!(per_tick
            .iter()
            .all(|&n| n <= total.div_ceil(window as usize) + 1));
        assert_eq!(drain_target(0, 5, 300), 0);
        assert_eq!(
            drain_target(7, 1, 0),
            usize::MAX,
            "a zero window drains on the next tick"
        );
    }
}
