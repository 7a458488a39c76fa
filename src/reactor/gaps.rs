//! How long a connection waits between two of its sends while its worker sends eagerly —
//! sans-IO: the measure that sizes pacing's spacing interval ([`super::pace`]).
//!
//! A worker that sends eagerly sends to each subscriber as soon as its last send completed
//! and the worker comes round to it. Crowded on a shared CPU, it comes round slowly, so the
//! gap between a subscriber's sends — and the wait of a message for the send that carries
//! it — is however long the worker takes to serve everyone once: that is the fan-out's
//! latency, whatever the interval spacing would choose. Spacing at about that gap costs
//! nothing a subscriber would see, and its sends carry what piles up in it.
//!
//! Over a window of ticks the worker counts its sends and the connections they went to: the
//! mean gap is the window's length times receivers over sends (a connection sent to `k`
//! times in it waited `window / k` between sends). A connection sent to once in the window
//! counts as a gap of the whole window, so the window is kept longer than the gaps it
//! measures ([`WINDOW`]).

use std::time::Duration;

use super::slotbits::SlotBits;

/// The window the gap is measured over: longer than any spacing interval (at most 1 s).
pub const WINDOW: Duration = Duration::from_secs(1);

/// The shortest part-window that gives a figure (while the first window fills).
pub const MIN_SPAN: Duration = Duration::from_millis(190);

/// Sends in a window below which it gives no figure.
pub const MIN_SENDS: u64 = 1_000;

/// Sends and receivers over the current window of eager sending.
#[derive(Debug, Default)]
pub struct SendGaps {
    /// A bit per slot sent to in this window.
    seen: SlotBits,
    /// Distinct slots sent to in this window.
    receivers: u64,
    /// Sends in this window.
    sends: u64,
    /// Time counted into this window.
    span: Duration,
    /// The last full window's gap.
    last: Option<Duration>,
}

impl SendGaps {
    /// A send to slot `idx`.
    #[inline]
    pub fn sent(&mut self, idx: u32) {
        self.sends += 1;
        self.receivers += u64::from(self.seen.set(idx));
    }

    /// Once a tick, `elapsed` after the last one, in which the worker was `delivering` (a
    /// fan-out load, [`super::pace::MIN_DELIVERIES`]): a window that is full gives its gap.
    /// A tick that did not deliver starts the window again (a ramp of connections each sent
    /// its handshake's answer once is not a gap).
    pub fn on_tick(&mut self, elapsed: Duration, delivering: bool) {
        if !delivering {
            return self.restart();
        }
        self.span += elapsed;
        if self.span >= WINDOW {
            self.last = self.current();
            self.restart();
        }
    }

    /// The mean gap between a connection's sends: the current window's when it is long
    /// enough, else the last full window's; none without enough sends.
    pub fn gap(&self) -> Option<Duration> {
        self.current().or(self.last)
    }

    /// Forget the window so far and the last one (the worker stopped sending eagerly: what
    /// it measures now is not the eager gap).
    pub fn reset(&mut self) {
        self.restart();
        self.last = None;
    }

    fn current(&self) -> Option<Duration> {
        (self.span >= MIN_SPAN && self.sends >= MIN_SENDS)
            .then(|| self.span.mul_f64(self.receivers as f64 / self.sends as f64))
    }

    fn restart(&mut self) {
        if self.receivers > 0 {
            self.seen.clear_all();
        }
        (self.receivers, self.sends, self.span) = (0, 0, Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    /// `ticks` ticks in which each of `conns` slots is sent to `per_tick` times.
    fn run(g: &mut SendGaps, ticks: u32, conns: u32, per_tick: u32) {
        for _ in 0..ticks {
            for _ in 0..per_tick {
                g.sent_to(0..conns);
            }
            g.on_tick(TICK, true);
        }
    }

    /// Ten ticks in which tick `t` sends once to 1,000 slots from `first(t)`.
    fn thousand_a_tick(g: &mut SendGaps, first: impl Fn(u32) -> u32, delivering: bool) {
        for t in 0..10 {
            g.sent_to(first(t)..first(t) + 1_000);
            g.on_tick(TICK, delivering);
        }
    }

    impl SendGaps {
        fn sent_to(&mut self, slots: std::ops::Range<u32>) {
            for idx in slots {
                self.sent(idx);
            }
        }
    }

    #[test]
    fn the_gap_is_the_window_times_receivers_over_sends() {
        let mut g = SendGaps::default();
        run(&mut g, 1, 5_000, 2);
        assert_eq!(g.gap(), None, "a tick is too short a window");
        run(&mut g, 1, 5_000, 2);
        // Two sends each per tick: one every 50 ms.
        assert_eq!(g.gap(), Some(Duration::from_millis(50)));
        run(&mut g, 8, 5_000, 2);
        assert_eq!(
            g.gap(),
            Some(Duration::from_millis(50)),
            "the full window's"
        );
        // 1,000 of 5,000 slots a tick, in turn: each sent to every 500 ms.
        let mut g = SendGaps::default();
        thousand_a_tick(&mut g, |t| (t % 5) * 1_000, true);
        assert_eq!(g.gap(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn few_sends_give_no_figure_and_a_reset_forgets() {
        let mut g = SendGaps::default();
        run(&mut g, 10, 50, 1);
        assert_eq!(g.gap(), None, "500 sends in a second");
        run(&mut g, 10, 1_000, 4);
        assert_eq!(g.gap(), Some(Duration::from_millis(25)));
        run(&mut g, 3, 1_000, 1);
        assert_eq!(
            g.gap(),
            Some(Duration::from_millis(100)),
            "the window filling now, once long enough"
        );
        g.reset();
        assert_eq!(g.gap(), None);
    }

    #[test]
    fn a_tick_that_did_not_deliver_starts_the_window_again() {
        let mut g = SendGaps::default();
        // A ramp: 10,000 handshake answers, one each, over 1 s.
        thousand_a_tick(&mut g, |t| t * 1_000, false);
        assert_eq!(g.gap(), None);
        run(&mut g, 2, 5_000, 1);
        assert_eq!(g.gap(), Some(TICK), "only the delivering ticks");
    }
}
