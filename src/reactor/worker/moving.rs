//! The worker's side of the hand-over (see [`crate::handover`]).
//!
//! Old process: on [`FREEZE`] the worker stops accepting, answers its long polls, and stops
//! reading its open connections (handshakes, closes and sends go on). On [`MOVE`] it picks
//! batches of connections that are open, idle on the wire (nothing being sent or read) and
//! whose pub/sub positions are exact (no message part-way through its recipients), turns
//! each one's direct descriptor into a regular one, writes its state out, releases it here
//! without closing its socket, and hands the batch to the coordinator. An acknowledged
//! batch's file-table slots are closed (the socket lives on in the new process); a batch
//! returned is taken back and served again. Outside FREEZE and MOVE it reads and accepts
//! again.
//!
//! New process: batches arrive with their descriptors; the worker places them into free
//! slots of a file table (one IORING_OP_FILES_UPDATE per batch), takes each connection's
//! state up, and carries on reading and sending.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use super::Worker;
use crate::handover::format::{ConnSnap, TlsSnap, MAX_BATCH};
use crate::handover::{Outgoing, Verdict, FREEZE, MOVE};
use crate::io::{Completion, Extra, Op, Socket, Token};
use crate::reactor::Conn;
use crate::session::{Phase, Services, Session};
use crate::slabmap::SlabMap;

/// Batches one worker may have handed out and not had answered.
const IN_FLIGHT_BATCHES: usize = 4;
/// Slab entries looked at per turn for the next batch.
const SCAN: usize = 8192;
/// Polls left on handed-over sockets removed per turn once the hand-over is done.
const STALE_PER_TURN: usize = 4096;

/// A batch being placed (new process): its ring, each connection's state and peer, and
/// the descriptors until the file table holds them.
type Placing = (usize, Vec<(ConnSnap, Option<IpAddr>)>, Vec<OwnedFd>);

/// A connection whose descriptor is being installed: its generation, then its descriptor.
type Installing = SlabMap<(u32, Option<OwnedFd>)>;

/// Where a handed-out connection's socket sat here: its ring and slot, and the poll still
/// armed on it (poll mode: a paused socket keeps its poll, see [`Socket::pause`]).
type Place = (usize, u32, Option<Token>);

/// The worker's hand-over state.
#[derive(Debug, Default)]
pub(super) struct Moving {
    /// Reading and accepting are paused.
    frozen: bool,
    /// The batch being prepared.
    installing: Installing,
    /// Installs submitted and not completed.
    waiting: usize,
    /// Batches handed out: where their connections' sockets sat.
    in_flight: HashMap<u64, Vec<Place>>,
    /// Polls left armed on sockets the new process acknowledged (ring, token). They go
    /// with this process's rings when it exits, in the kernel's teardown (one pass, no
    /// lookups); if the hand-over ends with this process serving on, [`Worker::thaw`]
    /// removes them.
    stale_polls: Vec<(usize, Token)>,
    next_local: u64,
    cursor: usize,
    /// Batches being placed (new process): key → (ring, states, descriptors).
    placing: HashMap<u32, Placing>,
    next_place: u32,
    /// Fault injection for the tests (`HOLDFAST_FAULT_HANDOVER_LATE_ACKS`): acknowledgements
    /// held back while moving, handled only after the thaw, as a worker preempted between
    /// reading its verdicts and the phase would handle one.
    held: Vec<Verdict>,
    late: Option<bool>,
}

impl Moving {
    /// Whether reading open connections and accepting are paused.
    pub(super) fn frozen(&self) -> bool {
        self.frozen
    }

    /// Whether verdict `v` is held back by the fault injection.
    fn late_acks(&mut self, phase: u8, v: &Verdict) -> bool {
        let late = *self
            .late
            .get_or_insert_with(|| std::env::var_os("HOLDFAST_FAULT_HANDOVER_LATE_ACKS").is_some());
        late && matches!(v, Verdict::Acked(_)) && matches!(phase, FREEZE | MOVE)
    }
}

