//! The connections an admin listener serves, and which one gives way when it is full.
//!
//! A listener serves at most [`MAX_CONNECTIONS`] at once, a thread each. Until the
//! fifty-sixth sitting the next one was answered 503, so 64 connections that sent nothing
//! (or dripped a request a byte at a time) held the admin API for a whole request deadline,
//! and again after it: seven connections a second from any local process kept `/healthz`
//! at 503, and on an observe listener exposed to scrapers (`--metrics-listen`) any client
//! could fail a liveness probe and have the node restarted.
//!
//! Now a full listener closes the connection that has waited on its client longest (idle
//! between requests, still receiving its request, or with its answer unread) and serves
//! the new one. A connection whose request is being answered is never chosen. An honest
//! request waits on its client for a round trip; an attacker's connections must be younger
//! than that to survive, so holding the listener takes a flood of connections rather than
//! a trickle. Threads stay bounded: a closed connection's thread leaves at once (its socket
//! is shut down), and the table refuses once [`MAX_THREADS`] are alive however slowly the
//! closed ones leave.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Admin connections served at once per listener; a further one closes the connection that
/// has waited longest on its client, or is answered 503 when none has.
pub const MAX_CONNECTIONS: usize = 64;

/// Threads alive per listener at most: those serving plus those whose connection was closed
/// to make room and which have not left yet.
pub(super) const MAX_THREADS: usize = 2 * MAX_CONNECTIONS;

/// What a connection is doing, as far as choosing one to close goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// Waiting for a request to begin (just accepted, or kept alive between requests).
    Idle = 0,
    /// A request has begun arriving; the rest is awaited.
    Reading = 1,
    /// The request is being answered (routing, rendering, publishing): never closed.
    Working = 2,
    /// The answer is being written and the client has not taken it all yet.
    Writing = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Idle,
            1 => Self::Reading,
            2 => Self::Working,
            _ => Self::Writing,
        }
    }

    /// The name used in log lines.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Reading => "reading its request",
            Self::Working => "being answered",
            Self::Writing => "not reading its answer",
        }
    }
}

/// One connection being served: its socket (shared with the table, which may shut it
/// down) and what it is waiting on since when.
#[derive(Debug)]
pub(super) struct Slot {
    /// The connection. Its thread reads and writes through `&TcpStream`.
    pub(super) stream: TcpStream,
    phase: AtomicU8,
    /// When the current wait on the client began, in ns after the table's `epoch`.
    since: AtomicU64,
    closed: AtomicBool,
    epoch: Instant,
}

impl Slot {
    fn now(&self) -> u64 {
        nanos_since(self.epoch)
    }

    /// The connection waits for a request to begin; the wait starts now.
    pub(super) fn idle(&self) {
        self.since.store(self.now(), Ordering::Relaxed);
        self.phase.store(Phase::Idle as u8, Ordering::Release);
    }

    /// A request has begun arriving. Its wait counts from when the connection became idle,
    /// so a request dripped slowly grows older, not younger, with each byte.
    pub(super) fn reading(&self) {
        self.phase.store(Phase::Reading as u8, Ordering::Release);
    }

    /// The request is complete and being answered: not to be closed.
    pub(super) fn working(&self) {
        self.phase.store(Phase::Working as u8, Ordering::Release);
    }

    /// The answer is being written; the wait on the client to take it starts now.
    pub(super) fn writing(&self) {
        self.since.store(self.now(), Ordering::Relaxed);
        self.phase.store(Phase::Writing as u8, Ordering::Release);
    }

