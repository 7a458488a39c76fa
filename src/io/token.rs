//! What a completion is about, packed into the 64-bit `user_data`:
//! `op (8 bits) | generation (24 bits) | index (32 bits)`.
//!
//! For operations on a connection the index is the owner's slab index and the generation
//! changes each time that slot is reused, so a completion that arrives for a connection
//! that has since gone (its slot given to a new one) is recognised and ignored. The server
//! and the load generator share this one encoding.

/// The kind of operation a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// A pooled single-shot accept (index = the pool's address slot).
    Accept = 1,
    /// A receive into a provided buffer (multishot in recv mode, single-shot in poll mode).
    Recv = 2,
    /// A send; its buffer is owned by the ring until this completes.
    Send = 3,
    /// shutdown(2) on a connection.
    Shutdown = 4,
    /// Closing a connection's direct descriptor.
    Close = 5,
    /// A cancellation or a close whose result nobody needs.
    Ignore = 6,
    /// Multishot poll on an eventfd (index = what it wakes: a ring number or a channel).
    Wake = 7,
    /// Multishot POLLIN on a connection (the idle read arm in poll mode).
    Poll = 8,
    /// One of the first links of a client's connect chain (socket, setsockopt, bind).
    Step = 9,
    /// The last link of a client's connect chain (connect).
    Connect = 10,
    /// A connection's direct descriptor installed as a regular one, for the hand-over
    /// (result: the new descriptor).
    Install = 11,
    /// Regular descriptors placed into free slots of a file table (the hand-over's
    /// receiving side; index: the owner's batch).
    Adopt = 12,
    /// A poll removal (IORING_OP_POLL_REMOVE; index and generation: the poll's). The ring
    /// handles its completion itself: see [`crate::io::Ring::poll_remove`].
    Unpoll = 13,
}

impl Op {
    const ALL: [Self; 13] = [
        Self::Accept,
        Self::Recv,
        Self::Send,
        Self::Shutdown,
        Self::Close,
        Self::Ignore,
        Self::Wake,
        Self::Poll,
        Self::Step,
        Self::Connect,
        Self::Install,
        Self::Adopt,
        Self::Unpoll,
    ];
}

/// A decoded `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The operation.
    pub op: Op,
    /// The owner's generation when the operation was submitted (24 bits).
    pub generation: u32,
    /// The owner's index.
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

    /// The same owner, another operation.
    pub const fn with_op(self, op: Op) -> Self {
        Self { op, ..self }
    }

    /// Whether this token was issued for `generation` (compared in 24 bits).
    pub const fn is_for(self, generation: u32) -> bool {
        self.generation == generation & Self::GENERATION_MASK
    }

    /// Pack into `user_data`.
    pub const fn encode(self) -> u64 {
        ((self.op as u64) << 56) | ((self.generation as u64) << 32) | self.index as u64
    }

    /// Unpack `user_data`; None for an unknown op.
    pub fn decode(v: u64) -> Option<Self> {
        let code = (v >> 56) as u8;
        let op = *Op::ALL.iter().find(|o| **o as u8 == code)?;
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
    fn round_trips_every_op_and_wraps_the_generation() {
        for op in Op::ALL {
            let t = Token::new(op, 0xdead_beef, 0x1ff_ffff);
            let d = Token::decode(t.encode()).unwrap();
            assert_eq!(d, t);
            assert_eq!(d.generation, 0xff_ffff);
            assert!(d.is_for(0x1ff_ffff) && d.is_for(0xff_ffff) && !d.is_for(0xff_fffe));
        }
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(0xff << 56), None);
    }
}