impl<S: Services> Worker<S> {
    /// Once a turn: follow the hand-over's phase.
    pub(super) fn handover_step(&mut self) {
        let Some(link) = self.link.clone() else {
            return;
        };
        // The phase first: every verdict sent before the phase changed is handled below,
        // before this step acts on the phase (an acknowledgement handled after the thaw
        // would otherwise leave its socket's poll, and so the socket, open).
        let phase = link.shared.phase();
        while let Ok(batch) = link.incoming.try_recv() {
            self.place(batch);
        }
        while let Ok(v) = link.verdicts.try_recv() {
            if self.moving.late_acks(phase, &v) {
                self.moving.held.push(v);
                continue;
            }
            self.on_verdict(v);
        }
        match phase {
            FREEZE | MOVE => {
                if !self.moving.frozen {
                    self.freeze();
                }
                if phase == MOVE {
                    self.next_batch();
                }
            }
            crate::handover::DONE => {
                // Handed over: what is left is drained. The polls left on moved sockets hold
                // them open while this process lives (a close by the new process would not
                // reach its client) and report their readiness here: with leftovers to
                // drain this worker lives on, so they go, a share a turn; without, it exits
                // now and its ring's teardown takes them.
                if !self.conns.is_empty() {
                    self.drop_stale_polls(STALE_PER_TURN);
                }
            }
            _ => {
                if self.moving.frozen && self.drain.is_none() {
                    self.thaw();
                }
                if !self.moving.installing.is_empty() && self.moving.waiting == 0 {
                    // A batch in preparation when the hand-over ended: its descriptors go.
                    self.moving.installing.clear();
                }
            }
        }
        if !matches!(phase, FREEZE | MOVE) {
            for v in std::mem::take(&mut self.moving.held) {
                self.on_verdict(v);
            }
        }
        let left = if self.moving.frozen {
            self.conns.len()
        } else {
            0
        };
        link.remaining.store(left, Ordering::Relaxed);
        let flying: usize = self.moving.in_flight.values().map(Vec::len).sum();
        link.in_flight.store(flying, Ordering::Relaxed);
        link.seen.store(phase, Ordering::Release);
    }

    /// Stop accepting and reading open connections; answer long polls (their clients poll
    /// again, at the new process). In poll mode the polls stay armed ([`Socket::pause`]):
    /// freezing 1M connections submits nothing for them.
    fn freeze(&mut self) {
        self.moving.frozen = true;
        // Messages deferred for held connections are queued now: a connection moves with
        // its queue, not with runs kept here (and nothing is deferred while frozen).
        self.offer_all_owed();
        self.rings.stop_accepting();
        let mode = self.s.read_mode;
        let idxs: Vec<u32> = self.conns.iter().map(|(i, _)| i as u32).collect();
        for idx in idxs {
            // Kept alive, idle: closed, so its next request connects to the new process.
            if self.end_if_between_requests(idx, "kept-alive connection closed: handing over") {
                continue;
            }
            if self.answer_poll_to_leave(idx) {
                continue;
            }
            let conn = &mut self.conns[idx as usize];
            if conn.session.phase() != Phase::Open {
                continue;
            }
            let ring = &mut self.rings.list[conn.socket.ring()].ring;
            conn.socket.pause(ring, mode, idx);
        }
        tracing::info!(
            worker = self.id,
            connections = self.conns.len(),
            "hand-over: accepting and reading paused"
        );
    }