    /// Whether the table closed this connection to make room for another.
    pub(super) fn displaced(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Nanoseconds from `epoch` to now (a table's clock).
fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// A connection closed to make room: what it was waiting on, and for how long.
#[derive(Debug, Clone, Copy)]
pub(super) struct Displaced {
    /// Its phase when chosen.
    pub(super) phase: Phase,
    /// How long it had waited on its client.
    pub(super) waited: Duration,
}

/// What [`Table::admit`] decided for a new connection.
#[derive(Debug)]
pub(super) enum Admit {
    /// Serve it (its slot and key, for [`Table::leave`]); `displaced` names the connection
    /// closed for it, if the listener was full.
    Serve {
        slot: Arc<Slot>,
        key: usize,
        displaced: Option<Displaced>,
    },
    /// Full, with every connection being answered (or too many threads still leaving):
    /// answer 503.
    Full(TcpStream),
}

#[derive(Debug, Default)]
struct Inner {
    slots: slab::Slab<Arc<Slot>>,
    /// Slots closed for room whose threads have not left yet.
    closing: usize,
}

/// The connections one listener serves, with counters for `/metrics`.
#[derive(Debug)]
pub(super) struct Table {
    inner: Mutex<Inner>,
    epoch: Instant,
    /// Connections closed to make room for a new one.
    pub(super) displaced: AtomicU64,
    /// Connections answered 503 because none could be closed.
    pub(super) refused: AtomicU64,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            epoch: Instant::now(),
            displaced: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The lock guards only the table's own bookkeeping: a panic elsewhere leaves it
        // consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Threads alive: connections being served and those closed for room still leaving.
    pub(super) fn alive(&self) -> usize {
        self.lock().slots.len()
    }

    /// Connections being served (not counting those closed for room and still leaving).
    pub(super) fn serving(&self) -> usize {
        let g = self.lock();
        g.slots.len() - g.closing
    }

    /// Take `stream` in, closing the connection that has waited longest on its client when
    /// the listener is full.
    pub(super) fn admit(&self, stream: TcpStream) -> Admit {
        let mut g = self.lock();
        let now = nanos_since(self.epoch);
        let alive = g.slots.len();
        let mut displaced = None;
        if alive >= MAX_THREADS {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Admit::Full(stream);
        }
        if alive - g.closing >= MAX_CONNECTIONS {
            let victim = g
                .slots
                .iter()
                .filter(|(_, s)| !s.closed.load(Ordering::Relaxed))
                .filter_map(|(_, s)| {
                    let phase = Phase::from_u8(s.phase.load(Ordering::Acquire));
                    (phase != Phase::Working).then(|| (s.since.load(Ordering::Relaxed), phase, s))
                })
                .min_by_key(|(since, _, _)| *since);
            let Some((since, phase, victim)) = victim else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Admit::Full(stream);
            };
            victim.closed.store(true, Ordering::Release);
            // Waiting for a request, or reading one: only the reading side closes, so its
            // thread's blocked read ends once what was received is taken. A request begun
            // gets a 408 from its thread, a complete one that raced this is still answered,
            // and an idle connection just closes, as between requests. An answer the
            // client will not take is cut off.
            let how = match phase {
                Phase::Idle | Phase::Reading => Shutdown::Read,
                Phase::Working | Phase::Writing => Shutdown::Both,
            };
            let _ = victim.stream.shutdown(how);
            g.closing += 1;
            self.displaced.fetch_add(1, Ordering::Relaxed);
            displaced = Some(Displaced {
                phase,
                waited: Duration::from_nanos(now.saturating_sub(since)),
            });
        }
        let slot = Arc::new(Slot {
            stream,
            phase: AtomicU8::new(Phase::Idle as u8),
            since: AtomicU64::new(now),
            closed: AtomicBool::new(false),
            epoch: self.epoch,
        });
        let key = g.slots.insert(slot.clone());
        Admit::Serve {
            slot,
            key,
            displaced,
        }
    }

    /// The connection under `key` is done (its thread is leaving).
    pub(super) fn leave(&self, key: usize) {
        let mut g = self.lock();
        if let Some(s) = g.slots.try_remove(key) {
            if s.closed.load(Ordering::Acquire) {
                g.closing -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair over loopback: (the server's side, the client's side).
    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (s, c)
    }

    fn serve(t: &Table, l: &TcpListener) -> (Arc<Slot>, usize, Option<Displaced>, TcpStream) {
        let (s, c) = pair(l);
        match t.admit(s) {
            Admit::Serve {
                slot,
                key,
                displaced,
            } => (slot, key, displaced, c),
            Admit::Full(_) => panic!("refused"),
        }
    }

    /// Whether the client's side of a connection sees the end of the stream.
    fn ended(c: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(c.read(&mut b), Ok(0))
    }

    #[test]
    fn a_full_listener_closes_the_connection_that_waited_longest_and_never_one_being_answered() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Table::default();
        let mut conns = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let (slot, key, displaced, c) = serve(&t, &l);
            assert!(displaced.is_none(), "room was made below the cap");
            conns.push((slot, key, c));
        }
        assert_eq!(t.serving(), MAX_CONNECTIONS);
        // The oldest is being answered; the second oldest waits; the rest start waiting
        // afresh after it.
        conns[0].0.working();
        conns[1].0.reading();
        for (slot, _, _) in &conns[2..] {
            slot.idle();
        }
        let (_, _, displaced, _) = serve(&t, &l);
        let closed = displaced.expect("room was made");
        assert_eq!(closed.phase, Phase::Reading);
        assert!(conns[1].0.displaced());
        assert!(
            !conns[0].0.displaced(),
            "a connection being answered was closed"
        );
        assert_eq!(t.displaced.load(Ordering::Relaxed), 1);
        // Its reading side is shut: its thread's blocked read ends, and it can still answer.
        let mut b = [0u8; 1];
        assert_eq!((&conns[1].0.stream).read(&mut b).unwrap(), 0);
        std::io::Write::write_all(&mut &conns[1].0.stream, b"408").unwrap();
        let mut got = [0u8; 3];
        conns[1].2.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"408");
        // Serving still counts the cap, not the thread still leaving.
        assert_eq!(t.serving(), MAX_CONNECTIONS);
        // The next closes the oldest idle one: its thread's wait ends, and a younger one
        // is left alone.
        let (_, _, displaced, _) = serve(&t, &l);
        assert_eq!(displaced.unwrap().phase, Phase::Idle);
        assert!(conns[2].0.displaced());
        assert_eq!(conns[2].0.stream.peek(&mut b).unwrap(), 0);
        assert!(!conns[3].0.displaced(), "a younger connection was closed");
        conns[3].0.stream.set_nonblocking(true).unwrap();
        assert!(
            conns[3].0.stream.peek(&mut b).is_err(),
            "a younger one was shut"
        );
        t.leave(conns[1].1);
        t.leave(conns[2].1);
        assert_eq!(t.serving(), MAX_CONNECTIONS);
    }

    #[test]
    fn a_listener_whose_connections_are_all_being_answered_refuses_and_threads_stay_bounded() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Table::default();
        let mut conns = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let (slot, key, _, c) = serve(&t, &l);
            slot.working();
            conns.push((slot, key, c));
        }
        let (s, _c) = pair(&l);
        assert!(matches!(t.admit(s), Admit::Full(_)));
        assert_eq!(t.refused.load(Ordering::Relaxed), 1);
        // Once they wait on their clients again they can be closed; but threads whose
        // connections were closed and which have not left count against MAX_THREADS.
        for (slot, _, _) in &conns {
            slot.writing();
        }
        let mut newer = Vec::new();
        for _ in 0..MAX_THREADS - MAX_CONNECTIONS {
            let (slot, _, displaced, c) = serve(&t, &l);
            assert!(displaced.is_some());
            slot.working();
            newer.push((slot, c));
        }
        assert!(conns.iter().all(|(s, _, _)| s.displaced()));
        // An answer not being taken is cut off: the client sees the end.
        assert!(ended(&mut conns[0].2));
        let (s, _c) = pair(&l);
        assert!(
            matches!(t.admit(s), Admit::Full(_)),
            "threads beyond MAX_THREADS"
        );
        // As the closed ones leave, room returns.
        t.leave(conns[0].1);
        newer[0].0.idle();
        let (s, _c) = pair(&l);
        assert!(matches!(
            t.admit(s),
            Admit::Serve {
                displaced: Some(_),
                ..
            }
        ));
    }
}
