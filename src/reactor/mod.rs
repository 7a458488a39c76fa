//! The worker loop: per-core threads that pull completions from the io layer, hand bytes to
//! sessions, call the services, and run timers and drain pacing.
//!
//! **Architecture Invariant:** the reactor imports the io layer, sessions, services and the
//! lifecycle flags, and nothing of the control plane (server, admin, configuration).

pub mod closelog;
pub mod deferred;
pub mod pace;
pub mod rings;
pub mod slotbits;
pub mod spacing;
pub mod tls;
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

/// The slab slots the heartbeat sweep visits at `tick`: those `≡ tick (mod ping_ticks)`.
/// Over any `ping_ticks` consecutive ticks every slot is visited exactly once, and each tick
/// visits at most `ceil(capacity / ping_ticks)`: pings are spread evenly over the interval
/// by construction, with no timer per connection.
pub fn sweep_slots(tick: u32, ping_ticks: u32, capacity: usize) -> impl Iterator<Item = usize> {
    let buckets = ping_ticks.max(1) as usize;
    (tick as usize % buckets..capacity).step_by(buckets)
}

/// The userspace budget of an idle connection's state.
pub const CONN_BUDGET: usize = 48;
const _: () = assert!(std::mem::size_of::<Conn>() <= CONN_BUDGET);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_sweep_visits_every_slot_once_per_interval_and_evenly() {
        let (ping_ticks, cap) = (250u32, 100_003usize);
        for start in [0u32, 7, 249, u32::MAX - 300] {
            let mut seen = vec![0u8; cap];
            let mut most = 0;
            for t in 0..ping_ticks {
                let visited: Vec<usize> =
                    sweep_slots(start.wrapping_add(t), ping_ticks, cap).collect();
                most = most.max(visited.len());
                for i in visited {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "start {start}");
            assert!(most <= cap.div_ceil(ping_ticks as usize));
        }
    }

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
