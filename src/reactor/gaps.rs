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
//!
//! It counts the frames delivered too: frames per send says what the gap is. A worker that
//! comes round to a subscriber less often than its messages come finds several waiting, and
//! the gap is the time it takes to come round — what a message waits. One that keeps up finds
//! one at each visit (a frame a send), and the gap is only the time between messages: their
//! wait was shorter, and how much shorter the gap does not say ([`Eager::frames`]).

use std::time::Duration;

use super::slotbits::SlotBits;

/// The window the gap is measured over: longer than any spacing interval (at most 1 s).
pub const WINDOW: Duration = Duration::from_secs(1);

/// The shortest part-window that gives a figure (while the first window fills).
pub const MIN_SPAN: Duration = Duration::from_millis(190);

/// Sends in a window below which it gives no figure.
pub const MIN_SENDS: u64 = 1_000;

/// What a window of eager sending measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eager {
    /// The mean gap between a connection's sends.
    pub gap: Duration,
    /// Frames delivered per send, on average (1.0: each send carried one message).
    pub frames: f64,
}

/// Sends and receivers over the current window of eager sending.
#[derive(Debug, Default)]
pub struct SendGaps {
    /// A bit per slot sent to in this window.
    seen: SlotBits,
    /// Distinct slots sent to in this window.
    receivers: u64,
    /// Sends in this window.
    sends: u64,
    /// Frames delivered in this window.
    frames: u64,
    /// Time counted into this window.
    span: Duration,
    /// The last full window's measure.
    last: Option<Eager>,
    /// The interval the worker last spaced this load's sends at ([`SendGaps::spacing_at`]).
    spaced: Option<Duration>,
}

impl SendGaps {
    /// A send to slot `idx`.
    #[inline]
    pub fn sent(&mut self, idx: u32) {
        self.sends += 1;
        self.receivers += u64::from(self.seen.set(idx));
    }

    /// Once a tick, `elapsed` after the last one, with the frames it `delivered` where it
    /// was a fan-out load ([`super::pace::MIN_DELIVERIES`]; `None` where it was not): a
    /// window that is full gives its measure. A tick that did not deliver starts the window
    /// again (a ramp of connections each sent its handshake's answer once is not a gap) and
    /// forgets the last window's measure and the interval last spaced at: they were the load
    /// that just ended, and the next load is measured afresh.
    pub fn on_tick(&mut self, elapsed: Duration, delivered: Option<u64>) {
        let Some(frames) = delivered else {
            self.spaced = None;
            return self.reset();
        };
        self.span += elapsed;
        self.frames += frames;
        if self.span >= WINDOW {
            self.last = self.current();
            self.restart();
        }
    }

    /// The mean gap between a connection's sends and the frames a send carried: the last full
    /// window's, or while the first fills the current one's once it is long enough ([`MIN_SPAN`]);
    /// none without enough sends. A part-window is not trusted once a full one is known: frames
    /// are counted as they are offered and sends as they go, so a worker catching up a backlog
    /// reads 1.7 frames a send over 200 ms where the full second read 1.0.
    pub fn measured(&self) -> Option<Eager> {
        self.last.or_else(|| self.current())
    }

    /// The worker starts spacing this load's sends at `interval`: forget the window so far
    /// and the last one (what it would measure now is the spacing, not the eager gap), and
    /// keep the interval for a start again before the next measure.
    pub fn spacing_at(&mut self, interval: Duration) {
        self.reset();
        self.spaced = Some(interval);
    }

    /// The interval this load's sends were last spaced at, if they were.
    pub fn last_spaced(&self) -> Option<Duration> {
        self.spaced
    }

    /// Forget the window so far and the last one.
    fn reset(&mut self) {
        self.restart();
        self.last = None;
    }

    fn current(&self) -> Option<Eager> {
        (self.span >= MIN_SPAN && self.sends >= MIN_SENDS).then(|| {
            let sends = self.sends as f64;
            Eager {
                gap: self.span.mul_f64(self.receivers as f64 / sends),
                frames: self.frames as f64 / sends,
            }
        })
    }

