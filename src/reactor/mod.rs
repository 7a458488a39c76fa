//! The worker loop: per-core threads that pull completions from the io layer, hand bytes to
//! sessions, call the services, and run timers and drain pacing.
//!
//! **Architecture Invariant:** the reactor imports the io layer, sessions, services and the
//! lifecycle flags, and nothing of the control plane (server, admin, configuration).

pub mod closelog;
pub mod deferred;
pub mod gaps;
pub mod pace;
pub mod rings;
pub mod slotbits;
pub mod spacing;
pub mod tls;
pub mod worker;

use crate::io::Socket;
use crate::session::Session;

/// One connection's slab entry: its sans-IO session and its socket.
#[derive(Debug)]
pub struct Conn {
    /// The protocol state.
    pub session: Session,
    /// Where the socket is and what is in flight on it.
    pub socket: Socket,
}

/// Consecutive slab slots (one `u64` of a per-slot bit set) that share a sweep step, past a
/// worker's first `SWEEP_GROUP · steps` slots. Slots are taken in order
/// as connections arrive, and so are the kernel objects behind them (the ring's file-table
/// entries, 8 to a cache line, their resource nodes, files and sockets, from slab pages
/// filled in order): a step that visits runs of neighbours touches fewer lines and pages
/// than one striding across them all. Forty-sixth sitting, spaced fan-out at 18k × 60/s:
/// with slots strided (`i mod steps`) the file-table entry and its node alone were 5.5% of
/// the server's CPU; runs of 8 gave +6–8% deliveries per CPU, runs of 64 +11%, runs of 512
/// no more (`bench/results/2026-12-06-grouped-phases-46-notes.md`).
pub const SWEEP_GROUP: usize = 64;

/// The sweep step of a slab slot among `steps`. A worker's first `SWEEP_GROUP · steps`
/// slots take the steps one by one (`idx mod steps`), so a worker with few connections
/// spreads them over every step (runs of 64 from slot 0 would put its first 64 connections,
/// and their sends, in one step); past them, runs of [`SWEEP_GROUP`] neighbours share a
/// step (group `idx / SWEEP_GROUP`, `mod steps`). Either way each step holds about
/// `1/steps` of the slots.
///
/// Made once per step count: the division by it is a multiplication (Lemire, Kaser and
/// Kurz's `fastmod`, exact for every 32-bit dividend). Every deferred run sorts its
/// recipients by step ([`deferred`]): at 9,000 held subscribers and 120 publishes/s that was
/// ~2M divisions a second per worker.
#[derive(Debug, Clone, Copy)]
pub struct SweepStep {
    steps: u32,
    /// `⌈2⁶⁴ / steps⌉` (0 for one step, whose every slot is step 0).
    m: u64,
    /// The slots taken one by one: `SWEEP_GROUP · steps`.
    spread: u32,
}

impl SweepStep {
    /// The mapping for `steps` steps (at least one).
    pub fn new(steps: u32) -> Self {
        let steps = steps.max(1);
        Self {
            steps,
            m: (u64::MAX / u64::from(steps)).wrapping_add(1),
            spread: SWEEP_GROUP as u32 * steps,
        }
    }

    /// `a mod steps`.
    fn modulo(&self, a: u32) -> u32 {
        let low = self.m.wrapping_mul(u64::from(a));
        ((u128::from(low) * u128::from(self.steps)) >> 64) as u32
    }

    /// The step of slot `idx`.
    pub fn of(&self, idx: u32) -> u32 {
        if idx < self.spread {
            self.modulo(idx)
        } else {
            self.modulo(idx / SWEEP_GROUP as u32)
        }
    }
}

/// The slab slots the heartbeat sweep visits at `tick`: those whose [`SweepStep`] among
/// `ping_ticks` is `tick mod ping_ticks`, in order. Over any `ping_ticks` consecutive ticks
/// every slot is visited exactly once, and each tick visits at most
/// `SWEEP_GROUP · (1 + ceil(capacity / (SWEEP_GROUP · ping_ticks)))`: pings are spread
/// evenly over the interval by construction, with no timer per connection.
pub fn sweep_slots(tick: u32, ping_ticks: u32, capacity: usize) -> impl Iterator<Item = usize> {
    let b = ping_ticks.max(1) as usize;
    let t = tick as usize % b;
    let spread = (t..capacity.min(SWEEP_GROUP * b)).step_by(b);
    // Groups from `b` on (slot `SWEEP_GROUP · b` on) whose number is `t mod b`.
    let runs = (b + t..capacity.div_ceil(SWEEP_GROUP))
        .step_by(b)
        .flat_map(move |g| g * SWEEP_GROUP..((g + 1) * SWEEP_GROUP).min(capacity));
    spread.chain(runs)
}

