//! Per-connection state: one compact slab entry, plus heap only while it is needed.
//!
//! An idle established connection is a [`Conn`] of 48 bytes and nothing else: no receive
//! buffer (receives land in the worker's provided-buffer ring), no send buffer, no timer
//! object. [`Spill`] exists only while a handshake or a frame is split across reads or a
//! message is being reassembled; [`Outbound`] only while bytes wait to be sent.

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

/// Bytes waiting to be sent. `inflight` is owned by the kernel while a send is in flight;
/// new frames go to `pending`.
#[derive(Debug, Default)]
pub struct Outbound {
    /// The buffer of the send in flight, sent up to `offset`.
    pub inflight: Vec<u8>,
    /// How much of `inflight` the kernel has taken.
    pub offset: usize,
    /// Frames queued behind the send in flight.
    pub pending: Vec<u8>,
}

impl Outbound {
    /// Bytes not yet sent.
    pub fn queued(&self) -> usize {
        self.inflight.len() - self.offset + self.pending.len()
    }
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.inflight.capacity() + self.pending.capacity() + std::mem::size_of::<Self>()
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
}
