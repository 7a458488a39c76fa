//! Spaced sends (`--fanout-send-interval`) — sans-IO: which connections wait before their
//! next send, and when each may send again.
//!
//! A subscriber that keeps up is sent to as soon as its last send completed, so the time
//! between its sends is however long the worker takes to come round: with CPU to spare, each
//! send carries a few frames and costs the kernel about as much as a full one. On loopback a
//! send costs about the same whatever it carries (bench/results/2026-12-03-fanout-sends-and-
//! ceiling.md), so deliveries per CPU follow frames per send. With an interval set, a send's
//! completion holds the connection: its next send waits for the connection's **phase**, a
//! point that comes round once per interval, and carries everything offered meanwhile.
//!
//! Phases are spread evenly by slab slot: the interval is cut into `B` steps (about 10 ms
//! each) and slot `i`'s phase is step `i mod B` among the worker's first `64·B` slots and
//! `(i / 64) mod B` past them ([`super::SweepStep`]), the heartbeat's sweep
//! ([`super::sweep_slots`]): a large worker's runs of neighbouring slots share a step, so a
//! step's sends touch neighbouring kernel objects ([`super::SWEEP_GROUP`]). So a worker's
//! sends leave spread over the interval, a held connection sends once per interval while it
//! has something to send, and a message to a held recipient waits for its phase: half an
//! interval on average, never more than one.
//! Messages are not put in a held recipient's queue as they come: they wait in a run the
//! worker keeps once ([`super::deferred`]) and each recipient takes it at its phase, just
//! before its send.
//! A hold that comes due with nothing offered ends, and a recipient that is neither held nor
//! sending is idle: a message for it goes at once (the first after a quiet spell does not
//! wait), and that send's completion holds it, so what follows within the interval waits
//! for its phase. Holds started at the same moment (one publish driving every idle
//! subscriber) come due at their own phases, so bursts do not repeat. What is not a message
//! (a reply, a presence event, a direct message) goes at once to a recipient that is not
//! held.
//!
//! A hold is one bit per slab slot. The worker starts one only when a send completes with
//! nothing left queued (a backlog larger than a send drains at once). Input on a connection
//! ends its hold (a reply, a pong or an echo is never held), and so do leaving `Open` (a
//! closing connection's FIN follows its last bytes) and releasing the slot.

use std::time::{Duration, Instant};

use super::slotbits::SlotBits;

/// The step between two phases, about: the worker wakes for held sends at most this often
/// (1 ms steps measured no better than 10 ms ones at 18k subscribers; each wake-up is a
/// ring enter). The interval is cut into at most [`MAX_STEPS`].
const STEP: Duration = Duration::from_millis(10);

/// The shortest step an interval sized to the load is cut into.
const MIN_STEP: Duration = Duration::from_millis(1);

/// Most phases per interval (`--fanout-send-interval` is at most 1 s).
pub const MAX_STEPS: u32 = 100;

/// Which connections wait before their next send.
#[derive(Debug)]
pub struct Spacing {
    /// Phases per interval; zero: spacing never on.
    steps: u32,
    /// Whether sends are spaced now (always with `--fanout-send-interval`; while the worker
    /// paces with `--fanout-pace-interval`, [`super::pace`]).
    active: bool,
    /// The interval divided into `steps`.
    step: Duration,
    /// A bit per slab slot: held.
    held: SlotBits,
    /// Slots held.
    count: usize,
    /// When step `base` began.
    epoch: Instant,
    /// The step count at `epoch` (steps before it were of another length).
    base: u64,
    /// The last step swept.
    swept: u64,
}

impl Spacing {
    /// Spacing with this interval (zero: never on), on from `now` if `active`.
    pub fn new(interval: Duration, active: bool, now: Instant) -> Self {
        let steps = (interval.as_nanos() / STEP.as_nanos()).clamp(1, u128::from(MAX_STEPS));
        let steps = if interval.is_zero() { 0 } else { steps as u32 };
        Self {
            steps,
            active,
            step: interval.checked_div(steps.max(1)).unwrap_or_default(),
            held: SlotBits::default(),
            count: 0,
            epoch: now,
            base: 0,
            swept: 0,
        }
    }

    /// Whether sends are spaced now.
    pub fn on(&self) -> bool {
        self.steps > 0 && self.active
    }

    /// Space sends from `now` on (when the interval is not zero) at `interval`: the same
    /// number of phases, each of its share (`--fanout-pace-interval` sized to the load,
    /// [`super::pace`]); at least 1 ms a step.
    pub fn resume(&mut self, interval: Duration, now: Instant) {
        self.active = true;
        if self.steps > 0 {
            let step = (interval / self.steps).max(MIN_STEP);
            // Phases go on from the step reached, at the new length.
            self.base = self.position(now);
            self.swept = self.swept.max(self.base);
            (self.epoch, self.step) = (now, step);
        }
    }

