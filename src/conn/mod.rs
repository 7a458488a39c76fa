//! Per-connection state: one compact slab entry, plus heap only while it is needed.
//!
//! An idle established connection is a [`Conn`] of 48 bytes and nothing else: no receive
//! buffer (receives land in the worker's provided-buffer ring), no send buffer, no timer
//! object. [`Spill`] exists only while a handshake or a frame is split across reads or a
//! message is being reassembled; [`Outbound`] only while bytes wait to be sent.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ws::handshake::HeadScanner;
use crate::ws::{Decoder, OpCode, Role};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// A WebSocket.
    Open,
    /// A final answer (HTTP error, or a Close after a protocol error) is queued: tear down
    /// once it is sent.
    Finishing,
    /// We sent a Close and wait for the peer's (bounded by the sweep).
    AwaitingClose,
    /// Our last bytes are sent and our FIN is out (shutdown SHUT_WR); incoming bytes are
    /// read and dropped until the peer closes or the linger deadline passes. Closing with
    /// unread input would make the kernel send a reset, which can destroy our final answer
    /// (a Close frame or an HTTP error) before the peer reads it.
    Lingering,
    /// shutdown(2) submitted; waiting for the receive and any send to end, then close.
    ShuttingDown,
    /// The direct descriptor's close is submitted; the entry goes when it completes.
    Closing,
}

/// Flag: the read-side multishot (receive, or poll in poll mode) is armed.
pub const RECV_ARMED: u8 = 1 << 0;
/// Flag: a send is in flight (the kernel holds a pointer into `Outbound::inflight`).
pub const SEND_INFLIGHT: u8 = 1 << 1;
/// Flag: the connection was counted as a WebSocket (for the gauge).
pub const COUNTED_WS: u8 = 1 << 2;
/// Flag: a single-shot receive is in flight (poll mode).
pub const RECV_INFLIGHT: u8 = 1 << 3;
/// Flag: accepted over the accept rate; its upgrade will be answered 503.
pub const REJECT_RATE: u8 = 1 << 4;
/// Flag: its source IP is at the per-IP cap; its upgrade will be answered 429.
pub const REJECT_IP: u8 = 1 << 5;
/// Flag: the poll fired while a receive was in flight: receive again when it completes, or
/// input that arrived after that receive copied could wait for a wake-up that never comes.
pub const RECV_AGAIN: u8 = 1 << 6;
/// Flag: a shutdown is in flight. The kernel runs shutdown on a worker thread and looks the
/// direct descriptor up only when it runs, so the slot must not be closed (and reused by the
/// next accept) before it completes, or the late shutdown hits the next connection.
pub const SHUT_INFLIGHT: u8 = 1 << 7;

/// Bytes held while a handshake or frame is split across reads, or a message is assembled.
#[derive(Debug, Default)]
pub struct Spill {
    /// Received bytes not yet consumed (a partial head, frame header or control frame).
    pub pending: Vec<u8>,
    /// The message being assembled from pieces (echo needs whole messages).
    pub message: Vec<u8>,
    /// Opcode of the message being assembled.
    pub message_op: Option<OpCode>,
    /// Where the handshake scan got to.
    pub scanner: HeadScanner,
}

impl Spill {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.pending.capacity() + self.message.capacity() + std::mem::size_of::<Self>()
    }
}

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
        topic: u32,
        /// Its sequence number.
        seq: u64,
    },
    /// Messages `from..=to` of `topic` were dropped for this slow consumer; encoded as a gap
    /// frame when it reaches the front (consecutive drops extend it, so it stays one chunk).
    Gap {
        /// The topic's hub id.
        topic: u32,
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

/// Bytes waiting to be sent: the chunk the kernel is reading (`inflight`, owned by the kernel
/// while a send is in flight) and the chunks queued behind it.
#[derive(Debug, Default)]
pub struct Outbound {
    /// The chunk of the send in flight (or last sent), sent up to `offset`.
    pub inflight: Option<Chunk>,
    /// How much of `inflight` the kernel has taken.
    pub offset: usize,
    /// Chunks queued behind the send in flight, oldest first.
    pub queue: VecDeque<Chunk>,
    /// Bytes in `queue`.
    pub queued_bytes: usize,
    /// An emptied owned buffer kept for the next owned chunk.
    pub spare: Vec<u8>,
}

/// Queued chunks are gathered into one send up to this many bytes.
pub const GATHER_BYTES: usize = 64 * 1024;

/// What [`Outbound::drop_oldest`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Messages removed.
    pub messages: u64,
    /// Bytes freed.
    pub bytes: usize,
}

