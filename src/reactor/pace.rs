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
//!
//! **Pacing by spacing** (`--fanout-pace-interval`, at most 195 ms by default): instead of
//! pausing its turns, a worker that paces spaces its subscribers' sends ([`super::spacing`]),
//! which halves its CPU per delivery where pauses took a fifth off (18k subscribers × 60/s on
//! 2 vCPUs shared with the load generator: ~11 frames per send against 5.4, at the same
//! latency, because eager sends there already waited that long for the CPU; see
//! docs/benchmarks.md, forty-ninth sitting). The interval is sized to what eager sends
//! waited: [`GAP_SPAN`] times the gap between a connection's eager sends, measured while the
//! worker sent eagerly ([`super::gaps`], [`spacing_interval`]), within the flag — so a load
//! whose eager sends went sooner is spaced less (fiftieth sitting). A worker whose eager sends
//! carried about one frame each kept up with its messages, and is not spaced at all: it stays
//! eager and is judged again each tick ([`MIN_FRAMES`], fifty-first sitting). A spaced worker waits
//! for its phases, so it is never busy, and its share of the time it was awake says nothing
//! of its neighbour: it stays spaced while it delivers at least [`MIN_DELIVERIES`] a tick
//! and its CPU stays shared, read from the time it spent runnable but waiting for the CPU
//! (`/proc/thread-self/schedstat`): it goes eager once that time adds up to less than a
//! tenth of the time it ran over a second ([`CALM_TICKS`], [`CALM_SHARE`]). (Spaced beside
//! the load generator it waited 280 ms for 412 ms run at 18k × 60/s, a quarter of the time
//! it ran at 10k × 100/s.) Where the kernel does not keep that time, a spaced worker goes
//! eager every [`LEASE_TICKS`] for a tick to be judged again. A worker alone on its CPU,
//! keeping up or delivering little is never spaced, so a light topic's messages go at once.

use std::time::Duration;

use super::gaps::Eager;

/// Deliveries in a tick (100 ms) below which a worker never pauses: 50,000 a second.
pub const MIN_DELIVERIES: u64 = 5_000;

/// The share of its unpaused time a busy worker ran, below which its CPU counts as shared
/// (alone on a CPU a busy worker runs ~95% of the time; beside one busy thread ~50%).
pub const MAX_SHARE: f64 = 0.75;

/// Ticks a spaced worker's CPU is judged over (1 s).
pub const CALM_TICKS: u32 = 10;

/// A spaced worker whose waits for its CPU added up to less than 1/`CALM_SHARE` of the
/// time it ran over [`CALM_TICKS`] has it to itself: it goes eager. Lower than the bound that
/// started it (a third, [`MAX_SHARE`]): spaced, it leaves its neighbour more CPU and waits
/// less (10k subscribers × 100/s beside the load generator: a quarter of the time it ran,
/// tick by tick 0 to 60%), and going eager would crowd it again.
pub const CALM_SHARE: u32 = 10;

/// What a spaced worker ran and waited for its CPU over some ticks.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    ticks: u32,
    ran: Duration,
    queued: Duration,
}

/// Where the kernel does not say how long a thread waited for a CPU: ticks a worker stays
/// spaced (5 s), unless its deliveries fall below [`MIN_DELIVERIES`] first; then it sends
/// eagerly for a tick and is judged again.
pub const LEASE_TICKS: u32 = 50;

/// Eager send gaps ([`super::gaps`]) a paced worker's spacing interval spans. A message
/// waits for its recipient's phase half an interval on average and one at most; sent
/// eagerly by a crowded worker it waited about a gap on average and 2–3 gaps at the tail
/// (10k–18k subscribers at 60–120/s on 2 vCPUs shared with the load generator: gaps of
/// 65–140 ms, eager p99 2.0–3.1 gaps; docs/benchmarks.md, fiftieth sitting). So spaced, a
/// message waits at most about as long as the tail of eager sending.
pub const GAP_SPAN: f64 = 2.5;

/// The shortest interval pacing spaces sends at.
pub const MIN_INTERVAL: Duration = Duration::from_millis(20);