    /// The interval now.
    pub fn interval(&self) -> Duration {
        self.step * self.steps
    }

    /// The step count at `now`.
    fn position(&self, now: Instant) -> u64 {
        self.base
            + (now.saturating_duration_since(self.epoch).as_nanos() / self.step.as_nanos().max(1))
                as u64
    }

    /// Stop spacing: every hold ends; append the slots that were held to `out` (their sends
    /// go now).
    pub fn stop(&mut self, out: &mut Vec<u32>) {
        self.active = false;
        self.held.take_all(out);
        self.count = 0;
    }

    /// A send on slot `idx` completed: hold its next send until its phase. Does nothing
    /// when spacing is off.
    pub fn start(&mut self, idx: u32) {
        if self.on() && self.held.set(idx) {
            self.count += 1;
        }
    }

    /// Whether `idx`'s next send waits.
    pub fn holds(&self, idx: u32) -> bool {
        self.held.get(idx)
    }

    /// End `idx`'s hold, if any (input arrived, the slot was released, its phase came).
    pub fn end(&mut self, idx: u32) {
        if self.held.clear(idx) {
            self.count -= 1;
        }
    }

    /// Slots held.
    pub fn held(&self) -> usize {
        self.count
    }

    /// When the next phase comes that may end a hold; none while nothing is held.
    pub fn next_due(&self) -> Option<Instant> {
        // In nanoseconds: a `u32` count of 10 ms steps wraps after 16 months of uptime, and
        // a due time in the past would keep the worker from waiting.
        let at = (self.step.as_nanos() as u64).saturating_mul(self.swept + 1 - self.base);
        (self.count > 0).then(|| self.epoch + Duration::from_nanos(at))
    }

    /// End the holds whose phase came since the last call, up to `now`, among slots below
    /// `slots`; append them to `out`. Each step's slots are visited once per interval (a
    /// call after more than an interval visits each step once).
    pub fn take_due(&mut self, now: Instant, slots: usize, out: &mut Vec<u32>) {
        if !self.on() {
            return;
        }
        let upto = self.position(now);
        let from = self.swept.max(upto.saturating_sub(u64::from(self.steps)));
        self.swept = upto;
        if self.count == 0 {
            return;
        }
        for k in from + 1..=upto {
            let step = (k % u64::from(self.steps)) as u32;
            for idx in super::sweep_slots(step, self.steps, slots) {
                let idx = idx as u32;
                if self.holds(idx) {
                    self.end(idx);
                    out.push(idx);
                }
            }
        }
    }

    /// The steps that have come since the last [`Spacing::take_due`], up to `now` (as sweep
    /// counts: step `k mod steps`), without taking them.
    pub fn coming(&self, now: Instant) -> std::ops::Range<u64> {
        if !self.on() {
            return 0..0;
        }
        let upto = self.position(now);
        let from = self.swept.max(upto.saturating_sub(u64::from(self.steps)));
        from + 1..upto + 1
    }

