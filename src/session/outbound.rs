//! A connection's output queue: chunks of owned bytes, shared published frames (encoded
//! once, sent to every subscriber from the same allocation) and gap markers, with the
//! byte accounting the outbound cap and the slow-consumer policies act on.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::io::SendBuf;

/// One piece of a connection's output.
#[derive(Debug)]
pub enum Chunk {
    /// Bytes encoded for this connection alone (handshake answers, echoes, pongs, replies).
    Owned(Vec<u8>),
    /// A published message's frame, encoded once and shared by every recipient: sent from
    /// the shared allocation, never copied. `topic`/`seq` let the drop policy find it.
    Shared {
        /// The complete frame.
        frame: Arc<[u8]>,
        /// The topic's hub id.
        topic: u64,
        /// Its sequence number.
        seq: u64,
    },
    /// Messages `from..=to` of `topic` were dropped for this slow consumer; encoded as a gap
    /// frame when it reaches the front (consecutive drops extend it, so it stays one chunk).
    Gap {
        /// The topic's hub id.
        topic: u64,
        /// First dropped sequence number.
        from: u64,
        /// Last dropped sequence number.
        to: u64,
    },
}

impl Chunk {
    /// Its bytes (a gap has none until encoded).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared { frame, .. } => frame,
            Self::Gap { .. } => &[],
        }
    }
}

/// Bytes waiting to be sent, oldest first, and the size of the send in flight (whose
/// buffer the ring holds until it completes).
#[derive(Debug, Default)]
pub struct Outbound {
    /// Chunks queued behind the send in flight, oldest first.
    pub queue: VecDeque<Chunk>,
    /// Bytes in `queue`.
    pub queued_bytes: usize,
    /// Bytes of the send in flight (0: none).
    pub inflight_bytes: usize,
    /// An emptied owned buffer kept for the next owned chunk.
    pub spare: Vec<u8>,
}

/// Room a queue starts with when a shared frame creates it.
const QUEUE_START: usize = 8;

/// Queued chunks are gathered into one send up to this many bytes.
pub const GATHER_BYTES: usize = 64 * 1024;

/// Emptied queues a thread keeps for reuse, at most ([`Outbound::boxed`]).
const POOL_MAX: usize = 512;

/// A kept queue keeps a gather buffer up to this size and room for this many chunks; more is
/// freed (a held subscriber's send at 18k × 120/s gathers ~2.5 KB).
const POOL_SPARE: usize = 4096;
const POOL_CHUNKS: usize = 2 * QUEUE_START;

/// Emptied queues kept by this thread (a worker), and how many were taken since the last
/// trim.
struct Pool {
    // The boxes are what is reused: a session holds its queue boxed (40 bytes while idle).
    #[allow(clippy::vec_box)]
    free: Vec<Box<Outbound>>,
    taken: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            free: Vec::new(),
            taken: 0,
        })
    };
}

/// What [`Outbound::drop_oldest`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Messages removed.
    pub messages: u64,
    /// Bytes freed.
    pub bytes: usize,
}

impl Outbound {
    /// An empty queue: one this thread emptied lately when it kept one, else a new one.
    ///
    /// A subscriber held by spaced sends empties its queue at every send's completion and
    /// fills it again at its next phase; a box, its chunks' room and its gather buffer taken
    /// from the pool save three allocations and three frees per send (3% of a fan-out
    /// worker's samples at 18k subscribers × 120/s). What the pool holds is bounded
    /// ([`POOL_MAX`] queues of at most [`POOL_SPARE`] bytes each) and follows the load:
    /// [`Outbound::trim_pool`] frees what the last tick did not need.
    pub fn boxed() -> Box<Self> {
        let kept = POOL.with_borrow_mut(|p| {
            p.taken += 1;
            p.free.pop()
        });
        kept.unwrap_or_default()
    }

