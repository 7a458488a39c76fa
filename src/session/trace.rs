//! What one traced connection did, for its close log line: messages each way, wire bytes
//! each way (filled in by the owner, which sees the socket), and how it ended.
//!
//! A session reports into a [`Trace`] only when its [`Ctx`](super::Ctx) carries one: the
//! owner traces a sample of its connections (see `reactor::closelog`), and an untraced
//! connection pays one predictable branch per message and nothing per close.

use std::cell::{Cell, RefCell};

use crate::metrics::{Limit, Side};

/// How a connection ended, as its close log line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A Close frame, sent first by `side`.
    Close {
        /// Who sent the first Close.
        side: Side,
        /// Its code (1005 when the peer's Close had none).
        code: u16,
        /// Its reason (the peer's, cut to 123 bytes by the protocol, or ours).
        reason: String,
    },
    /// The upgrade was answered with an HTTP error.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The limit or policy, when one refused it (none for a malformed request).
        limit: Option<Limit>,
        /// What the response body said.
        reason: String,
    },
    /// It ended without a Close frame: `side` ended it.
    Abort {
        /// Server: a timeout or a reset of ours. Client: the peer's FIN or a socket error.
        side: Side,
        /// Why.
        reason: &'static str,
    },
}

/// One traced connection's tallies. Interior mutability: the session sees it through the
/// shared [`Ctx`](super::Ctx).
#[derive(Debug, Default)]
pub struct Trace {
    /// Text and binary messages received.
    pub messages_in: Cell<u64>,
    /// Text and binary messages queued to it (replies, published messages).
    pub messages_out: Cell<u64>,
    /// Bytes received from the socket (the request head and frames).
    pub bytes_in: Cell<u64>,
    /// Bytes the socket sent.
    pub bytes_out: Cell<u64>,
    end: RefCell<Option<End>>,
}

impl Trace {
    /// Record how it ended; the first report wins (a reset after our Close is still the
    /// Close's story).
    pub fn end(&self, end: impl FnOnce() -> End) {
        let mut e = self.end.borrow_mut();
        if e.is_none() {
            *e = Some(end());
        }
    }

    /// How it ended, if reported.
    pub fn ended(&self) -> Option<End> {
        self.end.borrow().clone()
    }

    /// Add `n` to a tally.
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().saturating_add(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_end_reported_wins() {
        let t = Trace::default();
        assert_eq!(t.ended(), None);
        t.end(|| End::Close {
            side: Side::Server,
            code: 1008,
            reason: "slow consumer".into(),
        });
        t.end(|| End::Abort {
            side: Side::Server,
            reason: "reset",
        });
        assert!(matches!(t.ended(), Some(End::Close { code: 1008, .. })));
    }
}
