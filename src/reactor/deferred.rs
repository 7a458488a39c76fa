//! Messages deferred for held connections (`--fanout-send-interval`) — sans-IO.
//!
//! With spaced sends a subscriber whose last send completed is held until its **phase**
//! ([`super::spacing`]): what it is offered meanwhile waits in its queue. Offered on arrival,
//! every message (or gathered run of messages) visited each held recipient — a cache miss
//! per subscriber per run, the worker's largest userspace cost at 18k subscribers — only
//! for the subscriber's next send to visit it again at its phase. Deferred, a run is kept
//! once for all its held recipients, sorted by their phase step, and each recipient takes
//! it when its phase comes: one visit per interval, when the send goes out anyway.
//!
//! Each run keeps the held recipients of each step (their slab slots). A recipient is owed
//! a run until it takes it: at its step ([`Deferred::take_step`]), or earlier when its hold
//! ends before its phase — input, which is answered at once ([`Deferred::take_slot`]) — or
//! when something that must follow the run is offered to it (a gap, a presence event: its
//! recipients take what they are owed first). A released slot is owed nothing
//! ([`Deferred::forget`]): the next connection in it did not subscribe to those messages.
//! A run is dropped once every step has come since it was deferred.
//!
//! What the runs hold counts under the memory budget ([`Deferred::bytes`], O(1)): each run's
//! frames once (they are shared; taken, they are sent at once) and its slot lists, until it
//! is dropped.

use std::collections::VecDeque;

use super::slotbits::SlotBits;
use super::SweepStep;

/// A slot that took its share early or was released.
const TAKEN: u32 = u32::MAX;

/// A recipient and the runs it takes now: run numbers `first..end` (as numbered by the take
/// that listed it, oldest first). A phase step lists each due recipient once for the runs
/// that agree at that step, not once per run: at 9,000 held subscribers and 23 runs an
/// interval, pairs were 207k entries an interval where recipients are 9k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    /// Its slab slot.
    pub slot: u32,
    first: u32,
    end: u32,
}

impl Owed {
    fn new(slot: u32, runs: std::ops::Range<usize>) -> Self {
        Self {
            slot,
            first: runs.start as u32,
            end: runs.end as u32,
        }
    }

    /// The runs it takes.
    pub fn runs(&self) -> std::ops::Range<usize> {
        self.first as usize..self.end as usize
    }
}

/// A run with at most this many held recipients keeps no index by step (its step's
/// recipients are found by a scan): a run to a few subscribers of a quiet topic costs its
/// slots, not a start per step (a 1,000-topic publisher's runs are mostly of this kind).
const SCAN: usize = 16;

/// Runs of messages waiting for their held recipients' phases.
#[derive(Debug)]
pub struct Deferred<D> {
    /// Phase steps per interval (the spacing's).
    steps: u32,
    /// A slot's phase step among them: the spacing's.
    step_of: SweepStep,
    /// Oldest first.
    runs: VecDeque<Run<D>>,
    /// A bit per slab slot: owed some run.
    owing: SlotBits,
    /// What the runs stand for under the memory budget ([`Deferred::bytes`]).
    bytes: usize,
    /// The last indexed run's recipients as given, and as sorted by step (its `slots` and
    /// `starts` before any was taken): the next run to the same recipients — a topic's next
    /// message while its subscribers stay held — copies them instead of sorting again. At
    /// 9,000 held recipients the sort was two thirds of the deferral's work. Not counted
    /// under the memory budget (like a topic's kept recipient order): 8 bytes and a bit per
    /// recipient of one list, freed whenever no run is kept.
    last: Sorted,
}

/// A recipient list and its grouping by step ([`Deferred::last`]).
#[derive(Debug, Default)]
struct Sorted {
    held: Vec<u32>,
    slots: Vec<u32>,
    starts: Vec<u32>,
    /// `held` as bits: the run's recipients become owed a word at a time.
    bits: SlotBits,
}

impl<D> Default for Deferred<D> {
    fn default() -> Self {
        Self::new(0)
    }
}

