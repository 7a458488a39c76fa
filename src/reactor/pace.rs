//! Whether a worker yields its CPU between fan-out turns — sans-IO, decided once a tick from
//! the thread's context switches and the deliveries it made.
//!
//! A worker that keeps up sends each subscriber what piled up since its last send. When it
//! shares its CPU with another busy thread (a sidecar, a co-located client, the load
//! generator on a 2-vCPU box) it never runs out of work — every turn finds the sends of the
//! last one completed and a few new messages — so it sends in many small pieces, each paying
//! the kernel's whole per-send cost, and takes the CPU from the neighbour it shares it with.
//! Measured at 10k subscribers × 100 msgs/s with the defaults (2 workers, each pinned beside
//! a load generator thread): ~6 frames per segment against uWebSockets' ~13, no wait for work
//! in 4 s, 1.11M deliveries per server-CPU-s against its 1.73M (docs/benchmarks.md,
//! fourteenth sitting).
//!
//! So a worker paces for the next tick when, over the last one, it was **busy** (it never
//! waited for work: every voluntary context switch was one of its own pauses), **crowded**
//! (it ran less than [`MAX_SHARE`] of the time it was not pausing — something else held its
//! CPU) and **delivering** (at least [`MIN_DELIVERIES`]). While it paces, each turn that
//! delivered ends with a pause: the worker submits what it has and waits out the pause (or a
//! full completion queue) before its next turn. Frames pile up meanwhile and leave in fewer,
//! fuller sends; the neighbour runs. A worker alone on its CPU runs nearly all the time, one
//! that keeps up waits for work, one that delivers little (small topics) does neither: each
//! stays eager. (The count of preemptions was tried first and does not tell the two apart:
//! a worker alone on a CPU beside the kernel's softirq thread was preempted 4.4 times a tick,
//! one sharing it with a load generator 5–7.)

use std::time::Duration;

/// Deliveries in a tick (100 ms) below which a worker never pauses: 50,000 a second.
pub const MIN_DELIVERIES: u64 = 5_000;

/// The share of its unpaused time a busy worker ran, below which its CPU counts as shared
/// (alone on a CPU a busy worker runs ~95% of the time; beside one busy thread ~50%).
pub const MAX_SHARE: f64 = 0.75;

/// The shortest time between two ticks that is measured; ticks closer together (caught up
/// after a long turn) keep the decision.
pub const MIN_SPAN: Duration = Duration::from_millis(50);

/// The pacing state of one worker.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// The pause after a turn that delivered; zero turns pacing off.
    pause: Duration,
    /// The thread's CPU time and voluntary context switches at the last tick.
    usage: Option<(Duration, u64)>,
    /// Turns that ended with a pause since the last tick.
    paused: u64,
    /// Deliveries since the last tick.
    delivered: u64,
    /// Deliveries made in the current turn.
    turn: u64,
    /// Pacing for the current tick.
    on: bool,
}

impl Pacer {
    /// A pacer that pauses `pause` after delivering turns while pacing (zero: never).
    pub fn new(pause: Duration) -> Self {
        Self {
            pause,
            usage: None,
            paused: 0,
            delivered: 0,
            turn: 0,
            on: false,
        }
    }

    /// `n` deliveries were made in this turn.
    pub fn delivered(&mut self, n: usize) {
        self.turn += n as u64;
        self.delivered += n as u64;
    }

    /// Once a tick, `elapsed` after the last one, with the thread's CPU time and voluntary
    /// context switches so far: decide whether the next tick paces. Returns whether it does.
    pub fn on_tick(&mut self, elapsed: Duration, usage: (Duration, u64)) -> bool {
        if elapsed < MIN_SPAN && self.usage.is_some() {
            // Ticks caught up at once after a long turn: nothing new to measure.
            return self.on;
        }
        let last = self.usage.replace(usage);
        let paused = std::mem::take(&mut self.paused);
        let delivering = std::mem::take(&mut self.delivered) >= MIN_DELIVERIES;
        let Some((cpu_before, waits_before)) = last else {
            self.on = false; // the first tick takes the baseline
            return false;
        };
        let busy = usage.1.saturating_sub(waits_before) <= paused;
        let awake = elapsed.saturating_sub(self.pause * paused as u32);
        let ran = usage.0.saturating_sub(cpu_before);
        let crowded = ran.as_secs_f64() < MAX_SHARE * awake.as_secs_f64();
        self.on = !self.pause.is_zero() && delivering && busy && crowded;
        self.on
    }

    /// At the end of a turn: how long to pause before the next one, if at all. Starts the
    /// next turn's count.
    pub fn end_turn(&mut self) -> Option<Duration> {
        let delivered = std::mem::take(&mut self.turn) > 0;
        let pause = (self.on && delivered).then_some(self.pause);
        self.paused += u64::from(pause.is_some());
        pause
    }