    /// Phase steps per interval (zero: off).
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Steps swept so far (the sweep count), for [`super::deferred::Deferred`].
    pub fn swept(&self) -> u64 {
        self.swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_millis(300);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn off_holds_nothing() {
        let t = Instant::now();
        let mut s = Spacing::new(Duration::ZERO, true, t);
        s.start(5);
        assert!(!s.on());
        assert!(!s.holds(5));
        assert_eq!(s.next_due(), None);
        let mut out = Vec::new();
        s.take_due(t + I, 10, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_steps_coming_are_those_the_next_take_sweeps() {
        let t = Instant::now();
        let mut s = Spacing::new(I, true, t);
        assert_eq!(s.coming(t + ms(35)), 1..4, "steps 1, 2 and 3 came");
        let mut out = Vec::new();
        s.take_due(t + ms(35), 100, &mut out);
        assert_eq!(
            (s.swept(), s.coming(t + ms(39))),
            (3, 4..4),
            "taken: none till 40 ms"
        );
        // After more than an interval each step comes once.
        assert_eq!(s.coming(t + ms(1_000)).count(), 30);
        assert_eq!(Spacing::new(Duration::ZERO, true, t).coming(t + I), 0..0);
    }

    #[test]
    fn a_held_slot_comes_due_at_its_phase_once_per_interval() {
        let t = Instant::now();
        let mut s = Spacing::new(I, true, t);
        assert_eq!(s.next_due(), None, "nothing held: no wake-up");
        // 30 phases of 10 ms; slot 7's phase is step 7, slot 37's too, and so is every slot
        // of group 37 (past the first 64 · 30 slots, runs of 64 share a step).
        let (g37, g37_last) = (37 * 64, 37 * 64 + 63);
        s.start(g37_last);
        s.start(7);
        s.start(37);
        s.start(8);
        s.start(g37);
        assert_eq!((s.held(), s.next_due()), (5, Some(t + ms(10))));
        let mut out = Vec::new();
        s.take_due(t + ms(69), 3_000, &mut out);
        assert!(out.is_empty(), "step 7 has not come");
        s.take_due(t + ms(70), 3_000, &mut out);
        assert_eq!(out, vec![7, 37, g37, g37_last], "in slot order");
        assert!(s.holds(8) && !s.holds(7));
        s.take_due(t + ms(80), 3_000, &mut out);
        assert_eq!(out, vec![7, 37, g37, g37_last, 8]);
        assert_eq!((s.held(), s.next_due()), (0, None));
        // Held again right after its phase: it waits a whole interval.
        s.start(7);
        out.clear();
        s.take_due(t + ms(369), 100, &mut out);
        assert!(out.is_empty());
        s.take_due(t + ms(370), 100, &mut out);
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn holds_started_together_come_due_spread_over_the_interval() {
        let t = Instant::now();
        let mut s = Spacing::new(I, true, t);
        // The first 1,920 slots one by one (64 a step), then 30 runs of 64 (one a step).
        for idx in 0..3_840 {
            s.start(idx);
        }
        let mut per_step = Vec::new();
        let mut out = Vec::new();
        for k in 1..=30 {
            out.clear();
            s.take_due(t + ms(10 * k), 3_840, &mut out);
            assert!(out.is_sorted());
            per_step.push(out.len());
        }
        assert!(per_step.iter().all(|&n| n == 128), "{per_step:?}");
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn input_or_release_ends_a_hold_and_a_long_gap_sweeps_each_phase_once() {
        let t = Instant::now();
        let mut s = Spacing::new(I, true, t);
        s.start(1);
        s.start(1);
        assert_eq!(s.held(), 1, "a second completion while held adds nothing");
        s.end(1);
        s.end(1);
        assert_eq!((s.held(), s.holds(1)), (0, false));
        for idx in [2, 3, 4] {
            s.start(idx);
        }
        let mut out = Vec::new();
        s.take_due(t + Duration::from_secs(10), 5, &mut out);
        out.sort_unstable();
        assert_eq!(out, vec![2, 3, 4], "ten intervals late: each once");
    }

    #[test]
    fn the_interval_is_cut_into_steps_of_about_ten_milliseconds() {
        let t = Instant::now();
        let s = Spacing::new(Duration::from_secs(1), true, t);
        assert_eq!((s.steps, s.step), (MAX_STEPS, ms(10)));
        let s = Spacing::new(ms(305), true, t);
        assert_eq!(s.steps, 30);
        let s = Spacing::new(ms(4), true, t);
        assert_eq!((s.steps, s.step), (1, ms(4)));
    }

    #[test]
    fn stopped_it_holds_nothing_and_lists_what_it_held_resumed_it_holds_again() {
        let t = Instant::now();
        let mut s = Spacing::new(I, false, t);
        s.start(5);
        assert!(!s.on() && !s.holds(5), "not on yet: nothing held");
        s.resume(I, t);
        s.start(5);
        s.start(70);
        assert!(s.on() && s.holds(5) && s.holds(70));
        let mut out = Vec::new();
        s.stop(&mut out);
        assert_eq!(out, [5, 70], "every hold ended");
        assert!(!s.on() && !s.holds(5) && s.held() == 0 && s.next_due().is_none());
        s.take_due(t + I, 100, &mut out);
        assert_eq!(out.len(), 2, "nothing comes due while stopped");
        s.resume(I, t + I);
        s.start(9);
        assert_eq!(s.held(), 1);
        s.take_due(t + I * 3, 100, &mut out);
        assert_eq!(
            out[2..],
            [9],
            "its phase comes, an interval at most after resuming"
        );
    }

    #[test]
    fn resumed_at_another_interval_the_same_phases_come_at_its_pace() {
        let t = Instant::now();
        let mut s = Spacing::new(I, false, t);
        assert_eq!((s.steps(), s.interval()), (30, I));
        // 1 s later, at 120 ms: 30 steps of 4 ms.
        let at = t + ms(1_000);
        s.resume(ms(120), at);
        assert_eq!(s.interval(), ms(120));
        let swept = s.swept();
        assert_eq!(swept, 100, "the steps reached at the old length");
        s.start(3);
        assert_eq!(s.next_due(), Some(at + ms(4)));
        let mut out = Vec::new();
        s.take_due(at + ms(119), 30, &mut out);
        assert_eq!(out, [3], "its phase came within the new interval");
        assert_eq!(s.swept(), swept + 29);
        // Sized below a millisecond a step: 1 ms steps.
        s.resume(ms(10), at + ms(200));
        assert_eq!(s.interval(), ms(30));
    }
}