#[derive(Debug)]
struct Run<D> {
    msgs: Vec<D>,
    /// Held recipients grouped by phase step: step `s`'s are `slots[starts[s]..starts[s+1]]`
    /// (with no `starts`, at most [`SCAN`] recipients in any order).
    slots: Vec<u32>,
    starts: Vec<u32>,
    /// Recipients that have not taken it.
    owed: usize,
    /// Its frames' bytes.
    share: usize,
    /// The spacing's sweep count when it was deferred: every step has come once the sweep
    /// passes `made + steps`.
    made: u64,
}

impl<D> Run<D> {
    /// What it holds: its frames and its slot lists.
    fn bytes(&self) -> usize {
        self.share + (self.slots.len() + self.starts.len()) * std::mem::size_of::<u32>()
    }

    /// Where step `s`'s recipients are (with no index: all of them, to be checked).
    fn step(&self, s: u32) -> std::ops::Range<usize> {
        match self.starts.get(s as usize..s as usize + 2) {
            Some(&[from, to]) => from as usize..to as usize,
            _ => 0..self.slots.len(),
        }
    }
}

impl<D> Deferred<D> {
    /// Runs for a spacing of `steps` phase steps per interval.
    pub fn new(steps: u32) -> Self {
        Self {
            steps: steps.max(1),
            step_of: SweepStep::new(steps),
            runs: VecDeque::new(),
            owing: SlotBits::default(),
            bytes: 0,
            last: Sorted::default(),
        }
    }

    /// Whether nothing is owed to anyone.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// What the runs hold, as the memory budget counts it: their frames once and their slot
    /// lists.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether slot `idx` is owed a run.
    pub fn owes(&self, idx: u32) -> bool {
        self.owing.get(idx)
    }

    /// Runs kept.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Deliveries owed (recipients times messages, over every run).
    pub fn owed(&self) -> usize {
        self.runs.iter().map(|r| r.owed * r.msgs.len()).sum()
    }

    /// Keep `msgs` (`share`: their frames' bytes) for the held recipients `held` (slab
    /// slots, each listed once); `swept`: the spacing's sweep count now.
    pub fn defer(&mut self, msgs: Vec<D>, share: usize, held: &[u32], swept: u64) {
        if held.is_empty() || msgs.is_empty() {
            return;
        }
        if held.len() <= SCAN {
            for &idx in held {
                self.owing.set(idx);
            }
            self.keep(Run {
                msgs,
                slots: held.to_vec(),
                starts: Vec::new(),
                owed: held.len(),
                share,
                made: swept,
            });
            return;
        }
        if self.last.held != held {
            self.sort(held);
        }
        self.owing.union(&self.last.bits);
        let (slots, starts) = (self.last.slots.clone(), self.last.starts.clone());
        self.keep(Run {
            msgs,
            slots,
            starts,
            owed: held.len(),
            share,
            made: swept,
        });
    }

    /// Group `held` by step into [`Deferred::last`], keeping it as the list sorted: a
    /// counting sort, each step's recipients in the order of `held`.
    fn sort(&mut self, held: &[u32]) {
        let n = self.steps as usize;
        let Sorted {
            held: last,
            slots,
            starts,
            bits,
        } = &mut self.last;
        last.clear();
        last.extend_from_slice(held);
        bits.clear_all();
        starts.clear();
        starts.resize(n + 1, 0);
        for &idx in held {
            bits.set(idx);
            starts[self.step_of.of(idx) as usize + 1] += 1;
        }
        for s in 0..n {
            starts[s + 1] += starts[s];
        }
        let mut next = starts.clone();
        slots.clear();
        slots.resize(held.len(), TAKEN);
        for &idx in held {
            let s = self.step_of.of(idx) as usize;
            slots[next[s] as usize] = idx;
            next[s] += 1;
        }
    }

    fn keep(&mut self, run: Run<D>) {
        self.bytes += run.bytes();
        self.runs.push_back(run);
    }

