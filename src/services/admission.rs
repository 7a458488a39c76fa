//! Admission: which upgrades a worker takes. Marks taken at accept (over the accept rate,
//! source address at its cap), the connection cap, and refusals while draining; and the
//! WebSocket count it keeps.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::limits::{Global, IpTable};
use crate::budget::MemoryBudget;
use crate::lifecycle::Lifecycle;
use crate::metrics::Limit;
use crate::session::Answer;
use crate::slabmap::SlabMap;
use crate::ws::handshake::Rejection;

/// One worker's admission state.
#[derive(Debug)]
pub struct Admission {
    /// Open WebSockets on this worker.
    pub websockets: usize,
    global: Arc<Global>,
    ip_table: Option<Arc<IpTable>>,
    /// Source address of each connection, kept only while a per-IP cap is configured.
    peers: SlabMap<IpAddr>,
    life: Arc<Lifecycle>,
    memory: Arc<MemoryBudget>,
    rng: crate::jitter::Jitter,
}

impl Admission {
    /// Admission for one worker under the server-wide limits, with the shared per-IP
    /// table if any.
    pub fn new(
        worker: usize,
        global: Arc<Global>,
        ip_table: Option<Arc<IpTable>>,
        life: Arc<Lifecycle>,
        memory: Arc<MemoryBudget>,
    ) -> Self {
        Self {
            websockets: 0,
            global,
            ip_table,
            peers: SlabMap::default(),
            life,
            memory,
            rng: crate::jitter::Jitter::new(worker as u64 + 1),
        }
    }

    /// A connection was accepted into entry `idx` from `peer`: a refusal when it is over
    /// the accept rate or its address is at the per-IP cap (counted from accept, so
    /// connections still in their handshake count too).
    pub fn on_accept(&mut self, idx: u32, peer: Option<IpAddr>, now: Instant) -> Option<Answer> {
        if !self.global.take_rate(now) {
            return Some(Answer::Refuse(
                Limit::AcceptRate,
                Rejection::Unavailable { retry_after: 1 },
                "over the accept rate".into(),
            ));
        }
        if let (Some(table), Some(ip)) = (self.ip_table.as_ref(), peer) {
            if !table.try_acquire(ip) {
                return Some(Answer::Refuse(
                    Limit::PerIp,
                    Rejection::TooManyRequests {
                        retry_after: Some(5),
                    },
                    "too many connections from this address".into(),
                ));
            }
            self.peers.insert(idx, ip);
        }
        None
    }

    /// Judge the upgrade of a routed request: refused while draining, while the memory
    /// budget is exhausted, and at the connection cap.
    pub fn admit(&mut self) -> Answer {
        if self.life.draining() {
            let retry = 1 + (self.rng.next_u64() % 5) as u32;
            return Answer::Refuse(
                Limit::Draining,
                Rejection::Unavailable { retry_after: retry },
                "draining".into(),
            );
        }
        if self.memory.exhausted() {
            // New work is refused first; connections already open keep what they hold.
            self.memory.refused(true);
            return Answer::Refuse(
                Limit::MemoryBudget,
                Rejection::Unavailable { retry_after: 2 },
                "server memory budget exhausted".into(),
            );
        }
        if !self.global.try_open() {
            return Answer::Refuse(
                Limit::MaxConnections,
                Rejection::Unavailable { retry_after: 1 },
                "at connection limit".into(),
            );
        }
        self.websockets += 1;
        Answer::Accept
    }

    /// A connection handed over from the previous process arrived in entry `idx` from
    /// `peer`: counted as it was there (the per-IP count only when it has room: it cannot
    /// be refused now).
    pub fn adopt(&mut self, idx: u32, peer: Option<IpAddr>, counted: bool) {
        if let (Some(table), Some(ip)) = (self.ip_table.as_ref(), peer) {
            if table.try_acquire(ip) {
                self.peers.insert(idx, ip);
            }
        }
        if counted {
            self.websockets += 1;
            self.global.adopt();
        }
    }

    /// Entry `idx` is gone; `counted`: it had been admitted as a WebSocket.
    pub fn on_release(&mut self, idx: u32, counted: bool) {
        if let Some(ip) = self.peers.remove(&idx) {
            if let Some(t) = self.ip_table.as_ref() {
                t.release(ip);
            }
        }
        self.on_request_done(counted);
    }

    /// A request admitted by [`Admission::admit`] (when `counted`) is over; its connection
    /// may stay (keep-alive), still counted against its address.
    pub fn on_request_done(&mut self, counted: bool) {
        if counted {
            self.websockets -= 1;
            self.global.close();
        }
    }

    /// A random number (drain hints).
    pub fn next_rand(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_are_refused_with_503_while_the_memory_budget_is_exhausted() {
        let memory = Arc::new(MemoryBudget::new(1000, 1));
        let life = Arc::new(Lifecycle::default());
        let global = Arc::new(Global::new(10, 0.0));
        let mut a = Admission::new(0, global, None, life, memory.clone());
        assert_eq!(a.admit(), Answer::Accept);
        memory.set_worker(0, 500, 400); // 90%: new work is refused
        assert!(matches!(
            a.admit(),
            Answer::Refuse(Limit::MemoryBudget, Rejection::Unavailable { .. }, _)
        ));
        assert_eq!((memory.refusals().0, a.websockets), (1, 1));
        memory.set_worker(0, 0, 0);
        assert_eq!(
            a.admit(),
            Answer::Accept,
            "accepted again once memory is freed"
        );
    }
}