/// Frames an eager send carried on average, below which a worker that would pace stays
/// eager. A worker whose sends carry more than one frame came round to each subscriber less
/// often than its messages came: the gap is how long it took, and what a message waited. One
/// whose sends carry one frame each kept up — barely, if it is busy and crowded — and its gap
/// is only the time between messages: spaced at some gaps, messages that went within one
/// would wait for the phase (10k subscribers × 10/s, one worker beside the load generator on
/// one CPU: a frame a send, gaps of 100 ms, spaced at 195 ms p99 197 ms against eager's
/// 83 ms; docs/benchmarks.md, fiftieth and fifty-first sittings). Between one frame and two
/// the measure is noisy from window to window, so the bound sits half-way.
pub const MIN_FRAMES: f64 = 1.5;

/// The interval a worker that starts pacing spaces its sends at: [`GAP_SPAN`] times the gap
/// between a connection's eager sends, within `max` (`--fanout-pace-interval`) and at least
/// [`MIN_INTERVAL`]. `None` where eager sends carried fewer than [`MIN_FRAMES`] frames:
/// spacing would make messages wait that went at once. Where eager sends were not measured
/// (the first delivering ticks, or within a tick or two of spacing ending): `last`, the
/// interval it last spaced at — the same load, since [`super::gaps`] forgets it at a tick
/// that did not deliver, and a spaced worker that still delivers goes eager only once its
/// CPU is calm — or, where it has not spaced this load, none: not yet, it stays eager a
/// tick and is judged again once its sends are measured (fifty-second sitting: the flag
/// used to stand in, 195 ms for a load whose gaps would have sized it lower).
pub fn spacing_interval(
    eager: Option<Eager>,
    last: Option<Duration>,
    max: Duration,
) -> Option<Duration> {
    match eager {
        None => last.map(|l| l.min(max)),
        Some(e) if e.frames < MIN_FRAMES => None,
        Some(e) => Some(e.gap.mul_f64(GAP_SPAN).clamp(MIN_INTERVAL.min(max), max)),
    }
}

/// A worker thread's counters so far, read once a tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time.
    pub cpu: Duration,
    /// Voluntary context switches.
    pub waits: u64,
    /// Time runnable but waiting for a CPU, where the kernel keeps it.
    pub queued: Option<Duration>,
}

/// The shortest time between two ticks that is measured; ticks closer together (caught up
/// after a long turn) keep the decision.
pub const MIN_SPAN: Duration = Duration::from_millis(50);

/// What a worker does with its fan-out until the next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Each send goes as soon as the connection's last one completed.
    Eager,
    /// Each turn that delivered ends with the pause.
    Pause,
    /// Subscribers' sends are spaced ([`super::spacing`]).
    Space,
}

/// The pacing state of one worker.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// The pause after a turn that delivered; zero: pacing never pauses.
    pause: Duration,
    /// Whether pacing spaces sends (instead of pausing turns).
    space: bool,
    /// Ticks left of the current spacing, where the kernel keeps no run-queue time.
    lease: u32,
    /// The current spacing's window: what the worker ran and waited for its CPU.
    window: Window,
    /// The thread's counters at the last tick.
    usage: Option<Usage>,
    /// Turns that ended with a pause since the last tick.
    paused: u64,
    /// Deliveries since the last tick.
    delivered: u64,
    /// Deliveries made in the current turn.
    turn: u64,
    /// What the current tick does.
    now: Pace,
    /// Deliveries in the last tick measured.
    last_delivered: u64,
    /// Deliveries taken into a measure by the latest tick (none by one that came too soon
    /// after the last: they count in the next).
    taken: u64,
}

impl Pacer {
    /// A pacer that, while pacing, spaces sends when `space` is set and otherwise pauses
    /// `pause` after delivering turns (zero: never).
    pub fn new(pause: Duration, space: bool) -> Self {
        Self {
            pause,
            space,
            lease: 0,
            window: Window::default(),
            usage: None,
            paused: 0,
            delivered: 0,
            turn: 0,
            now: Pace::Eager,
            last_delivered: 0,
            taken: 0,
        }
    }

