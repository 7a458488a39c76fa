//! What a completion is about, packed into the 64-bit `user_data`:
//! `op (8 bits) | generation (24 bits) | slab index (32 bits)`.
//!
//! The generation changes every time a slab slot is reused, so a completion that arrives
//! for a connection that has since been closed (and its slot given to a new one) is
//! recognised and ignored.

/// The kind of operation a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Multishot accept on the worker's listener.
    Accept = 1,
    /// Multishot receive on a connection.
    Recv = 2,
    /// A send on a connection.
    Send = 3,
    /// shutdown(2) on a connection.
    Shutdown = 4,
    /// Closing a connection's direct descriptor.
    Close = 5,
    /// Cancellation of the accept (drain).
    Cancel = 6,
    /// A setsockopt whose result is only logged.
    SockOpt = 7,
    /// Ring 0's multishot poll on another ring's eventfd: that ring has work (index = ring).
    Wake = 8,
    /// Multishot POLLIN on a connection (the idle read arm in poll mode).
    Poll = 9,
    /// A heartbeat ping sent from the static frame (no per-connection buffer).
    Ping = 10,
}

/// A decoded `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The operation.
    pub op: Op,
    /// The slab slot's generation when the operation was submitted (24 bits).
    pub generation: u32,
    /// The slab index.
    pub index: u32,
}

impl Token {
    /// Mask of the generation bits.
    pub const GENERATION_MASK: u32 = (1 << 24) - 1;

    /// A token for `op` on slot `index` at `generation`.
    pub const fn new(op: Op, index: u32, generation: u32) -> Self {
        Self {
            op,
            index,
            generation: generation & Self::GENERATION_MASK,
        }
    }

    /// Pack into `user_data`.
    pub const fn encode(self) -> u64 {
        ((self.op as u64) << 56) | ((self.generation as u64) << 32) | self.index as u64
    }

    /// Unpack `user_data`; None for an unknown op.
    pub const fn decode(v: u64) -> Option<Self> {
        let op = match (v >> 56) as u8 {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Shutdown,
            5 => Op::Close,
            6 => Op::Cancel,
            7 => Op::SockOpt,
            8 => Op::Wake,
            9 => Op::Poll,
            10 => Op::Ping,
            _ => return None,
        };
        Some(Self {
            op,
            generation: ((v >> 32) as u32) & Self::GENERATION_MASK,
            index: v as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_wraps_the_generation() {
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::Shutdown,
            Op::Close,
            Op::Cancel,
        ] {
            let t = Token::new(op, 0xdead_beef, 0x1ff_ffff);
            let d = Token::decode(t.encode()).unwrap();
            assert_eq!(d, t);
            assert_eq!(d.generation, 0xff_ffff);
        }
        assert_eq!(Token::decode(0), None);
    }
}