    /// Whether this tick paces.
    pub fn pacing(&self) -> bool {
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: Duration = Duration::from_millis(10);

    const TICK: Duration = Duration::from_millis(100);

    /// A worker thread as the pacer sees it: its CPU time and waits so far.
    struct Thread {
        cpu: Duration,
        waits: u64,
    }

    impl Thread {
        /// One tick: `turns` turns of `per_turn` deliveries each, `waits` waits for work
        /// besides the pauses the pacer asked for (each a wait), and the thread running
        /// `share` of the time it did not pause. Returns the pauses asked in those turns.
        fn tick(
            &mut self,
            p: &mut Pacer,
            (turns, per_turn): (usize, usize),
            waits: u64,
            share: f64,
        ) -> u64 {
            let mut pauses = 0;
            for _ in 0..turns {
                p.delivered(per_turn);
                pauses += u64::from(p.end_turn().is_some());
            }
            self.waits += waits + pauses;
            let awake = TICK.saturating_sub(p.pause * pauses as u32);
            self.cpu += awake.mul_f64(share);
            p.on_tick(TICK, (self.cpu, self.waits));
            pauses
        }
    }

    fn started(pause: Duration) -> (Pacer, Thread) {
        let mut p = Pacer::new(pause);
        let mut t = Thread {
            cpu: Duration::from_secs(7),
            waits: 1_000,
        };
        t.tick(&mut p, (10, 5_000), 0, 0.5);
        assert!(!p.pacing(), "the first tick only takes the baseline");
        (p, t)
    }

    #[test]
    fn a_busy_crowded_worker_pauses_after_each_delivering_turn_while_it_stays_so() {
        let (mut p, mut t) = started(PAUSE);
        assert_eq!(t.tick(&mut p, (10, 5_000), 0, 0.5), 0);
        assert!(
            p.pacing(),
            "50,000 deliveries, no wait, half the CPU in a tick"
        );
        // Its own pauses are neither waiting for work nor time it could have run.
        assert_eq!(t.tick(&mut p, (4, 10_000), 0, 0.6), 4);
        assert!(p.pacing(), "every wait was a pause it asked for");
        p.delivered(5_000);
        assert_eq!(p.end_turn(), Some(PAUSE));
        assert_eq!(
            p.end_turn(),
            None,
            "a turn that delivered nothing goes on at once"
        );
    }

    #[test]
    fn a_worker_alone_keeping_up_or_delivering_little_stays_eager() {
        let (mut p, mut t) = started(PAUSE);
        t.tick(&mut p, (10, 100_000), 0, 0.95);
        assert!(!p.pacing(), "alone on its CPU: it ran 95% of the tick");
        t.tick(&mut p, (10, 10_000), 3, 0.3);
        assert!(!p.pacing(), "it waited for work: it keeps up");
        t.tick(&mut p, (200, 10), 0, 0.5);
        assert!(!p.pacing(), "2,000 deliveries in a tick do not pace");
        assert_eq!(t.tick(&mut p, (5, 10), 0, 0.5), 0);
    }

    #[test]
    fn pacing_ends_the_tick_after_the_load_or_the_neighbour_goes() {
        let (mut p, mut t) = started(PAUSE);
        t.tick(&mut p, (4, 10_000), 0, 0.5);
        assert!(p.pacing());
        assert_eq!(
            t.tick(&mut p, (4, 10_000), 0, 0.9),
            4,
            "paced while the tick lasted"
        );
        assert!(
            !p.pacing(),
            "it had its CPU to itself in the last tick: eager again"
        );
        t.tick(&mut p, (4, 10_000), 0, 0.5);
        assert!(p.pacing());
        t.tick(&mut p, (4, 10_000), 2, 0.5);
        assert!(
            !p.pacing(),
            "two waits for work besides its pauses: eager again"
        );
        t.tick(&mut p, (4, 10_000), 0, 0.5);
        assert!(p.pacing());
        t.tick(&mut p, (4, 100), 0, 0.5);
        assert!(!p.pacing(), "400 deliveries in the last tick: eager again");
    }

    #[test]
    fn ticks_caught_up_after_a_long_turn_keep_the_decision() {
        let (mut p, mut t) = started(PAUSE);
        t.tick(&mut p, (2, 30_000), 0, 0.5);
        assert!(p.pacing());
        assert!(p.on_tick(Duration::from_micros(30), (t.cpu, t.waits)));
        assert!(p.pacing(), "a tick right after another measures nothing");
    }

    #[test]
    fn a_zero_pause_never_paces() {
        let (mut p, mut t) = started(Duration::ZERO);
        assert_eq!(t.tick(&mut p, (10, 100_000), 0, 0.2), 0);
        assert!(!p.pacing());
        p.delivered(1);
        assert_eq!(p.end_turn(), None);
    }
}