impl Outbound {
    /// Bytes not yet sent.
    pub fn queued(&self) -> usize {
        self.inflight.as_ref().map_or(0, |c| c.bytes().len()) - self.offset + self.queued_bytes
    }

    /// Heap bytes held (shared frames count once per holder, as the allocation is shared).
    pub fn heap_bytes(&self) -> usize {
        let owned = |c: &Chunk| match c {
            Chunk::Owned(v) => v.capacity(),
            _ => 0,
        };
        self.inflight.as_ref().map_or(0, owned)
            + self.queue.iter().map(owned).sum::<usize>()
            + self.queue.capacity() * std::mem::size_of::<Chunk>()
            + self.spare.capacity()
            + std::mem::size_of::<Self>()
    }

    /// Append bytes written by `write` (to the last owned chunk when there is one); returns
    /// how many.
    pub fn write_owned(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        if !matches!(self.queue.back(), Some(Chunk::Owned(_))) {
            let buf = std::mem::take(&mut self.spare);
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
    pub fn push_shared(&mut self, frame: Arc<[u8]>, topic: u32, seq: u64) {
        self.queued_bytes += frame.len();
        self.queue.push_back(Chunk::Shared { frame, topic, seq });
    }

    /// Record that messages `from..=to` of `topic` were dropped, extending a gap already at
    /// the back of the queue when it is for the same topic.
    pub fn push_gap(&mut self, topic: u32, from: u64, to: u64) {
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

    /// Drop the oldest queued (not in-flight) messages of `topic` until `need` more bytes fit
    /// under `cap`, leaving one gap chunk where they were. Returns what was dropped.
    pub fn drop_oldest(&mut self, topic: u32, need: usize, cap: usize) -> Dropped {
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

    /// Move the next chunk to `inflight` if the current one is fully sent; false when there
    /// is nothing left. A sent owned buffer is kept as `spare`.
    pub fn advance(&mut self) -> bool {
        let done = self
            .inflight
            .as_ref()
            .is_none_or(|c| self.offset >= c.bytes().len());
        if !done {
            return true;
        }
        if let Some(Chunk::Owned(mut v)) = self.inflight.take() {
            if v.capacity() <= 64 * 1024 {
                v.clear();
                self.spare = v;
            }
        }
        self.offset = 0;
        let Some(c) = self.queue.pop_front() else {
            return false;
        };
        self.queued_bytes -= c.bytes().len();
        let gather = !self.queue.is_empty()
            && !matches!(c, Chunk::Gap { .. })
            && c.bytes().len() < GATHER_BYTES
            && matches!(self.queue.front(), Some(n) if !matches!(n, Chunk::Gap { .. }));
        if !gather {
            self.inflight = Some(c);
            return true;
        }
        // A backlog of small frames (a subscriber behind on a busy topic): copy them into one
        // buffer and send them with one operation. A copy of a few dozen bytes costs far less
        // than a send each; an idle subscriber's single frame still goes out uncopied.
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        buf.extend_from_slice(c.bytes());
        if let Chunk::Owned(v) = c {
            self.spare = v;
        }
        while let Some(n) = self.queue.front() {
            let len = n.bytes().len();
            if matches!(n, Chunk::Gap { .. }) || buf.len() + len > GATHER_BYTES {
                break;
            }
            buf.extend_from_slice(n.bytes());
            self.queued_bytes -= len;
            if let Some(Chunk::Owned(v)) = self.queue.pop_front() {
                if self.spare.capacity() == 0 {
                    self.spare = v;
                }
            }
        }
        self.inflight = Some(Chunk::Owned(buf));
        true
    }
}

/// One connection's slab entry.
#[derive(Debug)]
pub struct Conn {
    /// Frame decoder and close-handshake state (16 bytes).
    pub decoder: Decoder,
    /// Split input, only while needed.
    pub spill: Option<Box<Spill>>,
    /// Output queue, only while non-empty.
    pub out: Option<Box<Outbound>>,
    /// Worker tick of the last byte received (or, while closing, when closing began).
    pub last_seen: u32,
    /// Index of the socket in its ring's registered file table.
    pub slot: u32,
    /// Which of the worker's rings holds the socket.
    pub ring: u16,
    /// Changes each time the slab entry is reused (24 bits used), see `reactor::token`.
    pub generation: u32,
    /// Lifecycle phase.
    pub phase: Phase,
    /// `RECV_ARMED` | `SEND_INFLIGHT` | `COUNTED_WS` | `RECV_INFLIGHT` | `REJECT_*`.
    pub flags: u8,
}

/// The userspace budget of an idle connection's state.
pub const CONN_BUDGET: usize = 64;
const _: () = assert!(std::mem::size_of::<Conn>() <= CONN_BUDGET);

impl Conn {
    /// A connection just accepted into `slot`.
    pub const fn new(ring: u16, slot: u32, generation: u32, now: u32) -> Self {
        Self {
            decoder: Decoder::new(Role::Server),
            spill: None,
            out: None,
            last_seen: now,
            slot,
            ring,
            generation,
            phase: Phase::Handshake,
            flags: 0,
        }
    }

    /// Heap bytes this connection holds beyond its slab entry.
    pub fn heap_bytes(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.heap_bytes())
            + self.out.as_ref().map_or(0, |o| o.heap_bytes())
    }

    /// Bytes queued for sending.
    pub fn queued(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.queued())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_state_fits_its_budget() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= CONN_BUDGET, "Conn is {size} bytes");
        // The slab stores an enum of Conn or a free-list link; Option<Conn> has the same
        // layout question (niche or tag) and is what the metrics count per slot.
        let entry = std::mem::size_of::<Option<Conn>>();
        assert!(entry <= CONN_BUDGET, "a slab slot is {entry} bytes");
        let c = Conn::new(0, 7, 1, 0);
        assert_eq!(c.heap_bytes(), 0);
        assert_eq!(c.queued(), 0);
    }

    fn frame(n: usize) -> Arc<[u8]> {
        vec![0u8; n].into()
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
        assert!(o.advance());
        let sent = o.inflight.as_ref().unwrap().bytes();
        assert_eq!(sent.len(), 15);
        assert_eq!((&sent[..4], sent[14]), (&b"abcd"[..], b'e'));
        assert_eq!(o.queued(), 15);
        o.offset = 15;
        assert!(!o.advance());
        assert_eq!(o.queued(), 0);
        // A lone shared frame goes out as itself, uncopied.
        let f = frame(10);
        o.push_shared(f.clone(), 1, 6);
        assert!(o.advance());
        match &o.inflight {
            Some(Chunk::Shared { frame, .. }) => assert!(Arc::ptr_eq(frame, &f)),
            other => panic!("{other:?}"),
        }
        // Gathering stops at a gap (it is encoded by the worker when it reaches the front).
        o.offset = 10;
        o.push_shared(frame(3), 1, 7);
        o.push_shared(frame(3), 1, 8);
        o.push_gap(1, 9, 9);
        o.push_shared(frame(3), 1, 10);
        assert!(o.advance());
        assert_eq!(o.inflight.as_ref().unwrap().bytes().len(), 6);
        o.offset = 6;
        assert!(o.advance());
        assert!(matches!(o.inflight, Some(Chunk::Gap { from: 9, .. })));
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
