//! Per-topic sequence numbers and the replay window: the last messages of a topic, bounded
//! in count and bytes, so a client that reconnects with the last sequence number it saw gets
//! what it missed — in order, without duplicates — or an explicit gap.

use std::collections::VecDeque;
use std::sync::Arc;

/// One topic's sequence counter and replay window.
#[derive(Debug)]
pub struct Replay {
    frames: VecDeque<(u64, Arc<[u8]>)>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    last: u64,
}

/// Where a client resumes a topic: the last sequence number it saw and, when it knows it,
/// the epoch that number belongs to (`subscribed` replies carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The last sequence number seen.
    pub seq: u64,
    /// Its epoch; `None` from clients that do not send one (the number is taken as is).
    pub epoch: Option<u64>,
}

impl Position {
    /// A position without an epoch.
    pub const fn at(seq: u64) -> Self {
        Self { seq, epoch: None }
    }
}

/// An epoch as it is written on the wire: 16 lowercase hex digits.
pub fn format_epoch(e: u64) -> String {
    format!("{e:016x}")
}

/// An epoch from the wire (1 to 16 hex digits).
pub fn parse_epoch(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// What a resuming client is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Messages it can no longer get: `(from, to)` inclusive, if any.
    pub gap: Option<(u64, u64)>,
    /// The frames it missed that the window still holds with their numbers, oldest first.
    pub frames: Vec<(u64, Arc<[u8]>)>,
    /// The newest sequence number: live delivery continues after it.
    pub last: u64,
    /// Whether everything after the resume point is in `frames`: false when part of it is
    /// lost (a gap), when the point is beyond the newest number, or when it belongs to
    /// another epoch of the topic (then nothing is replayed: the client must reset).
    pub recovered: bool,
}