    /// `n` deliveries were made in this turn.
    pub fn delivered(&mut self, n: usize) {
        self.turn += n as u64;
        self.delivered += n as u64;
    }

    /// Once a tick, `elapsed` after the last one, with the thread's counters so far: decide
    /// what the next tick does.
    pub fn on_tick(&mut self, elapsed: Duration, usage: Usage) -> Pace {
        if elapsed < MIN_SPAN && self.usage.is_some() {
            // Ticks caught up at once after a long turn: nothing new to measure.
            self.taken = 0;
            return self.now;
        }
        let last = self.usage.replace(usage);
        let paused = std::mem::take(&mut self.paused);
        self.last_delivered = std::mem::take(&mut self.delivered);
        self.taken = self.last_delivered;
        let delivering = self.delivering();
        let Some(before) = last else {
            self.now = Pace::Eager; // the first tick takes the baseline
            return self.now;
        };
        let ran = usage.cpu.saturating_sub(before.cpu);
        if self.now == Pace::Space {
            // Waiting for its phases it is never busy: spaced while the load lasts and its
            // CPU stays shared — judged over a window of ticks, by how long it waited for it.
            let alone = match (usage.queued, before.queued) {
                (Some(q), Some(b)) => {
                    let w = &mut self.window;
                    (w.ticks, w.ran, w.queued) =
                        (w.ticks + 1, w.ran + ran, w.queued + q.saturating_sub(b));
                    let full = w.ticks >= CALM_TICKS;
                    let alone = full && w.queued * CALM_SHARE < w.ran;
                    if full {
                        *w = Window::default();
                    }
                    alone
                }
                // Unknown: judged again, eager, after the lease.
                _ => {
                    self.lease = self.lease.saturating_sub(1);
                    self.lease == 0
                }
            };
            if !delivering || alone {
                self.now = Pace::Eager;
            }
            return self.now;
        }
        let busy = usage.waits.saturating_sub(before.waits) <= paused;
        let awake = elapsed.saturating_sub(self.pause * paused as u32);
        let crowded = ran.as_secs_f64() < MAX_SHARE * awake.as_secs_f64();
        self.now = match delivering && busy && crowded {
            true if self.space => {
                (self.lease, self.window) = (LEASE_TICKS, Window::default());
                Pace::Space
            }
            true if !self.pause.is_zero() => Pace::Pause,
            _ => Pace::Eager,
        };
        self.now
    }

    /// At the end of a turn: how long to pause before the next one, if at all. Starts the
    /// next turn's count.
    pub fn end_turn(&mut self) -> Option<Duration> {
        let delivered = std::mem::take(&mut self.turn) > 0;
        let pause = (self.now == Pace::Pause && delivered).then_some(self.pause);
        self.paused += u64::from(pause.is_some());
        pause
    }

    /// Whether pacing spaces sends (and so reads the thread's run-queue time).
    pub fn spaces(&self) -> bool {
        self.space
    }

    /// Whether the last tick measured delivered at least [`MIN_DELIVERIES`].
    fn delivering(&self) -> bool {
        self.last_delivered >= MIN_DELIVERIES
    }

    /// Where the last tick measured was [`delivering`](Self::delivering): the deliveries the
    /// latest tick took into it (0 where that tick came too soon to measure: they count in
    /// the next).
    pub fn delivered_last(&self) -> Option<u64> {
        self.delivering().then_some(self.taken)
    }

    /// The worker would not space (its eager sends carry one frame each: [`MIN_FRAMES`]):
    /// this tick is eager, and the next is judged as an eager one.
    pub fn stay_eager(&mut self) {
        if self.now == Pace::Space {
            self.now = Pace::Eager;
        }
    }

    /// What this tick does.
    pub fn pace(&self) -> Pace {
        self.now
    }

    /// Whether this tick paces (pauses or spaces).
    pub fn pacing(&self) -> bool {
        self.now != Pace::Eager
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
        queued: Option<Duration>,
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
            // Never waiting for work, it waited for the CPU the rest of the time it was awake.
            if let Some(q) = &mut self.queued {
                *q += awake.mul_f64(1.0 - share);
            }
            p.on_tick(TICK, self.usage());
            pauses
        }