    /// If connection `idx` holds a long poll: answer it now, saying close, and true (frozen:
    /// its client polls again, at the new process). The freeze answers those it finds; a
    /// poll whose request is read later (it arrived on a kept-alive connection as the
    /// freeze began) is answered as it is read, or it would be held for the whole hold
    /// time, neither movable nor answered, and hold the hand-over up.
    pub(super) fn answer_poll_to_leave(&mut self, idx: u32) -> bool {
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return false;
        };
        if conn.session.phase() != Phase::Open || conn.session.transport() != "poll" {
            return false;
        }
        let ctx = self.env.ctx(idx);
        let before = conn.session.held();
        conn.session.writer().close_after_answer();
        self.svc.answer(idx, conn.session.writer(), &ctx);
        let after = self.conns[idx as usize].session.held();
        self.account(before, after);
        self.drive(idx);
        true
    }

    /// Remove up to `n` of the polls left on sockets the new process took.
    fn drop_stale_polls(&mut self, n: usize) {
        let from = self.moving.stale_polls.len().saturating_sub(n);
        for (r, tok) in self.moving.stale_polls.drain(from..) {
            self.rings.list[r].ring.poll_remove(tok);
        }
    }

    /// Read and accept again (the hand-over failed, or ended with connections left).
    fn thaw(&mut self) {
        self.moving.frozen = false;
        // Single-shot until a connection's next message, as after an accept.
        let mode = self.s.read_mode.arming(false);
        self.drop_stale_polls(usize::MAX);
        for (i, conn) in self.conns.iter_mut() {
            if conn.session.wants_input() && !conn.socket.closing() {
                let ring = &mut self.rings.list[conn.socket.ring()].ring;
                conn.socket.arm(ring, mode, i as u32); // if its poll or receive ended
                conn.socket.resume(ring, mode, i as u32, true); // input that came meanwhile
            }
        }
        self.rings.accepting = true;
        self.rings.arm_accept();
        tracing::info!(
            worker = self.id,
            "hand-over over: accepting and reading again"
        );
    }

    /// Pick the next batch and install its descriptors, or hand out the one installed.
    fn next_batch(&mut self) {
        if !self.moving.installing.is_empty() {
            if self.moving.waiting == 0 && self.pending.is_none() {
                self.hand_out();
            }
            return;
        }
        if self.moving.in_flight.len() >= IN_FLIGHT_BATCHES || self.conns.is_empty() {
            return;
        }
        let mode = self.s.read_mode;
        let cap = self.slots;
        let mut looked = 0;
        while looked < SCAN.min(cap) && self.moving.installing.len() < MAX_BATCH {
            let idx = self.moving.cursor % cap;
            self.moving.cursor = (idx + 1) % cap;
            looked += 1;
            let Some(conn) = self.conns.get_mut(idx) else {
                continue;
            };
            if conn.session.phase() != Phase::Open {
                continue;
            }
            let ring = &mut self.rings.list[conn.socket.ring()].ring;
            if conn.socket.receiving(mode) {
                conn.socket.pause(ring, mode, idx as u32); // upgraded since the freeze
                continue;
            }
            if conn.socket.sending()
                || conn.socket.closing()
                || !conn.session.movable()
                || !self.svc.movable(idx as u32)
                || !tls_movable(&self.tls, idx as u32)
            {
                continue;
            }
            let generation = conn.socket.generation();
            ring.install_fd(
                conn.socket.slot(),
                conn.socket.token(Op::Install, idx as u32),
            );
            self.moving
                .installing
                .insert(idx as u32, (generation, None));
            self.moving.waiting += 1;
        }
    }

    /// A descriptor was installed for connection `idx`.
    pub(super) fn on_installed(&mut self, tok: Token, res: i32) {
        self.moving.waiting = self.moving.waiting.saturating_sub(1);
        // SAFETY: a non-negative result of FIXED_FD_INSTALL is a new descriptor that this
        // process owns and nothing else refers to.
        let fd = (res >= 0).then(|| unsafe { OwnedFd::from_raw_fd(res) });
        match self.moving.installing.get_mut(&tok.index) {
            Some(entry) if entry.0 == tok.generation && fd.is_some() => entry.1 = fd,
            _ => {
                self.moving.installing.remove(&tok.index);
            }
        }
    }

    /// Write the installed batch out and hand it to the coordinator.
    fn hand_out(&mut self) {
        let Some(link) = self.link.clone() else {
            return;
        };
        let batch = std::mem::take(&mut self.moving.installing);
        let mut conns = Vec::with_capacity(batch.len());
        let mut fds = Vec::with_capacity(batch.len());
        let mut places = Vec::with_capacity(batch.len());
        let mode = self.s.read_mode;
        for (idx, (generation, fd)) in batch {
            let Some(fd) = fd else { continue };
            let ok = self.conns.get(idx as usize).is_some_and(|c| {
                c.socket.generation() == generation
                    && c.session.movable()
                    && !c.socket.sending()
                    && !c.socket.receiving(mode)
                    && !c.socket.closing()
            });
            if !ok || !self.svc.movable(idx) || !tls_movable(&self.tls, idx) {
                continue; // changed since: its descriptor closes; it stays here
            }
            let mut conn = self.conns.remove(idx as usize);
            let before = super::with_tls(conn.session.held(), &self.tls, idx);
            self.account(before, (0, 0));
            let counted = conn.session.counted();
            let transport = conn.session.transport();
            let svc = &mut self.svc;
            let session = conn.session.export(self.env.tick, |t, f, to| {
                crate::session::Host::gap_frame(&mut svc.host(idx), t, f, to)
            });
            let (identity, pubsub) = self.svc.export(idx, counted, &self.env.metrics);
            let tls = self
                .tls
                .as_mut()
                .and_then(|t| t.export(idx, &self.env.metrics))
                .map(|(records, out)| TlsSnap { records, out });
            let m = &self.env.metrics;
            if counted {
                m.transport_open(transport, false);
            }
            self.env.log.forget(idx);
            self.accepted_at.remove(&idx);
            conns.push(ConnSnap {
                worker: self.id as u16,
                session,
                identity,
                pubsub,
                tls,
            });
            fds.push(fd);
            places.push((
                conn.socket.ring(),
                conn.socket.slot(),
                conn.socket.armed_poll(mode, idx),
            ));
        }
        self.gauges();
        if conns.is_empty() {
            return;
        }
        let gate = link.shared.gate.clone();
        let guard = gate.lock().unwrap_or_else(|p| p.into_inner());
        if link.shared.phase() != MOVE {
            // The hand-over ended while this batch was prepared: it stays here.
            drop(guard);
            for (place, snap) in places.into_iter().zip(conns) {
                self.take_back(place, snap);
            }
            return;
        }
        let local = self.moving.next_local;
        self.moving.next_local += 1;
        self.moving.in_flight.insert(local, places);
        let sent = link.out.send(Outgoing {
            worker: self.id,
            local,
            conns,
            fds,
        });
        drop(guard);
        if sent.is_err() {
            tracing::error!(worker = self.id, "hand-over coordinator gone");
        }
    }

    fn on_verdict(&mut self, v: Verdict) {
        match v {
            Verdict::Acked(local) => {
                let Some(places) = self.moving.in_flight.remove(&local) else {
                    return;
                };
                for &(r, slot, poll) in &places {
                    // A plain close of this table's reference: no shutdown, the socket
                    // is the new process's now. Its poll here stays armed (it reports to a
                    // connection entry that is gone: dropped as stale) until this process
                    // exits or thaws. The armed poll holds the socket open: after a thaw
                    // (the hand-over failed, this verdict came late) it goes at once.
                    self.rings.list[r]
                        .ring
                        .close(slot, Token::new(Op::Ignore, u32::MAX, 0));
                    self.rings.on_release(r, true);
                    match poll {
                        Some(tok) if self.moving.frozen => self.moving.stale_polls.push((r, tok)),
                        Some(tok) => self.rings.list[r].ring.poll_remove(tok),
                        None => {}
                    }
                }
                self.env.metrics.handover_moved.add(places.len() as u64);
            }
            Verdict::Returned(local, conns) => {
                let Some(places) = self.moving.in_flight.remove(&local) else {
                    return;
                };
                let n = conns.len();
                for (place, snap) in places.into_iter().zip(conns) {
                    self.take_back(place, snap);
                }
                if let Some(l) = &self.link {
                    l.shared.taken_back.fetch_add(n as u64, Ordering::Relaxed);
                }
                tracing::warn!(worker = self.id, n, "hand-over: connections taken back");
            }
        }
    }

    /// Connections handed to this worker (new process): place their descriptors.
    fn place(&mut self, batch: crate::handover::Incoming) {
        let n = batch.len();
        let Some(r) = self.rings.room_for(n, self.id) else {
            tracing::error!(
                worker = self.id,
                n,
                "hand-over: no file table has room; these connections are closed"
            );
            if let Some(l) = &self.link {
                l.shared.lost.fetch_add(n as u64, Ordering::Relaxed);
                l.shared.placed(n);
            }
            return;
        };
        let mut states = Vec::with_capacity(n);
        let mut owned = Vec::with_capacity(n);
        let mut raw: Vec<RawFd> = Vec::with_capacity(n);
        for (snap, fd, peer) in batch {
            raw.push(fd.as_raw_fd());
            owned.push(fd);
            states.push((snap, peer));
        }
        let key = self.moving.next_place;
        self.moving.next_place = self.moving.next_place.wrapping_add(1);
        self.rings.list[r].live += n;
        self.rings.list[r]
            .ring
            .adopt_fds(raw, Token::new(Op::Adopt, key, 0));
        self.moving.placing.insert(key, (r, states, owned));
    }

    /// A batch's descriptors were placed (or not): take each connection up.
    pub(super) fn on_placed(&mut self, key: u32, c: Completion) {
        let Some((r, states, owned)) = self.moving.placing.remove(&key) else {
            return;
        };
        let n = states.len();
        let placed = usize::try_from(c.res).unwrap_or(0).min(n);
        let slots = match c.extra {
            Extra::Adopted(v) => v,
            _ => Vec::new(),
        };
        if c.res < 0 {
            tracing::error!(
                worker = self.id,
                n,
                "hand-over: placing descriptors failed: {}",
                std::io::Error::from_raw_os_error(-c.res)
            );
        }
        self.rings.list[r].live -= n - placed;
        for (k, (snap, peer)) in states.into_iter().enumerate() {
            match slots.get(k) {
                Some(&slot) if k < placed => self.take_up(r, slot as u32, snap, peer),
                _ => {}
            }
        }
        drop(owned); // the file tables hold their own references now
        if let Some(l) = &self.link {
            l.shared.adopted.fetch_add(placed as u64, Ordering::Relaxed);
            l.shared
                .lost
                .fetch_add((n - placed) as u64, Ordering::Relaxed);
            l.shared.placed(n);
        }
        self.env.metrics.handover_adopted.add(placed as u64);
        self.gauges();
    }

    /// Serve a connection handed out and not taken from its old place again: its old
    /// poll (reporting to the entry it had) goes, and a new one is armed for its new entry.
    fn take_back(&mut self, (r, slot, poll): Place, snap: ConnSnap) {
        if let Some(tok) = poll {
            self.rings.list[r].ring.poll_remove(tok);
        }
        self.take_up(r, slot, snap, None);
    }

    /// Serve the connection in `slot` of ring `r` from its handed-over state.
    fn take_up(&mut self, r: usize, slot: u32, snap: ConnSnap, peer: Option<IpAddr>) {
        // A connection keeps its transport: TLS state is taken up by a TLS worker only (a
        // configuration that turned TLS on or off across the upgrade cannot serve it).
        let session = match (self.tls.is_some(), snap.tls.is_some()) {
            (true, true) | (false, false) => Session::import(snap.session, self.env.tick),
            (true, false) => Err("TLS layer (this process speaks TLS, it arrived plain)"),
            (false, true) => Err("TLS layer (it arrived over TLS, this process has no TLS)"),
        };
        let session = match session {
            Ok(s) => s,
            Err(why) => {
                tracing::error!(
                    worker = self.id,
                    "hand-over: a connection's {why} is invalid; closed"
                );
                let tok = Token::new(Op::Ignore, u32::MAX, 0);
                self.rings.list[r].ring.shutdown_close(slot, tok);
                self.rings.list[r].live -= 1;
                return;
            }
        };
        self.generation = self.generation.wrapping_add(1) & Token::GENERATION_MASK;
        let counted = session.counted();
        let transport = session.transport();
        let idx = self.insert_conn(Conn {
            session,
            socket: Socket::new(r, slot, self.generation),
        });
        if counted {
            self.env.metrics.transport_open(transport, true);
        }
        let ctx = self.env.ctx(idx);
        let conn = &mut self.conns[idx as usize];
        self.svc.adopt(
            idx,
            peer,
            counted,
            snap.identity,
            snap.pubsub,
            conn.session.writer(),
            &ctx,
        );
        let after = conn.session.held();
        self.account((0, 0), after);
        if let (Some(side), Some(t)) = (self.tls.as_mut(), snap.tls) {
            // After the services took it up, so the close below releases what they count.
            if let Err(e) = side.adopt(idx, &t.records, t.out, &self.env.metrics) {
                tracing::error!(
                    worker = self.id,
                    "hand-over: a TLS record state is invalid ({e}); closed"
                );
                self.conns[idx as usize].session.abort();
                return self.drive(idx);
            }
        }
        let conn = &mut self.conns[idx as usize];
        if !self.moving.frozen {
            let ring = &mut self.rings.list[r].ring;
            conn.socket.arm(ring, self.s.read_mode.arming(false), idx);
        }
        self.drive(idx);
    }

    fn gauges(&self) {
        let m = &self.env.metrics;
        m.connections.set(self.conns.len() as u64);
        m.websockets.set(self.svc.websockets() as u64);
    }
}

/// Whether connection `idx`'s TLS layer (if any) can be handed over now.
fn tls_movable(tls: &Option<crate::reactor::tls::TlsSide>, idx: u32) -> bool {
    tls.as_ref().is_none_or(|t| {
        t.get(idx)
            .is_some_and(crate::reactor::tls::TlsConn::movable)
    })
}