    fn restart(&mut self) {
        if self.receivers > 0 {
            self.seen.clear_all();
        }
        (self.receivers, self.sends, self.frames, self.span) = (0, 0, 0, Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    /// `ticks` ticks in which each of `conns` slots is sent to `per_tick` times, each send
    /// carrying two frames.
    fn run(g: &mut SendGaps, ticks: u32, conns: u32, per_tick: u32) {
        run_frames(g, ticks, conns, per_tick, 2);
    }

    /// As [`run`], each send carrying `frames` frames.
    fn run_frames(g: &mut SendGaps, ticks: u32, conns: u32, per_tick: u32, frames: u32) {
        for _ in 0..ticks {
            for _ in 0..per_tick {
                g.sent_to(0..conns);
            }
            g.on_tick(TICK, Some(u64::from(conns * per_tick * frames)));
        }
    }

    /// Ten ticks in which tick `t` sends once to 1,000 slots from `first(t)`.
    fn thousand_a_tick(g: &mut SendGaps, first: impl Fn(u32) -> u32, delivering: bool) {
        for t in 0..10 {
            g.sent_to(first(t)..first(t) + 1_000);
            g.on_tick(TICK, delivering.then_some(1_000));
        }
    }

    impl SendGaps {
        fn sent_to(&mut self, slots: std::ops::Range<u32>) {
            for idx in slots {
                self.sent(idx);
            }
        }

        fn gap(&self) -> Option<Duration> {
            self.measured().map(|e| e.gap)
        }

        fn frames(&self) -> Option<f64> {
            self.measured().map(|e| e.frames)
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
    fn few_sends_give_no_figure_and_spacing_forgets() {
        let mut g = SendGaps::default();
        run(&mut g, 10, 50, 1);
        assert_eq!(g.gap(), None, "500 sends in a second");
        run(&mut g, 10, 1_000, 4);
        assert_eq!(g.gap(), Some(Duration::from_millis(25)));
        run(&mut g, 3, 1_000, 1);
        assert_eq!(
            g.gap(),
            Some(Duration::from_millis(25)),
            "the last full window's while the next fills"
        );
        run(&mut g, 7, 1_000, 1);
        assert_eq!(g.gap(), Some(Duration::from_millis(100)), "the next one's");
        g.spacing_at(Duration::from_millis(150));
        assert_eq!(g.gap(), None, "spaced: the eager measure is forgotten");
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

    #[test]
    fn a_load_that_ends_leaves_no_measure_for_the_next() {
        let mut g = SendGaps::default();
        let spaced = Duration::from_millis(62);
        g.spacing_at(spaced);
        run(&mut g, 10, 5_000, 4);
        assert_eq!(g.gap(), Some(Duration::from_millis(25)), "a full window");
        assert_eq!(g.last_spaced(), Some(spaced), "the same load");
        g.on_tick(TICK, None);
        assert_eq!(g.gap(), None, "the load ended: its measure is forgotten");
        assert_eq!(g.last_spaced(), None, "and the interval it was spaced at");
        run(&mut g, 1, 5_000, 1);
        assert_eq!(g.gap(), None, "the next load: not measured yet");
        run(&mut g, 1, 5_000, 1);
        assert_eq!(g.gap(), Some(TICK), "its own measure");
    }

    #[test]
    fn frames_per_send_are_the_window_s_deliveries_over_its_sends() {
        let mut g = SendGaps::default();
        run_frames(&mut g, 10, 5_000, 1, 1);
        assert_eq!(g.frames(), Some(1.0), "a frame a send: it kept up");
        run_frames(&mut g, 9, 5_000, 1, 6);
        assert_eq!(g.frames(), Some(1.0), "the last full window's");
        run_frames(&mut g, 1, 5_000, 1, 6);
        assert_eq!(g.frames(), Some(6.0), "the next full one's");
        // A ramp's answers carry no frames, and restart the window.
        let mut g = SendGaps::default();
        thousand_a_tick(&mut g, |t| t * 1_000, false);
        run_frames(&mut g, 2, 5_000, 2, 3);
        assert_eq!(g.frames(), Some(3.0), "the first window, once long enough");
    }
}