    /// Step `step` came: append an [`Owed`] for every recipient of that step that is owed a
    /// run, each slot's runs oldest first, and mark them taken. Run numbers index
    /// [`Deferred::msgs`] until the next change.
    ///
    /// Consecutive runs with the same recipients at this step (a topic's messages, published
    /// one after another) are given slot by slot, each slot once with all of them —
    /// `(a, k..k+2), (b, k..k+2)` — so the caller visits each recipient once for all of
    /// them; other runs recipient by recipient in run order.
    pub fn take_step(&mut self, step: u32, out: &mut Vec<Owed>) {
        if step >= self.steps {
            return;
        }
        let step_of = self.step_of;
        let from = out.len();
        let mut k = 0;
        while k < self.runs.len() {
            // Runs k..end have run k's recipients at this step (one run when none agree;
            // several only when indexed). An indexed run's range holds this step's slots
            // only; a scanned run's slots are of every step: the step is checked.
            let end = self.same_recipients(k, step);
            let range = self.runs[k].step(step);
            let indexed = !self.runs[k].starts.is_empty();
            let due = |slot: u32| slot != TAKEN && (indexed || step_of.of(slot) == step);
            for &slot in &self.runs[k].slots[range] {
                if due(slot) {
                    out.push(Owed::new(slot, k..end));
                }
            }
            // Each run's own range: alike at this step, runs may differ before it.
            for run in self.runs.range_mut(k..end) {
                let range = run.step(step);
                for slot in &mut run.slots[range] {
                    if due(*slot) {
                        *slot = TAKEN;
                        run.owed -= 1;
                    }
                }
            }
            k = end;
        }
        // Every run's share of this step was taken: its slots are owed nothing more.
        for o in &out[from..] {
            self.owing.clear(o.slot);
        }
    }

    /// The end of the runs from `k` on whose recipients at `step` are run `k`'s (indexed
    /// runs only: a scanned run's slots are of every step); `k + 1` when none.
    fn same_recipients(&self, k: usize, step: u32) -> usize {
        let first = &self.runs[k];
        let range = first.step(step);
        if first.starts.is_empty() || range.is_empty() {
            return k + 1;
        }
        let mine = &first.slots[range];
        let mut end = k + 1;
        while let Some(next) = self.runs.get(end) {
            if next.starts.is_empty() || next.slots[next.step(step)] != *mine {
                break;
            }
            end += 1;
        }
        end
    }

    /// Slot `idx` takes what it is owed now (its hold ended early, or something that must
    /// follow is offered to it): append the runs, oldest first, and mark them taken.
    pub fn take_slot(&mut self, idx: u32, out: &mut Vec<usize>) {
        if !self.owes(idx) {
            return;
        }
        self.owing.clear(idx);
        let step = self.step_of.of(idx);
        for (k, run) in self.runs.iter_mut().enumerate() {
            let range = run.step(step);
            if let Some(slot) = run.slots[range].iter_mut().find(|s| **s == idx) {
                *slot = TAKEN;
                run.owed -= 1;
                out.push(k);
            }
        }
    }

    /// Everyone takes what they are owed now: append an [`Owed`] of one run for each slot
    /// of each run, oldest run first, and mark them taken.
    pub fn take_all(&mut self, out: &mut Vec<Owed>) {
        for (k, run) in self.runs.iter_mut().enumerate() {
            for slot in &mut run.slots {
                if *slot != TAKEN {
                    out.push(Owed::new(*slot, k..k + 1));
                    *slot = TAKEN;
                }
            }
            run.owed = 0;
        }
        self.owing.clear_all();
    }

    /// Slot `idx` was released: nothing deferred before is owed to whoever takes it next.
    pub fn forget(&mut self, idx: u32) {
        let mut scratch = Vec::new();
        self.take_slot(idx, &mut scratch);
    }

    /// The messages of run `k` (as numbered by the last take).
    pub fn msgs(&self, k: usize) -> &[D] {
        &self.runs[k].msgs
    }