/// The userspace budget of an idle connection's state.
pub const CONN_BUDGET: usize = 48;
const _: () = assert!(std::mem::size_of::<Conn>() <= CONN_BUDGET);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_sweep_visits_every_slot_once_per_interval_and_evenly() {
        let (ping_ticks, cap) = (250u32, 100_003usize);
        for start in [0u32, 7, 249, u32::MAX - 300] {
            let mut seen = vec![0u8; cap];
            let mut most = 0;
            for t in 0..ping_ticks {
                let visited: Vec<usize> =
                    sweep_slots(start.wrapping_add(t), ping_ticks, cap).collect();
                most = most.max(visited.len());
                for i in visited {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "start {start}");
            let groups = cap.div_ceil(SWEEP_GROUP);
            assert!(most <= SWEEP_GROUP * (1 + groups.div_ceil(ping_ticks as usize)));
        }
        // A tick's slots come in order: the first 64 · 250 one by one, 250 apart (a worker
        // with few connections spreads them over every tick), then runs of 64 neighbours.
        let first = SWEEP_GROUP * 250;
        let visited: Vec<usize> = sweep_slots(3, 250, 100_003).collect();
        assert!(visited.is_sorted());
        let (spread, runs): (Vec<usize>, Vec<usize>) = visited.iter().partition(|&&i| i < first);
        assert_eq!(spread, (3..first).step_by(250).collect::<Vec<_>>());
        assert!(!runs.is_empty());
        assert!(runs.chunks(SWEEP_GROUP).all(|run| {
            run.len() == SWEEP_GROUP && run[SWEEP_GROUP - 1] - run[0] == SWEEP_GROUP - 1
        }));
        // Each slot's step is the tick that visits it.
        for idx in [
            0,
            1,
            249,
            250,
            first - 1,
            first,
            first + 63,
            first + 64,
            99_999,
        ] {
            let step = SweepStep::new(250).of(idx as u32);
            assert!(
                sweep_slots(step, 250, 100_003).any(|i| i == idx),
                "slot {idx}"
            );
        }
        // Twenty connections on a worker take twenty steps (of 19), not one.
        let steps: std::collections::HashSet<u32> =
            (0..20).map(|i| SweepStep::new(19).of(i)).collect();
        assert_eq!(steps.len(), 19);
    }

    #[test]
    fn a_step_by_multiplication_is_the_step_by_division_for_every_slot() {
        // The mapping as division states it.
        let divided = |idx: u32, steps: u32| {
            let (idx, b) = (idx as usize, steps as usize);
            let step = if idx < SWEEP_GROUP * b {
                idx % b
            } else {
                idx / SWEEP_GROUP % b
            };
            step as u32
        };
        for steps in [1, 2, 3, 7, 19, 64, 99, spacing::MAX_STEPS] {
            let s = SweepStep::new(steps);
            let spread = SWEEP_GROUP as u32 * steps;
            // Both regions, their boundary, and the top of the slot range.
            let edges = [spread.saturating_sub(2), spread, u32::MAX - 200];
            let slots = (0..3 * spread + 500).chain(edges.into_iter().flat_map(|e| e..e + 200));
            for idx in slots {
                assert_eq!(
                    s.of(idx),
                    divided(idx, steps),
                    "slot {idx} of {steps} steps"
                );
            }
        }
    }

    #[test]
    fn idle_connection_state_fits_its_budget() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= CONN_BUDGET, "Conn is {size} bytes");
        // The slab stores an enum of Conn or a free-list link; Option<Conn> has the same
        // layout question (niche or tag) and is what the metrics count per slot.
        let entry = std::mem::size_of::<Option<Conn>>();
        assert!(entry <= 56, "a slab slot is {entry} bytes");
        let c = Conn {
            session: Session::new(0),
            socket: Socket::new(3, 7, 1),
        };
        assert_eq!(c.session.heap_bytes(), 0);
        assert_eq!(c.session.queued(), 0);
        assert_eq!(
            (c.socket.ring(), c.socket.slot(), c.socket.generation()),
            (3, 7, 1)
        );
    }
}
