//! The event JSON of replayed frames, kept per worker so that every event stream and long
//! poll resuming from a topic's history does not convert the same frames again.
//!
//! A long poll resumes on every poll (one answer per connection), and a drain or a network
//! blip sends thousands of event streams back with `Last-Event-ID` at once: each resume
//! replays the frames after its cursor, and a binary frame's event form is a base64 JSON
//! object (an allocation, an encoding and a serialisation). Live deliveries already carry
//! their conversion with the queued message ([`super::pubsub::EventJson`]); this is the
//! same for the history.
//!
//! Entries are found by the frame's allocation and hold a reference to it, so the address
//! cannot be reused by another frame while its entry lives. Bounded by count and bytes;
//! the oldest entry goes first. Sans-IO.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use super::pubsub::EventJson;

/// Entries kept at most (a topic's replay window is 1,024 messages by default).
pub(super) const MAX_ENTRIES: usize = 4096;
/// Frame bytes plus converted bytes kept at most (estimated at insertion as twice the
/// frame and an object's fields).
pub(super) const MAX_BYTES: usize = 8 << 20;

/// Converted history frames by frame identity, oldest first out.
#[derive(Debug, Default)]
pub(super) struct ReplayJson {
    map: HashMap<usize, Entry>,
    order: VecDeque<usize>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    /// Keeps the allocation (and so the key) the frame's own.
    _frame: Arc<[u8]>,
    json: Rc<EventJson>,
    cost: usize,
}

fn key(frame: &Arc<[u8]>) -> usize {
    Arc::as_ptr(frame).cast::<u8>() as usize
}

impl ReplayJson {
    /// The conversion cell of `frame`: the one already kept, or a new empty one (filled by
    /// the first recipient that needs it).
    pub(super) fn cell(&mut self, frame: &Arc<[u8]>) -> Rc<EventJson> {
        let k = key(frame);
        if let Some(e) = self.map.get(&k) {
            return e.json.clone();
        }
        let cost = 2 * frame.len() + 128;
        let json = Rc::new(EventJson::new());
        if cost > MAX_BYTES {
            // Too large to keep: converted for this resume only, nothing evicted for it.
            return json;
        }
        while self.map.len() >= MAX_ENTRIES || self.bytes + cost > MAX_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.map.remove(&old) {
                self.bytes -= old.cost;
            }
        }
        let entry = Entry {
            _frame: frame.clone(),
            json: json.clone(),
            cost,
        };
        self.map.insert(k, entry);
        self.order.push_back(k);
        self.bytes += cost;
        json
    }

    /// Entries kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes accounted to the entries kept.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize, fill: u8) -> Arc<[u8]> {
        vec![fill; n].into()
    }

    #[test]
    fn the_same_frame_shares_one_cell_and_an_equal_copy_does_not() {
        let mut c = ReplayJson::default();
        let a = frame(10, b'a');
        let b = frame(10, b'a');
        let ca = c.cell(&a);
        ca.get_or_init(|| Some(b"A".to_vec().into()));
        assert!(
            Rc::ptr_eq(&ca, &c.cell(&a.clone())),
            "same allocation, same cell"
        );
        let cb = c.cell(&b);
        assert!(
            cb.get().is_none(),
            "equal bytes in another frame: a cell of its own"
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn an_entry_keeps_its_frame_alive_so_its_address_is_not_reused() {
        let mut c = ReplayJson::default();
        let a = frame(64, 1);
        let weak = Arc::downgrade(&a);
        c.cell(&a).get_or_init(|| Some(b"one".to_vec().into()));
        drop(a);
        assert!(weak.upgrade().is_some(), "held by the entry");
        // A new frame cannot take the old address while the entry holds it.
        let fresh = frame(64, 2);
        assert!(c.cell(&fresh).get().is_none());
    }

    #[test]
    fn it_is_bounded_by_count_and_bytes_oldest_out() {
        let mut c = ReplayJson::default();
        let frames: Vec<_> = (0..MAX_ENTRIES + 10).map(|_| frame(8, 0)).collect();
        for f in &frames {
            c.cell(f).get_or_init(|| None);
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        assert!(c.cell(&frames[0]).get().is_none(), "the oldest went");
        assert!(
            c.cell(&frames[MAX_ENTRIES + 9]).get().is_some(),
            "the newest stayed"
        );
        let mut c = ReplayJson::default();
        let big: Vec<_> = (0..40).map(|_| frame(1 << 20, 0)).collect();
        for f in &big {
            c.cell(f);
            assert!(c.bytes() <= MAX_BYTES, "{}", c.bytes());
        }
        assert!(c.len() < 40 && !c.is_empty());
        // A frame too large to keep gets a cell all the same, and nothing is evicted for it.
        let before = c.len();
        let huge = frame(MAX_BYTES, 0);
        assert!(c.cell(&huge).get().is_none());
        assert_eq!(c.len(), before);
    }
}