    /// Give back a queue that is empty (nothing queued, nothing in flight) for reuse by
    /// [`Outbound::boxed`]; anything else is dropped.
    pub fn recycle(mut out: Box<Self>) {
        if !out.is_empty() {
            return;
        }
        out.queued_bytes = 0;
        // Nothing of one connection's output may reach the next one to take this queue.
        out.spare.clear();
        if out.queue.capacity() > POOL_CHUNKS {
            out.queue = VecDeque::new();
        }
        if out.spare.capacity() > POOL_SPARE {
            out.spare = Vec::new();
        }
        POOL.with_borrow_mut(|p| {
            if p.free.len() < POOL_MAX {
                p.free.push(out);
            }
        });
    }

    /// Once a tick: keep as many queues as were taken since the last trim and free the
    /// rest, so an idle worker holds none. Returns how many are kept.
    pub fn trim_pool() -> usize {
        POOL.with_borrow_mut(|p| {
            p.free.truncate(p.taken);
            p.taken = 0;
            p.free.len()
        })
    }

    /// Bytes not yet sent (the send in flight included).
    pub fn queued(&self) -> usize {
        self.inflight_bytes + self.queued_bytes
    }

    /// Whether nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight_bytes == 0 && self.queue.is_empty()
    }

    /// What it holds under the memory budget, in O(1): the bytes not yet sent (a shared
    /// frame counted for each holder: conservative) and the queue's own slots.
    pub fn budget_bytes(&self) -> usize {
        self.queued() + self.queue.capacity() * std::mem::size_of::<Chunk>() + self.spare.capacity()
    }

    /// Heap bytes held (shared frames count once per holder, as the allocation is shared).
    pub fn heap_bytes(&self) -> usize {
        let owned = |c: &Chunk| match c {
            Chunk::Owned(v) => v.capacity(),
            _ => 0,
        };
        self.queue.iter().map(owned).sum::<usize>()
            + self.queue.capacity() * std::mem::size_of::<Chunk>()
            + self.spare.capacity()
            + std::mem::size_of::<Self>()
    }

    /// Append bytes written by `write` (to the last owned chunk when there is one); returns
    /// how many.
    pub fn write_owned(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        if !matches!(self.queue.back(), Some(Chunk::Owned(_))) {
            let mut buf = std::mem::take(&mut self.spare);
            buf.clear();
            self.queue.push_back(Chunk::Owned(buf));
        }
        let Some(Chunk::Owned(v)) = self.queue.back_mut() else {
            unreachable!("an owned chunk was just ensured")
        };
        let before = v.len();
        write(v);
        let added = v.len() - before;
        self.queued_bytes += added;
        added
    }

    /// Queue a shared frame.
    pub fn push_shared(&mut self, frame: Arc<[u8]>, topic: u64, seq: u64) {
        self.queued_bytes += frame.len();
        if self.queue.capacity() == 0 {
            // A subscriber of a busy topic gathers several frames behind its send in
            // flight: start with room for a few rather than growing 4 → 8 → 16 by copies.
            self.queue.reserve_exact(QUEUE_START);
        }
        self.queue.push_back(Chunk::Shared { frame, topic, seq });
    }

    /// Record that messages `from..=to` of `topic` were dropped, extending a gap already at
    /// the back of the queue when it is for the same topic.
    pub fn push_gap(&mut self, topic: u64, from: u64, to: u64) {
        if let Some(Chunk::Gap {
            topic: t, to: end, ..
        }) = self.queue.back_mut()
        {
            if *t == topic {
                *end = (*end).max(to);
                return;
            }
        }
        self.queue.push_back(Chunk::Gap { topic, from, to });
    }

    /// Forget everything queued (not the send in flight).
    pub fn clear_queue(&mut self) {
        self.queue.clear();
        self.queued_bytes = 0;
    }

    /// Drop the oldest queued (not in-flight) messages of `topic` until `need` more bytes fit
    /// under `cap`, leaving one gap chunk where they were. Returns what was dropped.
    pub fn drop_oldest(&mut self, topic: u64, need: usize, cap: usize) -> Dropped {
        let mut dropped = Dropped {
            messages: 0,
            bytes: 0,
        };
        let mut range: Option<(u64, u64)> = None;
        let mut at = None;
        let mut i = 0;
        while i < self.queue.len() && self.queued() + need > cap {
            match &self.queue[i] {
                Chunk::Shared {
                    topic: t,
                    seq,
                    frame,
                } if *t == topic => {
                    let (seq, len) = (*seq, frame.len());
                    range = Some(range.map_or((seq, seq), |(a, b)| (a.min(seq), b.max(seq))));
                    at.get_or_insert(i);
                    self.queue.remove(i);
                    self.queued_bytes -= len;
                    dropped.messages += 1;
                    dropped.bytes += len;
                }
                Chunk::Gap { topic: t, from, to } if *t == topic => {
                    // Merge an older gap of the same topic into the one being built.
                    let (f, e) = (*from, *to);
                    range = Some(range.map_or((f, e), |(a, b)| (a.min(f), b.max(e))));
                    at.get_or_insert(i);
                    self.queue.remove(i);
                }
                _ => i += 1,
            }
        }
        if let (Some((from, to)), Some(at)) = (range, at) {
            self.queue.insert(at, Chunk::Gap { topic, from, to });
        }
        dropped
    }

    /// The next send, or None when nothing is left. A gap at the front is encoded by `gap`
    /// (or skipped when it gives nothing: the connection left the topic). A backlog of small
    /// frames is gathered into one owned buffer.
    pub fn next_send(
        &mut self,
        mut gap: impl FnMut(u64, u64, u64) -> Option<Arc<[u8]>>,
    ) -> Option<SendBuf> {
        debug_assert_eq!(self.inflight_bytes, 0, "one send at a time");
        let c = loop {
            let c = self.queue.pop_front()?;
            self.queued_bytes -= c.bytes().len();
            match c {
                Chunk::Gap { topic, from, to } => {
                    if let Some(frame) = gap(topic, from, to) {
                        break Chunk::Shared {
                            frame,
                            topic,
                            seq: to,
                        };
                    }
                }
                Chunk::Owned(ref v) if v.is_empty() => {}
                c => break c,
            }
        };
        let gather = c.bytes().len() < GATHER_BYTES
            && matches!(self.queue.front(), Some(n) if !matches!(n, Chunk::Gap { .. }));
        let buf = if gather {
            // A backlog of small frames (a subscriber behind on a busy topic): copy them into
            // one buffer and send them with one operation. A copy of a few dozen bytes costs
            // far less than a send each; an idle subscriber's single frame goes out uncopied.
            // Size the buffer once: growing it frame by frame cost a reallocation and a copy
            // of everything gathered so far per doubling (4% of a fan-out worker's samples).
            let mut want = c.bytes().len();
            for n in &self.queue {
                let len = n.bytes().len();
                if matches!(n, Chunk::Gap { .. }) || want + len > GATHER_BYTES {
                    break;
                }
                want += len;
            }
            let mut buf = match c {
                // Owned bytes are already at the front of their own buffer: extend it.
                Chunk::Owned(v) => v,
                c => {
                    let mut buf = std::mem::take(&mut self.spare);
                    buf.clear();
                    buf.reserve_exact(want);
                    buf.extend_from_slice(c.bytes());
                    buf
                }
            };
            buf.reserve_exact(want - buf.len());
            while let Some(n) = self.queue.front() {
                let len = n.bytes().len();
                if matches!(n, Chunk::Gap { .. }) || buf.len() + len > GATHER_BYTES {
                    break;
                }
                buf.extend_from_slice(n.bytes());
                self.queued_bytes -= len;
                if let Some(Chunk::Owned(mut v)) = self.queue.pop_front() {
                    if self.spare.capacity() == 0 {
                        // Its bytes were copied: the spare must come empty to the next
                        // owned write.
                        v.clear();
                        self.spare = v;
                    }
                }
            }
            SendBuf::Owned(buf)
        } else {
            match c {
                Chunk::Owned(v) => SendBuf::Owned(v),
                Chunk::Shared { frame, .. } => SendBuf::Shared(frame),
                Chunk::Gap { .. } => unreachable!("gaps were encoded above"),
            }
        };
        self.inflight_bytes = buf.bytes().len();
        Some(buf)
    }

    /// The send in flight completed; its buffer comes back (an owned one is kept for reuse).
    pub fn on_sent(&mut self, buf: SendBuf) {
        self.inflight_bytes = 0;
        if let SendBuf::Owned(mut v) = buf {
            if v.capacity() <= GATHER_BYTES && v.capacity() > self.spare.capacity() {
                v.clear();
                self.spare = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Arc<[u8]> {
        vec![0u8; n].into()
    }

    fn no_gap(_: u64, _: u64, _: u64) -> Option<Arc<[u8]>> {
        None
    }

    #[test]
    fn an_owned_chunk_kept_as_the_spare_after_a_gather_brings_none_of_its_bytes_back() {
        // A shared frame at the front, owned bytes behind it: the gather copies the owned
        // bytes and keeps their buffer as the spare; the next owned write must not send them
        // again.
        let mut o = Outbound::default();
        o.push_shared(frame(3), 1, 1);
        o.write_owned(|v| v.extend_from_slice(b"pong"));
        let first = o.next_send(no_gap).expect("a send");
        assert_eq!(first.bytes(), b"\0\0\0pong");
        assert!(o.spare.is_empty(), "the spare is kept empty");
        // Written while the first send is in flight (a pong, say).
        o.write_owned(|v| v.extend_from_slice(b"next"));
        o.on_sent(first);
        let second = o.next_send(no_gap).expect("a send");
        assert_eq!(second.bytes(), b"next", "nothing sent twice");
    }

    #[test]
    fn an_emptied_queue_is_reused_with_its_room_and_freed_when_a_tick_needed_none() {
        // This test's thread has a pool of its own.
        Outbound::trim_pool();
        assert_eq!(Outbound::trim_pool(), 0, "nothing taken: nothing kept");
        let mut o = Outbound::boxed();
        o.write_owned(|v| v.extend_from_slice(&[7; 1000]));
        let buf = o.next_send(no_gap).expect("a send");
        o.on_sent(buf);
        assert!(o.is_empty() && o.spare.capacity() >= 1000);
        let at = &*o as *const Outbound;
        Outbound::recycle(o);
        let again = Outbound::boxed();
        assert_eq!(&*again as *const Outbound, at, "the same box comes back");
        assert!(again.spare.capacity() >= 1000, "with its buffer");
        assert_eq!((again.queued(), again.queue.len()), (0, 0));
        // A queue with something in it is not kept.
        let mut busy = Outbound::boxed();
        busy.push_shared(frame(10), 1, 1);
        Outbound::recycle(busy);
        // A buffer above the pool's bound is freed, the box kept.
        let mut big = again;
        big.spare = Vec::with_capacity(POOL_SPARE + 1);
        Outbound::recycle(big);
        let back = Outbound::boxed();
        assert_eq!(back.spare.capacity(), 0);
        Outbound::recycle(back);
        // Four taken since the last trim: the one kept stays; the next tick, with none
        // taken, frees it.
        assert_eq!(Outbound::trim_pool(), 1);
        assert_eq!(Outbound::trim_pool(), 0);
    }

    #[test]
    fn owned_bytes_coalesce_and_shared_frames_queue_in_order() {
        let mut o = Outbound::default();
        assert_eq!(o.write_owned(|v| v.extend_from_slice(b"ab")), 2);
        o.write_owned(|v| v.extend_from_slice(b"cd"));
        o.push_shared(frame(10), 1, 5);
        o.write_owned(|v| v.push(b'e'));
        assert_eq!(o.queue.len(), 3, "two owned writes share a chunk");
        assert_eq!(o.queued(), 15);
        // A backlog is gathered into one send, in order.
        let sent = o.next_send(no_gap).unwrap();
        assert_eq!(sent.bytes().len(), 15);
        assert_eq!((&sent.bytes()[..4], sent.bytes()[14]), (&b"abcd"[..], b'e'));
        assert_eq!(o.queued(), 15, "the send in flight still counts");
        o.on_sent(sent);
        assert!(o.next_send(no_gap).is_none());
        assert_eq!(o.queued(), 0);
        // A lone shared frame goes out as itself, uncopied.
        let f = frame(10);
        o.push_shared(f.clone(), 1, 6);
        match o.next_send(no_gap) {
            Some(SendBuf::Shared(a)) => assert!(Arc::ptr_eq(&a, &f)),
            other => panic!("{other:?}"),
        }
        o.inflight_bytes = 0;
        // Gathering stops at a gap, which is encoded when it reaches the front.
        o.push_shared(frame(3), 1, 7);
        o.push_shared(frame(3), 1, 8);
        o.push_gap(1, 9, 9);
        o.push_shared(frame(3), 1, 10);
        let s = o.next_send(no_gap).unwrap();
        assert_eq!(s.bytes().len(), 6);
        o.on_sent(s);
        let mut seen = None;
        let g = o.next_send(|t, a, b| {
            seen = Some((t, a, b));
            Some(frame(5))
        });
        assert_eq!(seen, Some((1, 9, 9)));
        assert_eq!(
            g.unwrap().bytes().len(),
            5 + 3,
            "the gap and the frame behind it"
        );
        // A gap for a topic the connection left is skipped.
        o.inflight_bytes = 0;
        o.push_gap(2, 1, 1);
        o.push_shared(frame(4), 3, 1);
        assert_eq!(o.next_send(no_gap).unwrap().bytes().len(), 4);
    }

    #[test]
    fn a_backlog_is_gathered_into_a_buffer_sized_once() {
        let mut o = Outbound::default();
        for seq in 1..=5 {
            o.push_shared(frame(75), 1, seq);
        }
        assert!(o.queue.capacity() >= 5);
        match o.next_send(no_gap) {
            // Exactly the five frames: the buffer was sized before the copy, not grown.
            Some(SendBuf::Owned(v)) => assert_eq!((v.len(), v.capacity()), (375, 375)),
            other => panic!("{other:?}"),
        }
        o.inflight_bytes = 0;
        // Owned bytes at the front are extended in place, then the frames behind them.
        o.write_owned(|v| v.extend_from_slice(b"pong"));
        o.push_shared(frame(75), 1, 6);
        o.push_shared(frame(75), 1, 7);
        match o.next_send(no_gap) {
            Some(SendBuf::Owned(v)) => {
                assert_eq!((&v[..4], v.len(), v.capacity()), (&b"pong"[..], 154, 154));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn drop_oldest_frees_room_from_one_topic_and_leaves_one_gap() {
        let mut o = Outbound::default();
        for seq in 1..=4 {
            o.push_shared(frame(100), 7, seq);
            o.push_shared(frame(100), 8, seq);
        }
        // 800 queued, cap 500, 100 more wanted: drop 4 messages of topic 7 (all of them).
        let d = o.drop_oldest(7, 100, 500);
        assert_eq!(
            d,
            Dropped {
                messages: 4,
                bytes: 400
            }
        );
        assert!(matches!(
            o.queue[0],
            Chunk::Gap {
                topic: 7,
                from: 1,
                to: 4
            }
        ));
        assert_eq!(o.queued(), 400);
        // Later drops of the same topic merge into that gap.
        o.push_shared(frame(100), 7, 5);
        let d = o.drop_oldest(7, 200, 500);
        assert_eq!(d.messages, 1);
        let gaps: Vec<_> = o
            .queue
            .iter()
            .filter_map(|c| match c {
                Chunk::Gap { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(gaps, [(1, 5)]);
        // A gap at the back extends instead of stacking.
        o.push_gap(9, 1, 1);
        o.push_gap(9, 2, 3);
        assert!(matches!(
            o.queue.back(),
            Some(Chunk::Gap {
                topic: 9,
                from: 1,
                to: 3
            })
        ));
    }
}