    /// Drop the runs every recipient took and those whose every step has come (`swept`:
    /// the spacing's sweep count now). Run numbers from earlier takes are void after this.
    pub fn expire(&mut self, swept: u64) {
        let steps = u64::from(self.steps);
        let bytes = &mut self.bytes;
        self.runs.retain(|r| {
            let keep = r.owed > 0 && swept < r.made.saturating_add(steps);
            if !keep {
                *bytes -= r.bytes();
            }
            keep
        });
        if self.runs.is_empty() {
            debug_assert_eq!(self.bytes, 0);
            // A safety net: every slot is taken at its step before its run expires, so no
            // bit should be left.
            self.owing.clear_all();
            self.last = Sorted::default();
            if self.runs.capacity() > 64 {
                self.runs.shrink_to(64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_to_the_last_runs_recipients_is_grouped_as_a_sort_would_group_it() {
        // Recipients past the one-by-one region (4 steps: slot 256 on), in two lists that
        // alternate, each deferred twice in a row: copied grouping, then sorted anew.
        let a: Vec<u32> = (200..900).collect();
        let b: Vec<u32> = (200..900).rev().filter(|i| i % 3 != 0).collect();
        let lists = [&a, &a, &b, &b, &a];
        let mut d = Deferred::new(4);
        for (k, held) in lists.iter().enumerate() {
            d.defer(vec![k], 10, held, 0);
        }
        for step in 0..4 {
            let mut out = Vec::new();
            d.take_step(step, &mut out);
            // Each list alone, sorted by a fresh deferral: what each run must hold.
            let mut want = Vec::new();
            for (k, held) in lists.iter().enumerate() {
                let mut one = Deferred::new(4);
                one.defer(vec![k], 10, held, 0);
                let mut got = Vec::new();
                one.take_step(step, &mut got);
                want.extend(pairs(&got).into_iter().map(|(slot, _)| (slot, k)));
            }
            let mut got = pairs(&out);
            got.sort_unstable_by_key(|&(slot, k)| (k, slot));
            want.sort_unstable_by_key(|&(slot, k)| (k, slot));
            assert_eq!(got, want, "step {step}");
        }
        assert_eq!(d.owed(), 0);
        d.expire(4);
        assert!(
            d.is_empty() && d.last.held.is_empty(),
            "the kept sort is freed with the runs"
        );
    }

    /// `(slot, run)` for each run each entry lists, in order.
    fn pairs(out: &[Owed]) -> Vec<(u32, usize)> {
        out.iter()
            .flat_map(|o| o.runs().map(move |k| (o.slot, k)))
            .collect()
    }

    fn runs_of(out: &[Owed], d: &Deferred<char>) -> Vec<(u32, Vec<char>)> {
        pairs(out)
            .into_iter()
            .map(|(s, k)| (s, d.msgs(k).to_vec()))
            .collect()
    }

    #[test]
    fn each_held_recipient_takes_each_run_at_its_step_in_order() {
        // Four steps: slots 1 and 5 share step 1, slot 2 is step 2.
        let mut d = Deferred::new(4);
        d.defer(vec!['a', 'b'], 10, &[5, 2, 1], 0);
        d.defer(vec!['c'], 10, &[1, 2], 0);
        assert_eq!((d.runs(), d.owed()), (2, 2 * 3 + 2));
        let mut out = Vec::new();
        d.take_step(0, &mut out);
        assert!(out.is_empty(), "nobody's phase is step 0");
        d.take_step(1, &mut out);
        assert_eq!(
            runs_of(&out, &d),
            [(5, vec!['a', 'b']), (1, vec!['a', 'b']), (1, vec!['c'])]
        );
        out.clear();
        d.take_step(1, &mut out);
        assert!(out.is_empty(), "taken once");
        d.take_step(2, &mut out);
        assert_eq!(runs_of(&out, &d), [(2, vec!['a', 'b']), (2, vec!['c'])]);
        assert_eq!(d.owed(), 0);
        d.expire(1);
        assert!(d.is_empty(), "a run everyone took goes at once");
    }

    #[test]
    fn a_run_to_many_is_indexed_by_step_and_a_run_to_few_scanned_alike() {
        let mut d = Deferred::new(4);
        // The first 256 slots take the steps one by one, those past them in runs of 64
        // (`SweepStep`): both kinds, highest first.
        let many: Vec<u32> = (0..600).rev().collect();
        let step_of = |i: u32| SweepStep::new(4).of(i);
        assert_eq!(
            (step_of(6), step_of(255), step_of(256), step_of(383)),
            (2, 3, 0, 1)
        );
        d.defer(vec!['a'], 10, &many, 0);
        d.defer(vec!['b'], 10, &[6, 3, 2, 330], 0);
        assert_eq!(d.owed(), 604);
        for step in 0..4 {
            let mut out = Vec::new();
            d.take_step(step, &mut out);
            let want_a = many
                .iter()
                .filter(|&&i| step_of(i) == step)
                .map(|&i| (i, 0));
            let want_b = [6, 3, 2, 330]
                .into_iter()
                .filter(|&i| step_of(i) == step)
                .map(|i| (i, 1));
            let want: Vec<_> = want_a.chain(want_b).collect();
            assert_eq!(pairs(&out), want, "step {step}");
        }
        assert_eq!(d.owed(), 0);
    }

    #[test]
    fn runs_to_the_same_recipients_are_taken_slot_by_slot() {
        let mut d = Deferred::new(2);
        let topic: Vec<u32> = (0..40).collect();
        let other: Vec<u32> = (0..40).rev().collect();
        d.defer(vec!['a'], 10, &topic, 0);
        d.defer(vec!['b'], 10, &topic, 0);
        d.defer(vec!['c'], 10, &other, 0);
        d.defer(vec!['d'], 10, &topic, 0);
        d.defer(vec!['e'], 10, &topic, 0);
        // Slot 4 takes its runs early: 'd' and 'e' still agree with each other, not with 'c'.
        let mut early = Vec::new();
        d.take_slot(4, &mut early);
        assert_eq!(early, [0, 1, 2, 3, 4]);
        let mut out = Vec::new();
        d.take_step(0, &mut out);
        let evens = |v: &[u32]| {
            v.iter()
                .copied()
                .filter(|i| i % 2 == 0 && *i != 4)
                .collect::<Vec<_>>()
        };
        let mut want: Vec<(u32, usize)> = Vec::new();
        // 'a' and 'b' slot by slot, then 'c' alone (its order), then 'd' and 'e'.
        want.extend(evens(&topic).into_iter().flat_map(|i| [(i, 0), (i, 1)]));
        want.extend(evens(&other).into_iter().map(|i| (i, 2)));
        want.extend(evens(&topic).into_iter().flat_map(|i| [(i, 3), (i, 4)]));
        assert_eq!(pairs(&out), want);
        // Listed once for the runs that agree: 'a' and 'b' together, 'd' and 'e' together.
        assert_eq!(out.len(), 3 * evens(&topic).len());
        assert!(!d.owes(0) && !d.owes(4) && d.owes(1));
        assert_eq!(d.owed(), 5 * 20, "the odd step is still owed everything");
        out.clear();
        d.take_step(1, &mut out);
        let taken = pairs(&out);
        assert_eq!(taken.len(), 5 * 20);
        assert!(taken
            .chunk_by(|a, b| a.0 == b.0)
            .all(|c| c.iter().map(|e| e.1).is_sorted()));
        assert_eq!(d.owed(), 0);
    }

    #[test]
    fn runs_alike_at_a_step_but_not_before_it_are_each_taken_once() {
        // Two steps. At step 1 both runs hold the odd slots; at step 0 the second lacks
        // slot 0 (a subscriber left between the messages), so its step 1 starts earlier.
        let mut d = Deferred::new(2);
        let all: Vec<u32> = (0..40).collect();
        let fewer: Vec<u32> = (1..40).collect();
        d.defer(vec!['a'], 10, &all, 0);
        d.defer(vec!['b'], 10, &fewer, 0);
        let mut out = Vec::new();
        d.take_step(1, &mut out);
        let odd: Vec<(u32, usize)> = (0..40)
            .filter(|i| i % 2 == 1)
            .flat_map(|i| [(i, 0), (i, 1)])
            .collect();
        assert_eq!(pairs(&out), odd);
        assert_eq!(out.len(), 20, "each odd slot once, for both runs");
        assert_eq!(d.owed(), 20 + 19, "step 0 only");
        out.clear();
        d.take_all(&mut out);
        assert!(out.iter().all(|o| o.slot % 2 == 0), "{out:?}");
        assert_eq!(out.len(), 20 + 19);
    }

    #[test]
    fn a_slot_whose_hold_ends_early_takes_its_runs_once_and_a_released_one_none() {
        let mut d = Deferred::new(4);
        d.defer(vec!['a'], 10, &[1, 5, 9], 0);
        d.defer(vec!['b'], 10, &[5, 9], 0);
        d.defer(vec!['c'], 10, &[1], 0);
        let mut runs = Vec::new();
        d.take_slot(5, &mut runs);
        assert_eq!(runs.iter().map(|&k| d.msgs(k)[0]).collect::<String>(), "ab");
        runs.clear();
        d.take_slot(5, &mut runs);
        assert!(runs.is_empty(), "taken once");
        d.forget(9);
        let mut out = Vec::new();
        d.take_step(1, &mut out);
        assert_eq!(
            runs_of(&out, &d),
            [(1, vec!['a']), (1, vec!['c'])],
            "5 took its runs early; 9 was released"
        );
    }

    #[test]
    fn bytes_count_each_runs_frames_once_and_its_slots_until_it_is_dropped() {
        let mut d = Deferred::new(4);
        let many: Vec<u32> = (0..40).collect();
        d.defer(vec!['a', 'b'], 100, &many, 0);
        d.defer(vec!['c'], 7, &[1, 2], 0);
        let (ab, c) = (100 + (40 + 5) * 4, 7 + 2 * 4);
        assert_eq!(d.bytes(), ab + c);
        let mut out = Vec::new();
        d.take_step(1, &mut out);
        d.take_step(2, &mut out);
        d.expire(0);
        assert_eq!(d.bytes(), ab, "'c' was taken by all: dropped");
        out.clear();
        d.take_all(&mut out);
        d.expire(0);
        assert_eq!((d.bytes(), d.runs()), (0, 0));
        // A run nobody took is dropped whole once its steps have come.
        d.defer(vec!['e'], 9, &[3], 3);
        d.expire(6);
        assert_eq!(d.bytes(), 9 + 4);
        d.expire(7);
        assert_eq!(d.bytes(), 0);
    }

    #[test]
    fn take_all_gives_everyone_their_runs_in_order() {
        let mut d = Deferred::new(3);
        d.defer(vec!['a'], 10, &[0, 1, 2], 0);
        d.defer(vec!['b'], 10, &[1], 0);
        let mut out = Vec::new();
        d.take_all(&mut out);
        let mut got = runs_of(&out, &d);
        got.sort_by_key(|(s, _)| *s); // stable: each slot's runs stay in order
        assert_eq!(
            got,
            [
                (0, vec!['a']),
                (1, vec!['a']),
                (1, vec!['b']),
                (2, vec!['a'])
            ]
        );
        assert_eq!(d.owed(), 0);
        d.expire(0);
        assert!(d.is_empty());
    }

    #[test]
    fn a_run_lasts_until_every_step_has_come_since_it_was_deferred() {
        let mut d = Deferred::new(4);
        // Deferred at sweep 10; slot 3 never takes it (its hold ended with the connection
        // leaving Open, which owes it nothing useful): dropped at sweep 14.
        d.defer(vec!['a'], 10, &[3], 10);
        d.expire(13);
        assert_eq!(d.runs(), 1);
        d.expire(14);
        assert!(d.is_empty());
        // Nothing held, nothing kept.
        d.defer(vec!['b'], 10, &[], 14);
        d.defer(Vec::new(), 10, &[1], 14);
        assert!(d.is_empty());
    }
}
