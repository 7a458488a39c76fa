//! The worker loop: per-core threads that pull completions from the io layer, hand bytes to
//! sessions, call the services, and run timers and drain pacing.
//!
//! **Architecture Invariant:** the reactor imports the io layer, sessions, services and the
//! lifecycle flags, and nothing of the control plane (server, admin, configuration).

pub mod rings;
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

/// The userspace budget of an idle connection's state.
pub const CONN_BUDGET: usize = 48;
const _: () = assert!(std::mem::size_of::<Conn>() <= CONN_BUDGET);

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