        /// One spaced tick: `n` deliveries, running `ran` ms and waiting `queued` ms for the
        /// CPU, between waits for its phases.
        fn spaced(&mut self, p: &mut Pacer, n: usize, ran: u64, queued: u64) -> Pace {
            p.delivered(n);
            assert_eq!(p.end_turn(), None, "a spaced worker never pauses");
            self.cpu += Duration::from_millis(ran);
            self.waits += 10;
            if let Some(q) = &mut self.queued {
                *q += Duration::from_millis(queued);
            }
            p.on_tick(TICK, self.usage())
        }

        fn usage(&self) -> Usage {
            Usage {
                cpu: self.cpu,
                waits: self.waits,
                queued: self.queued,
            }
        }
    }

    fn started_spacing() -> (Pacer, Thread) {
        let (mut p, t) = started(PAUSE);
        p.space = true;
        (p, t)
    }

    fn started(pause: Duration) -> (Pacer, Thread) {
        let mut p = Pacer::new(pause, false);
        let mut t = Thread {
            cpu: Duration::from_secs(7),
            waits: 1_000,
            queued: Some(Duration::from_secs(2)),
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
    fn the_spacing_interval_spans_eager_gaps_within_the_bounds() {
        let max = Duration::from_millis(195);
        let ms = Duration::from_millis;
        let eager = |gap, frames| Some(Eager { gap, frames });
        let sized = |gap| spacing_interval(eager(gap, 6.0), None, max);
        assert_eq!(sized(ms(50)), Some(ms(125)));
        assert_eq!(sized(ms(100)), Some(max), "at most the flag");
        assert_eq!(sized(ms(2)), Some(MIN_INTERVAL));
        assert_eq!(
            spacing_interval(eager(ms(50), 6.0), Some(ms(190)), max),
            Some(ms(125)),
            "a measure wins over the interval it last spaced at"
        );
        // A flag below the floor is the interval.
        assert_eq!(
            spacing_interval(eager(ms(2), 6.0), None, ms(10)),
            Some(ms(10))
        );
    }

    #[test]
    fn unmeasured_sends_are_spaced_as_last_time_or_not_yet() {
        let max = Duration::from_millis(195);
        let ms = Duration::from_millis;
        assert_eq!(
            spacing_interval(None, None, max),
            None,
            "never spaced: not yet (not the flag)"
        );
        assert_eq!(
            spacing_interval(None, Some(ms(120)), max),
            Some(ms(120)),
            "the interval it last spaced at"
        );
        assert_eq!(
            spacing_interval(None, Some(ms(120)), ms(100)),
            Some(ms(100)),
            "within the flag"
        );
    }

    #[test]
    fn eager_sends_of_one_frame_each_are_not_spaced() {
        let max = Duration::from_millis(195);
        let gap = Duration::from_millis(100);
        let last = Some(max);
        let interval = |frames| spacing_interval(Some(Eager { gap, frames }), last, max);
        assert_eq!(
            interval(1.0),
            None,
            "it kept up: the gap is the message period"
        );
        assert_eq!(interval(MIN_FRAMES - 0.01), None);
        assert_eq!(interval(MIN_FRAMES), Some(max));
    }

    #[test]
    fn a_worker_that_stays_eager_is_judged_again_as_an_eager_one() {
        let (mut p, mut t) = started_spacing();
        t.tick(&mut p, (4, 10_000), 0, 0.5);
        assert_eq!(p.pace(), Pace::Space);
        assert_eq!(p.delivered_last(), Some(40_000));
        p.stay_eager();
        assert_eq!(p.pace(), Pace::Eager);
        // Judged as an eager tick: still busy and crowded, so it would space again.
        t.tick(&mut p, (4, 10_000), 0, 0.5);
        assert_eq!(p.pace(), Pace::Space);
        p.stay_eager();
        t.tick(&mut p, (4, 10_000), 3, 0.5);
        assert_eq!(p.pace(), Pace::Eager, "it waited for work: it keeps up");
        t.tick(&mut p, (4, 100), 0, 0.5);
        assert_eq!(
            p.delivered_last(),
            None,
            "400 deliveries: not a fan-out load"
        );
    }

    #[test]
    fn ticks_caught_up_after_a_long_turn_keep_the_decision() {
        let (mut p, mut t) = started(PAUSE);
        t.tick(&mut p, (2, 30_000), 0, 0.5);
        assert!(p.pacing());
        assert_eq!(p.on_tick(Duration::from_micros(30), t.usage()), Pace::Pause);
        assert_eq!(
            p.delivered_last(),
            Some(0),
            "a tick that caught up took no deliveries: they count once, in the next"
        );
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

    #[test]
    fn pacing_by_spacing_lasts_while_the_load_lasts_and_the_cpu_stays_shared() {
        let (mut p, mut t) = started_spacing();
        t.tick(&mut p, (10, 5_000), 0, 0.5);
        assert_eq!(p.pace(), Pace::Space, "busy, crowded, delivering: spaced");
        // Spaced, it waits for its phases and runs little, but waits for its CPU too: no
        // lease ends it.
        for k in 0..2 * LEASE_TICKS {
            assert_eq!(t.spaced(&mut p, 10_000, 20, 14), Pace::Space, "tick {k}");
        }
        // Judged over windows of `CALM_TICKS`: waiting a quarter of the time it ran is still
        // sharing; a tenth in one tick is not enough if another in the window waited long.
        for k in 0..CALM_TICKS {
            assert_eq!(
                t.spaced(&mut p, 10_000, 20, 5),
                Pace::Space,
                "a quarter, {k}"
            );
        }
        // A window's ticks but its last: each waited a twentieth of what it ran.
        let alone_but_last = |t: &mut Thread, p: &mut Pacer| {
            for k in 1..CALM_TICKS {
                assert_eq!(t.spaced(p, 10_000, 20, 1), Pace::Space, "alone, {k}");
            }
        };
        alone_but_last(&mut t, &mut p);
        assert_eq!(
            t.spaced(&mut p, 10_000, 20, 30),
            Pace::Space,
            "one long wait"
        );
        alone_but_last(&mut t, &mut p);
        assert_eq!(
            t.spaced(&mut p, 10_000, 20, 1),
            Pace::Eager,
            "a window that waited a twentieth of what it ran: eager"
        );
        t.tick(&mut p, (10, 5_000), 0, 0.5);
        assert_eq!(p.pace(), Pace::Space, "busy and crowded again");
        assert_eq!(
            t.spaced(&mut p, 4_000, 20, 14),
            Pace::Eager,
            "4,000 deliveries in a tick: eager at once"
        );
    }

    #[test]
    fn spacing_never_starts_alone_keeping_up_delivering_little_or_when_off() {
        let (mut p, mut t) = started_spacing();
        t.tick(&mut p, (10, 100_000), 0, 0.95);
        assert_eq!(p.pace(), Pace::Eager, "alone on its CPU");
        t.tick(&mut p, (10, 10_000), 3, 0.3);
        assert_eq!(p.pace(), Pace::Eager, "it waited for work");
        t.tick(&mut p, (200, 10), 0, 0.5);
        assert_eq!(p.pace(), Pace::Eager, "2,000 deliveries");
        let (mut p, mut t) = started(PAUSE);
        t.tick(&mut p, (10, 5_000), 0, 0.5);
        assert_eq!(p.pace(), Pace::Pause, "--fanout-pace-interval 0: it pauses");
    }

    #[test]
    fn without_run_queue_time_spacing_is_judged_again_eager_after_its_lease() {
        let (mut p, mut t) = started_spacing();
        t.queued = None;
        t.tick(&mut p, (10, 5_000), 0, 0.5);
        assert_eq!(p.pace(), Pace::Space);
        for k in 1..LEASE_TICKS {
            assert_eq!(t.spaced(&mut p, 10_000, 20, 0), Pace::Space, "tick {k}");
        }
        assert_eq!(
            t.spaced(&mut p, 10_000, 20, 0),
            Pace::Eager,
            "the lease ended"
        );
        t.tick(&mut p, (10, 5_000), 0, 0.5);
        assert_eq!(
            p.pace(),
            Pace::Space,
            "judged again: still busy and crowded"
        );
    }
}
