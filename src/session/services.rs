//! What the worker loop asks of the layer above the sessions (routing, admission, echo,
//! pub/sub): defined here, below both, so the reactor is generic over it and never imports
//! the services, and the services never import the reactor.

use std::net::IpAddr;
use std::os::fd::RawFd;

use super::{Answer, Ctx, Host, Writer};
use crate::handover::format::{IdentitySnap, PubsubSnap};
use crate::metrics::WorkerMetrics;

/// One worker's services, as the worker loop sees them.
pub trait Services {
    /// The session host for one connection's call.
    type Host<'a>: Host
    where
        Self: 'a;
    /// A message for local connections, with what is needed to offer it.
    type Delivery;

    /// The host for connection `idx`.
    fn host(&mut self, idx: u32) -> Self::Host<'_>;
    /// A connection was accepted into entry `idx` from `peer`: `Some` refusal when it is
    /// over a limit that is decided at accept (the accept rate, the per-address cap), which
    /// the session answers at once, without waiting for a request.
    fn on_accept(&mut self, idx: u32, peer: Option<IpAddr>) -> Option<Answer>;
    /// Entry `idx` is gone; `counted`: it had been upgraded.
    fn on_release(&mut self, idx: u32, counted: bool, metrics: &WorkerMetrics);
    /// Entry `idx` answered a plain request and stays open for the next one (keep-alive):
    /// forget what the request held, as [`Services::on_release`] does, but the connection
    /// (its per-address count) stays.
    fn on_recycle(&mut self, idx: u32, counted: bool, metrics: &WorkerMetrics);
    /// Open WebSockets on this worker.
    fn websockets(&self) -> usize;
    /// A random number (drain hints).
    fn next_rand(&mut self) -> u64;
    /// An eventfd other threads write when deliveries are queued; the worker's ring polls it
    /// multishot, so every write posts a completion and the counter is never read.
    fn wake_fd(&self) -> RawFd;
    /// The wake's completion came: clear the pending wake (before taking deliveries).
    fn on_wake(&mut self);
    /// Called once on the worker's thread before it starts: wakes this thread raises for
    /// itself write no eventfd, and the worker takes them with [`Services::own_wake`].
    fn claim_wakes(&self) {}
    /// Before each wait: did this thread raise a wake for itself (now taken, as by
    /// [`Services::on_wake`])? Then the worker drains its queue, as for a completion.
    fn own_wake(&mut self) -> bool {
        false
    }
    /// The next queued message and the local connections that take it (the list is lent
    /// until [`Services::finish_delivery`]).
    fn next_delivery(&mut self) -> Option<(Self::Delivery, Vec<u32>)>;
    /// When the message was published, if known (for the latency histogram).
    fn published_at(d: &Self::Delivery) -> Option<std::time::Instant>;
    /// What a run deferred for held recipients holds of `d`, once for all of them (counted
    /// under the memory budget): its frame, and when an event stream is among them
    /// (`streams`) the event JSON they take, converted now so that it is counted.
    fn delivery_bytes(_d: &Self::Delivery, _streams: bool) -> usize {
        0
    }
    /// Offer the message to one recipient's output (connection `idx`).
    fn offer(&mut self, idx: u32, d: &Self::Delivery, w: &mut Writer, ctx: &Ctx<'_>);
    /// Offer runs of messages, in order, to one recipient (a held subscriber takes several
    /// at its phase): by default each as [`Services::offer`] does.
    fn offer_runs<'m, I>(&mut self, idx: u32, runs: I, w: &mut Writer, ctx: &Ctx<'_>)
    where
        I: Iterator<Item = &'m [Self::Delivery]> + Clone,
        Self::Delivery: 'm,
    {
        for d in runs.flatten() {
            self.offer(idx, d, w, ctx);
        }
    }
    /// Give a recipient list back for reuse.
    fn finish_delivery(&mut self, list: Vec<u32>);
    /// Whether `d` may be offered together with the messages after it that go to the very
    /// same recipients, each recipient taking the whole run before the next recipient (a
    /// plain message is; one that changes a connection's state for the next is not).
    fn batchable(_d: &Self::Delivery) -> bool {
        false
    }
    /// Whether more messages wait.
    fn has_deliveries(&self) -> bool;
    /// Connections to close because their credentials expired (checked once a second),
    /// with the close code and reason for each.
    fn expired(&mut self, _out: &mut Vec<(u32, crate::ws::CloseCode, &'static str)>) {}
    /// Connections whose answer is due (long polls), checked every tick.
    fn answers_due(&mut self, _out: &mut Vec<u32>) {}
    /// Whether a long poll gathered its answer and waits for it (checked every turn: no
    /// clock read, no heap).
    fn answers_ready(&self) -> bool {
        false
    }
    /// Give connection `idx` its answer (a long poll's).
    fn answer(&mut self, _idx: u32, _w: &mut Writer, _ctx: &Ctx<'_>) {}
    /// The user connection `idx` authenticated as, if any (for its close log line).
    fn user(&self, _idx: u32) -> Option<std::sync::Arc<str>> {
        None
    }
    /// Whether connection `idx`'s service state can be handed to a new process now.
    fn movable(&self, _idx: u32) -> bool {
        true
    }
    /// Write connection `idx`'s service state out for a new process and release it here
    /// (as a close would, without closing anything).
    fn export(
        &mut self,
        idx: u32,
        counted: bool,
        metrics: &WorkerMetrics,
    ) -> (Option<IdentitySnap>, Option<PubsubSnap>) {
        self.on_release(idx, counted, metrics);
        (None, None)
    }
    /// Take up a connection handed over from the previous process, now in entry `idx`.
    #[allow(clippy::too_many_arguments)]
    fn adopt(
        &mut self,
        _idx: u32,
        _peer: Option<IpAddr>,
        _counted: bool,
        _identity: Option<IdentitySnap>,
        _pubsub: Option<PubsubSnap>,
        _w: &mut Writer,
        _ctx: &Ctx<'_>,
    ) {
    }
}