impl Replay {
    /// An empty topic whose window holds at most `max_messages` messages and `max_bytes`
    /// bytes of frames (the newest message is always kept, whatever its size).
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            max_messages,
            max_bytes,
            last: 0,
        }
    }

    /// The sequence number the next message gets (numbers start at 1).
    pub fn next_seq(&self) -> u64 {
        self.last + 1
    }

    /// The window, oldest first.
    pub fn frames(&self) -> impl Iterator<Item = &(u64, Arc<[u8]>)> {
        self.frames.iter()
    }

    /// The newest sequence number (0: nothing published yet).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Record message `next_seq()`'s frame, evicting the oldest beyond the bounds.
    pub fn push(&mut self, frame: Arc<[u8]>) -> u64 {
        self.push_at(self.last + 1, frame)
    }

    /// Record message `seq`'s frame (numbered elsewhere: a backplane), `seq` > the newest.
    /// Numbers skipped are lost: the window restarts at `seq`, so it always holds
    /// consecutive numbers (a resume from before `seq` reports a gap).
    pub fn push_at(&mut self, seq: u64, frame: Arc<[u8]>) -> u64 {
        debug_assert!(seq > self.last);
        if seq > self.last + 1 {
            self.restart(seq - 1);
        }
        self.last = seq;
        self.bytes += frame.len();
        self.frames.push_back((self.last, frame));
        while self.frames.len() > 1
            && (self.frames.len() > self.max_messages || self.bytes > self.max_bytes)
        {
            if let Some((_, old)) = self.frames.pop_front() {
                self.bytes -= old.len();
            }
        }
        if self.max_messages == 0 {
            // A topic without replay keeps nothing.
            self.frames.clear();
            self.bytes = 0;
        }
        self.last
    }

    /// Forget every message and continue numbering after `last` (a new epoch, or history
    /// that starts later than this window); returns the bytes freed.
    pub fn restart(&mut self, last: u64) -> (usize, usize) {
        let held = self.held();
        self.frames.clear();
        self.bytes = 0;
        self.last = last;
        held
    }

    /// The oldest message held, if any.
    pub fn oldest(&self) -> Option<u64> {
        self.frames.front().map(|(s, _)| *s)
    }

    /// Drop the oldest message held (the process-wide replay budget evicts this way);
    /// returns its frame's bytes.
    pub fn pop_oldest(&mut self) -> usize {
        let n = self.frames.pop_front().map_or(0, |(_, f)| f.len());
        self.bytes -= n;
        n
    }

    /// What a client that last saw `last_seen` is owed.
    pub fn resume(&self, last_seen: u64) -> Resume {
        // Saturating: a client may send any u64 (`resume=T:18446744073709551615`).
        let after = last_seen.saturating_add(1);
        let oldest = self.frames.front().map_or(self.last + 1, |(s, _)| *s);
        let gap =
            (after < oldest && last_seen < self.last).then(|| (after, (oldest - 1).min(self.last)));
        // The window's numbers ascend: the owed part starts where they pass `last_seen`,
        // found in O(log n) rather than by walking a full window (1,024 messages) for
        // every poll, which owes a handful.
        let start = self.frames.partition_point(|(s, _)| *s <= last_seen);
        let frames = self.frames.range(start..).cloned().collect();
        Resume {
            recovered: gap.is_none() && last_seen <= self.last,
            gap,
            frames,
            last: self.last,
        }
    }

    /// Frames held and their bytes.
    pub fn held(&self) -> (usize, usize) {
        (self.frames.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_resume_point_at_the_top_of_the_range_owes_nothing_and_does_not_overflow() {
        let mut r = Replay::new(8, 1 << 20);
        r.push(Arc::from(&b"x"[..]));
        let owed = r.resume(u64::MAX);
        assert_eq!((owed.gap, owed.frames.len(), owed.last), (None, 0, 1));
        assert!(
            !owed.recovered,
            "a point beyond the newest number is not recovered"
        );
    }

    fn f(n: usize) -> Arc<[u8]> {
        vec![0u8; n].into()
    }

    #[test]
    fn window_is_bounded_by_count_and_bytes() {
        let mut r = Replay::new(3, 100);
        for _ in 0..5 {
            r.push(f(10));
        }
        assert_eq!(r.held(), (3, 30));
        r.push(f(90));
        assert_eq!(r.held(), (2, 100)); // 10 + 90
        r.push(f(500));
        assert_eq!(r.held(), (1, 500)); // the newest stays whatever its size
        assert_eq!(r.last(), 7);
        assert_eq!(r.next_seq(), 8);
    }

    #[test]
    fn resume_in_window_gap_before_it_and_nothing_when_current() {
        let mut r = Replay::new(3, 1 << 20);
        for n in 1..=6 {
            r.push(f(n));
        }
        // Window holds 4, 5, 6.
        let x = r.resume(4);
        assert_eq!((x.gap, x.frames.len(), x.last), (None, 2, 6));
        assert!(x.recovered);
        assert_eq!((x.frames[0].0, x.frames[0].1.len()), (5, 5));
        let x = r.resume(1);
        assert_eq!((x.gap, x.frames.len()), (Some((2, 3)), 3));
        assert!(!x.recovered, "a gap: not everything was recovered");
        // Evicting by the budget takes the oldest first, and a later resume names it.
        let mut e = Replay::new(3, 1 << 20);
        for n in 1..=3 {
            e.push(f(n));
        }
        assert_eq!((e.pop_oldest(), e.oldest(), e.held()), (1, Some(2), (2, 5)));
        assert_eq!(e.resume(0).gap, Some((1, 1)));
        let x = r.resume(6);
        assert_eq!((x.gap, x.frames.len()), (None, 0));
        let x = r.resume(99); // from the future (another node's numbers): nothing owed
        assert_eq!((x.gap, x.frames.len(), x.recovered), (None, 0, false));
        let empty = Replay::new(3, 100);
        assert_eq!(empty.resume(0).gap, None);
        let mut none = Replay::new(0, 100);
        none.push(f(1));
        none.push(f(1));
        assert_eq!(none.resume(0).gap, Some((1, 2)));
    }

    proptest! {
        /// Whatever the bounds and the point of resumption: gap ∪ frames covers exactly
        /// last_seen+1 ..= last, in order, each number once.
        #[test]
        fn resume_covers_every_missed_number_once(
            sizes in proptest::collection::vec(1usize..50, 0..60),
            max_messages in 0usize..10,
            max_bytes in 1usize..200,
            seen in 0u64..70,
        ) {
            let mut r = Replay::new(max_messages, max_bytes);
            for (i, n) in sizes.iter().enumerate() {
                // Frame content = its sequence number, so replayed frames identify themselves.
                let mut v = vec![0u8; (*n).max(8)];
                v[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                r.push(v.into());
            }
            let x = r.resume(seen);
            let mut got: Vec<u64> = Vec::new();
            if let Some((a, b)) = x.gap {
                got.extend(a..=b);
            }
            for (seq, fr) in &x.frames {
                let inside = u64::from_be_bytes(fr[..8].try_into().unwrap());
                prop_assert_eq!(*seq, inside);
                got.push(inside);
            }
            let want: Vec<u64> = (seen + 1..=r.last()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
