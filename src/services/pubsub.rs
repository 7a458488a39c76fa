//! The worker's side of pub/sub: its subscribers' index, control messages from clients,
//! subscribing with replay, offering published frames to a connection under the topic's
//! slow-consumer policy, and leaving topics when a connection goes.

use std::sync::Arc;

use crate::backplane::{Backplane, Member};
use crate::metrics::WorkerMetrics;
use crate::pubsub::{
    self, Control, Delivery, Hub, LocalSubs, Payload, PolicyTable, RequestId, Resume, SlowPolicy,
    Subscription, PENDING,
};
use crate::session::{Ctx, Phase, Writer, GATHER_BYTES};
use crate::slabmap::SlabMap;
use crate::ws::assembler::Message;
use crate::ws::OpCode;

/// The JSON an event stream or a long poll carries for a message, converted at its first
/// such recipient (`None`: the frame has no event form).
pub type EventJson = std::cell::OnceCell<Option<Box<[u8]>>>;

/// A message to offer: its topic's hub id, its sequence number, its frame, and its
/// [`EventJson`] (kept with the message, so each message is converted once however its
/// recipients are visited).
pub type Offered<'a> = (u64, u64, &'a Arc<[u8]>, &'a EventJson);

/// What a worker needs for pub/sub.
#[derive(Debug)]
pub struct PubsubSpec {
    /// The hub every worker and the admin API share.
    pub hub: Arc<Hub>,
    /// Deliveries for this worker's subscribers.
    pub rx: crossbeam_channel::Receiver<Delivery>,
    /// Written by the hub when `rx` has work; ring 0 polls it.
    pub waker: Arc<crate::io::waker::Waker>,
    /// Slow-consumer policy per topic.
    pub policies: Arc<PolicyTable>,
    /// Topic name and per-connection limits.
    pub limits: pubsub::TopicLimits,
    /// Whether clients may publish.
    pub client_publish: bool,
    /// Largest control message, bytes (refused before it is parsed).
    pub max_control_bytes: usize,
    /// Topics a connection may subscribe to or unsubscribe from per second (0: no limit),
    /// with a burst of [`SUBSCRIBE_BURST`] or the per-connection topic limit.
    pub subscribe_rate: u32,
    /// How long a long poll waits for a message before it is answered empty.
    pub poll_hold: std::time::Duration,
    /// The backplane: publishes, users, presence (memory engine or broker).
    pub backplane: Arc<Backplane>,
}

/// A long poll waiting for its answer: the items (JSON values, comma-separated) gathered
/// so far, and when it is due.
#[derive(Debug)]
struct Poll {
    items: Vec<u8>,
    /// Answer soon (something arrived): once the worker's queued deliveries are handed out.
    due: bool,
    /// An item did not fit: this answer takes nothing more, and the cursor stays after the
    /// last item it holds, so the next poll gets the rest.
    full: bool,
    hold_until: std::time::Instant,
    /// A call on the data port waiting for the broker (answered 504 if its hold ends).
    call: bool,
}

/// Whether a long poll's answer takes an item only if it has room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// Within `--max-outbound / 2` (a message, a gap).
    Within,
    /// Always (a small notice the client must not miss: the subscription's answer, a reset).
    Always,
}

/// How long a call on the data port waits for the broker's answer before it is answered
/// 504 (the broker's own timeout is shorter: this only guards against a lost answer).
const CALL_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// One worker's pub/sub state.
#[derive(Debug)]
pub struct PubsubSide {
    /// Long polls (and calls) waiting for their answer.
    polls: SlabMap<Poll>,
    /// Polls that gathered something since the last tick.
    polls_ready: Vec<u32>,
    /// Every poll's end of hold, soonest first (stale entries are skipped).
    poll_ends: std::collections::BinaryHeap<std::cmp::Reverse<(std::time::Instant, u32)>>,
    /// Its configuration and channels.
    pub spec: PubsubSpec,
    /// Its subscribers.
    pub local: LocalSubs,
    worker: usize,
    /// Recipients of the message being delivered (reused).
    scratch: Vec<u32>,
    /// Event JSON of replayed history frames (resuming streams and polls).
    replayed: super::replay_json::ReplayJson,
    /// Subscriptions waiting for the backplane (connection, topic) that are answered other
    /// than plainly when it brings them: handed over, or asked for with a message id.
    waiting: std::collections::HashMap<(u32, u64), Waiter>,
    /// When this side started: the subscribe rate's clock.
    started: std::time::Instant,
}

/// Subscription changes a connection may make at once under `--subscribe-rate` (or
/// `--max-topics-per-connection`, when larger: a client may take every topic it may hold
/// in one go).
pub const SUBSCRIBE_BURST: usize = 64;

fn reply(w: &mut Writer, ctx: &Ctx<'_>, text: &str) {
    w.send_frame(ctx, OpCode::Text, text.as_bytes());
}

/// Refuse a control message (`id`: its `"id"`).
fn control_error(w: &mut Writer, ctx: &Ctx<'_>, reason: &str, id: Option<&RequestId>) {
    ctx.metrics.control_errors.inc();
    reply(w, ctx, &pubsub::reply_error(reason, id));
}

/// Refuse one topic of a subscribe, naming it (the message's other topics may be
/// subscribed).
fn topic_error(w: &mut Writer, ctx: &Ctx<'_>, topic: &str, reason: &str, id: Option<&RequestId>) {
    ctx.metrics.control_errors.inc();
    let r = serde_json::json!({"type": "error", "topic": topic, "reason": reason});
    reply(w, ctx, &pubsub::with_id(r, id));
}

/// How a subscription waiting for the backplane is answered when it comes, other than
/// plainly.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiter {
    /// Handed over from the previous process: silently when everything owed was
    /// recovered (see [`Settled::silent`]).
    Adopted,
    /// A control message with this `"id"` asked for it: the reply carries it.
    Asked(RequestId),
}

impl Waiter {
    /// Whether `w` is a handed-over subscription.
    fn adopted(w: Option<&Self>) -> bool {
        matches!(w, Some(Self::Adopted))
    }

    /// The `"id"` that asked for `w`, if any.
    fn asked(w: Option<&Self>) -> Option<&RequestId> {
        match w {
            Some(Self::Asked(id)) => Some(id),
            _ => None,
        }
    }
}

/// Queue message `seq` of topic `id` for one subscriber, applying the topic's policy if it
/// would cross the outbound cap: `Drop` removes its oldest queued messages of the topic
/// and leaves a gap, `Close` closes it as a slow consumer.
pub fn offer(w: &mut Writer, ctx: &Ctx<'_>, id: u64, seq: u64, frame: &Arc<[u8]>, p: SlowPolicy) {
    if w.phase() != Phase::Open {
        return;
    }
    let cap = ctx.cfg.max_outbound;
    let need = frame.len();
    let out = w.outbound();
    let mut fits = out.queued() + need <= cap;
    if !fits {
        if p == SlowPolicy::Close {
            ctx.metrics.slow_policy_closes.inc();
            return w.close_slow(ctx);
        }
        let mut dropped = out.drop_oldest(id, need, cap).messages;
        fits = out.queued() + need <= cap;
        if !fits {
            // Still no room (other topics or replies fill the queue): this one goes too,
            // named in the gap at the back.
            out.push_gap(id, seq, seq);
            dropped += 1;
        }
        ctx.metrics.slow_drop_events.inc();
        ctx.metrics.delivery_drops.add(dropped);
    }
    if fits {
        w.push_shared(frame.clone(), id, seq);
        ctx.metrics.deliveries.inc();
        ctx.message_out();
        ctx.metrics.bytes_out.add(need as u64);
    }
}

/// Several published messages to one WebSocket recipient at once — a held subscriber
/// taking what it was owed at its phase, or an idle one taking a run — copied into one
/// owned buffer that goes out as one send, when its output is idle and they fit in a
/// gather ([`GATHER_BYTES`], within the outbound cap). Offered one by one, each message
/// cost a queue entry, a reference count taken and dropped, and a pass of the gather over
/// the queue, and the gather copied them anyway. `frames` gives each message's frame, or
/// `None` for one that is not a plain message. Returns whether it queued them; if not,
/// nothing was done and the caller offers them one by one ([`offer`]).
pub fn offer_frames<'f, I>(w: &mut Writer, ctx: &Ctx<'_>, frames: I) -> bool
where
    I: Iterator<Item = Option<&'f [u8]>> + Clone,
{
    if w.phase() != Phase::Open || w.is_stream() || w.is_poll() || w.queued() != 0 {
        return false;
    }
    let (mut n, mut total) = (0u64, 0usize);
    for f in frames.clone() {
        let Some(f) = f else {
            return false;
        };
        n += 1;
        total += f.len();
    }
    // One frame goes out as itself, uncopied (`offer`).
    if n < 2 || total > GATHER_BYTES.min(ctx.cfg.max_outbound) {
        return false;
    }
    // Within the cap: `write` does not close it.
    w.write(ctx, |v| {
        v.reserve_exact(total);
        frames.flatten().for_each(|f| v.extend_from_slice(f));
    });
    ctx.metrics.deliveries.add(n);
    ctx.messages_out(n);
    true
}

/// Answer a call with `status` (a 503 says when to retry: the broker's reconnect backoff
/// is short).
fn answer_call_with(w: &mut Writer, ctx: &Ctx<'_>, status: u16, body: &[u8]) {
    let extra = if status == 503 {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    w.answer_poll(ctx, status, body, extra);
}

/// A subscription being answered.
struct Settled<'a> {
    id: u64,
    name: &'a str,
    epoch: u64,
    owed: &'a Resume,
    resumed: bool,
    policy: SlowPolicy,
    /// A subscription handed over from the previous process: when everything owed was
    /// recovered the client is told nothing (it never left); otherwise it learns as any
    /// resuming client does.
    silent: bool,
    /// The `"id"` of the control message that asked for it.
    asked: Option<&'a RequestId>,
}

/// The JSON payload of a whole unmasked text frame the server encoded (a delivery, a
/// direct message, an event), for writing it as an event instead.
pub fn text_payload(frame: &[u8]) -> Option<&[u8]> {
    let (&b0, &b1) = (frame.first()?, frame.get(1)?);
    if b0 != 0x81 {
        return None;
    }
    let header = match b1 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame.get(header..)
}

/// A delivery frame as the JSON an event stream carries: text deliveries as they are;
/// binary ones (`[topic len][topic][seq][payload]`) as `{"type":"message","topic",
/// "seq","data_base64"}`.
fn event_data(frame: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if let Some(p) = text_payload(frame) {
        return Some(p.into());
    }
    if frame.first() != Some(&0x82) {
        return None;
    }
    let header = match frame.get(1)? & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let body = frame.get(header..)?;
    let tlen = usize::from(*body.first()?);
    let topic = std::str::from_utf8(body.get(1..1 + tlen)?).ok()?;
    let seq = u64::from_be_bytes(body.get(1 + tlen..9 + tlen)?.try_into().ok()?);
    let data = crate::ws::base64::encode(body.get(9 + tlen..)?);
    let v = serde_json::json!({"type": "message", "topic": topic, "seq": seq, "data_base64": data});
    Some(v.to_string().into_bytes().into())
}

/// The event JSON of a message (`frame`), converted at its first use and kept with the
/// message (`event`): one conversion per message, not per subscriber (a binary message's
/// base64 JSON was once built for every event stream it reached). None: the frame is not a
/// message an event can carry.
pub fn event_json<'e>(event: &'e EventJson, frame: &[u8]) -> Option<&'e [u8]> {
    event
        .get_or_init(|| event_data(frame).map(|d| d.into_owned().into()))
        .as_deref()
}

/// What a connection may do, as the pub/sub side asks it.
pub trait Permits {
    /// Whether it may subscribe to `topic`, given the subscription token it sent for it
    /// (if any); Err: the reason sent back.
    fn subscribe(&mut self, topic: &str, token: Option<&str>) -> Result<(), String>;
    /// Whether it may publish on `topic`.
    fn publish(&mut self, topic: &str) -> bool;
}

impl PubsubSide {
    /// The pub/sub side of worker `worker`.
    pub fn new(worker: usize, spec: PubsubSpec) -> Self {
        Self {
            spec,
            local: LocalSubs::for_worker(worker),
            polls: SlabMap::default(),
            polls_ready: Vec::new(),
            poll_ends: std::collections::BinaryHeap::new(),
            worker,
            scratch: Vec::new(),
            replayed: Default::default(),
            waiting: std::collections::HashMap::new(),
            started: std::time::Instant::now(),
        }
    }

    /// The next delivery the hub queued for this worker, if any.
    pub fn next_delivery(&mut self) -> Option<Delivery> {
        let d = self.spec.rx.try_recv().ok()?;
        self.spec.hub.taken(self.worker, &d);
        Some(d)
    }

    /// Whether deliveries wait.
    pub fn has_deliveries(&self) -> bool {
        !self.spec.rx.is_empty()
    }

    /// The local subscribers that take message `seq` of topic `id` live, and the topic's
    /// policy. The list is lent: give it back with [`PubsubSide::give_back`].
    pub fn recipients(&mut self, id: u64, seq: u64) -> Option<(Vec<u32>, SlowPolicy)> {
        let policy = self.local.topic(id)?.policy;
        let mut list = std::mem::take(&mut self.scratch);
        self.local.recipients(id, seq, &mut list);
        Some((list, policy))
    }

    /// The settled subscribers of topic `id` (for gaps, resets, events), lent like
    /// [`PubsubSide::recipients`].
    pub fn settled(&mut self, id: u64) -> Option<(Vec<u32>, SlowPolicy)> {
        let policy = self.local.topic(id)?.policy;
        let mut list = std::mem::take(&mut self.scratch);
        self.local.settled(id, &mut list);
        Some((list, policy))
    }

    /// A list of one connection, if it is a pub/sub connection.
    pub fn one(&mut self, conn: u32) -> Option<(Vec<u32>, SlowPolicy)> {
        self.local.conn_id(conn)?;
        let mut list = std::mem::take(&mut self.scratch);
        list.clear();
        list.push(conn);
        Some((list, SlowPolicy::Drop))
    }

    /// Return a recipient list for reuse.
    pub fn give_back(&mut self, list: Vec<u32>) {
        self.scratch = list;
    }

    /// A connection of `/ws` is open: it takes control messages from now on.
    pub fn join(&mut self, conn: u32) {
        self.local.join(conn);
    }

    /// The worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Offer message `seq` of topic `id` to connection `conn`: a shared frame to a
    /// WebSocket ([`offer`]); to an event stream, an event carrying the connection's cursor
    /// as its id, within the same outbound cap (past it the message is a gap).
    pub fn offer_to(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        (id, seq, frame, event): Offered<'_>,
        policy: SlowPolicy,
    ) {
        if !w.is_stream() && !w.is_poll() {
            return offer(w, ctx, id, seq, frame, policy);
        }
        if w.phase() != Phase::Open {
            return;
        }
        let Some(data) = event_json(event, frame) else {
            return;
        };
        self.offer_event(conn, w, ctx, id, seq, data, policy);
    }

    /// [`PubsubSide::offer_to`] for an event stream or a long poll, with the message's
    /// JSON.
    #[allow(clippy::too_many_arguments)]
    fn offer_event(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        id: u64,
        seq: u64,
        data: &[u8],
        policy: SlowPolicy,
    ) {
        if w.is_poll() {
            // The cursor moves only with what the answer holds.
            if self.gather(conn, ctx, data, Room::Within) {
                self.local.set_after(conn, id, seq);
                ctx.metrics.deliveries.inc();
                ctx.message_out();
            }
            return;
        }
        if w.queued() + data.len() + 256 > ctx.cfg.max_outbound {
            if policy == SlowPolicy::Close {
                ctx.metrics.slow_policy_closes.inc();
                return w.close_slow(ctx);
            }
            ctx.metrics.slow_drop_events.inc();
            ctx.metrics.delivery_drops.inc();
            return w.outbound().push_gap(id, seq, seq);
        }
        self.local.set_after(conn, id, seq);
        ctx.metrics.deliveries.inc();
        ctx.message_out();
        let local = &self.local;
        w.write(ctx, |v| {
            crate::session::sse::write_event_with(v, |v| local.write_cursor(conn, v), data)
        });
    }

    /// A long poll `conn` accepted: its hold starts.
    pub fn poll_opened(&mut self, conn: u32) {
        self.local.set_poll(conn);
        self.wait(conn, self.spec.poll_hold, false);
    }

    /// Poll or call `conn` waits for its answer, `hold` at most.
    fn wait(&mut self, conn: u32, hold: std::time::Duration, call: bool) {
        let hold_until = std::time::Instant::now() + hold;
        let p = Poll {
            items: Vec::new(),
            due: false,
            full: false,
            hold_until,
            call,
        };
        self.polls.insert(conn, p);
        self.poll_end(conn, hold_until);
    }

    /// `POST /publish` on the data port (`may`: the token may publish on `topic`): answered
    /// now (memory engine, or a refusal) or when the broker has numbered it.
    #[allow(clippy::too_many_arguments)]
    pub fn call_publish(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        topic: &str,
        binary: bool,
        body: &[u8],
        may: bool,
    ) {
        let refuse = |w: &mut Writer, status: u16, why: &str| {
            ctx.metrics.control_errors.inc();
            w.answer_poll(ctx, status, pubsub::reply_error(why, None).as_bytes(), "");
        };
        if !self.spec.client_publish {
            return refuse(
                w,
                403,
                "publish_disabled (the server was started without --client-publish)",
            );
        }
        if !may {
            return refuse(
                w,
                403,
                &format!("forbidden: no grant to publish on {topic}"),
            );
        }
        let payload = if binary {
            Payload::Binary(body)
        } else {
            match std::str::from_utf8(body) {
                Ok(t) => Payload::Text(t),
                Err(_) => {
                    return refuse(
                        w,
                        400,
                        "body is not UTF-8 (publish binary with ?binary=1 or \
                         Content-Type: application/octet-stream)",
                    )
                }
            }
        };
        let conn_id = self.local.join(conn);
        let who = (self.worker, conn, conn_id);
        let r = self.spec.backplane.publish_for(topic, payload, who, None);
        if r.is_ok() {
            ctx.metrics.client_publishes.inc();
        }
        self.finish_call(conn, w, ctx, r, |p| {
            pubsub::reply_published(topic, p.seq, p.epoch, None)
        });
    }

    /// `GET /presence` on the data port: answered now (memory engine) or when the broker
    /// has counted.
    pub fn call_presence(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        topic: &str,
        list: bool,
    ) {
        if !self.spec.backplane.is_presence(topic) {
            let why = "not a presence topic (see --presence-prefix)";
            return w.answer_poll(ctx, 404, pubsub::reply_error(why, None).as_bytes(), "");
        }
        let conn_id = self.local.join(conn);
        use crate::backplane::presence::{report_json, CLIENT_MAX_MEMBERS};
        let list = if list { CLIENT_MAX_MEMBERS } else { 0 };
        let r = self
            .spec
            .backplane
            .who_for(topic, list, (self.worker, conn, conn_id));
        self.finish_call(conn, w, ctx, r, |r| report_json(topic, &r));
    }

    /// What the backplane said to a call: its answer now (200 with `json` of it), later
    /// (parked until the broker's reply), or its refusal.
    fn finish_call<T>(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        r: Result<Option<T>, crate::backplane::BackplaneError>,
        json: impl FnOnce(T) -> String,
    ) {
        match r {
            Ok(Some(v)) => w.answer_poll(ctx, 200, json(v).as_bytes(), ""),
            Ok(None) => self.await_broker(conn),
            Err(e) => {
                ctx.metrics.control_errors.inc();
                let body = pubsub::reply_error(&e.reason(), None);
                answer_call_with(w, ctx, e.status(), body.as_bytes());
            }
        }
    }

    /// Note when poll `conn` is due at the latest. Entries of polls answered early stay
    /// until their time; when they outnumber the live ones the heap is rebuilt (amortised
    /// O(1), bounded by twice the polls waiting).
    fn poll_end(&mut self, conn: u32, end: std::time::Instant) {
        self.poll_ends.push(std::cmp::Reverse((end, conn)));
        if self.poll_ends.len() > 2 * self.polls.len() + 1024 {
            let polls = &self.polls;
            self.poll_ends.retain(|std::cmp::Reverse((t, c))| {
                polls.get(c).is_some_and(|p| p.hold_until == *t)
            });
        }
    }

    /// Call `conn` waits for the broker's answer (a [`pubsub::Kind::Reply`]).
    fn await_broker(&mut self, conn: u32) {
        self.wait(conn, CALL_HOLD, true);
    }

    /// The broker answered call `conn`.
    pub fn answer_call(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        status: u16,
        body: &[u8],
    ) {
        if self.polls.remove(&conn).is_some() {
            answer_call_with(w, ctx, status, body);
        }
    }

    /// Add one JSON item to long poll `conn`'s answer; it is answered when the worker has
    /// handed out what is queued (what arrives until then goes in the same answer). False
    /// when the item is not in it: no poll waiting, or the answer is full — from the first
    /// item that does not fit, it takes nothing more (a later, smaller one would jump the
    /// cursor over it), and the caller leaves the cursor where it is.
    fn gather(&mut self, conn: u32, ctx: &Ctx<'_>, json: &[u8], room: Room) -> bool {
        let Some(p) = self.polls.get_mut(&conn).filter(|p| !p.call) else {
            return false;
        };
        let fits = !p.full && p.items.len() + json.len() + 256 <= ctx.cfg.max_outbound / 2;
        if !fits && room == Room::Within {
            // No room in this answer: it is answered as it is, and the client's next poll
            // (from the cursor) gets this one.
            p.full = true;
            if !std::mem::replace(&mut p.due, true) {
                self.polls_ready.push(conn);
            }
            return false;
        }
        if !p.items.is_empty() {
            p.items.push(b',');
        }
        p.items.extend_from_slice(json);
        if !std::mem::replace(&mut p.due, true) {
            self.polls_ready.push(conn);
        }
        true
    }

    /// A gap for long poll `conn`; false if its answer did not take it (the cursor stays).
    pub fn poll_gap(&mut self, conn: u32, id: u64, from: u64, to: u64, ctx: &Ctx<'_>) -> bool {
        let Some(name) = self.local.name(id) else {
            return false;
        };
        let gap = serde_json::json!({"type": "gap", "topic": name, "from": from, "to": to});
        self.gather(conn, ctx, gap.to_string().as_bytes(), Room::Within)
    }

    /// A topic's reset for long poll `conn`. It goes in even past the answer's room (a
    /// few dozen bytes): the cursor moves to the new epoch with it, and a client must not
    /// miss that what it held before is void.
    pub fn poll_reset(&mut self, conn: u32, ctx: &Ctx<'_>, json: &[u8]) {
        self.gather(conn, ctx, json, Room::Always);
    }

    /// Whether a poll gathered something since the last [`PubsubSide::polls_due`].
    pub fn polls_ready(&self) -> bool {
        !self.polls_ready.is_empty()
    }

    /// Long polls to answer now (something arrived, or the hold is over).
    pub fn polls_due(&mut self, now: std::time::Instant, out: &mut Vec<u32>) {
        // Only polls still waiting with something gathered: an entry of a poll that went
        // away may name a slot a new poll (or a parked call) holds now.
        let polls = &self.polls;
        out.extend(
            self.polls_ready
                .drain(..)
                .filter(|c| polls.get(c).is_some_and(|p| p.due)),
        );
        while let Some(&std::cmp::Reverse((end, conn))) = self.poll_ends.peek() {
            if end > now {
                break;
            }
            self.poll_ends.pop();
            // Only if it is still that poll (an answered one's entry may be reused).
            if self
                .polls
                .get(&conn)
                .is_some_and(|p| p.hold_until == end && !p.due)
            {
                out.push(conn);
            }
        }
    }

    /// Answer long poll `conn`: `{"cursor":…,"messages":[…]}`, then it closes.
    pub fn answer_poll(&mut self, conn: u32, w: &mut Writer, ctx: &Ctx<'_>) {
        let Some(p) = self.polls.remove(&conn) else {
            return;
        };
        if p.call {
            let why = "the broker did not answer in time";
            return w.answer_poll(ctx, 504, pubsub::reply_error(why, None).as_bytes(), "");
        }
        let cursor = self.local.cursor(conn);
        let mut body = Vec::with_capacity(p.items.len() + cursor.len() + 32);
        body.extend_from_slice(b"{\"cursor\":");
        body.extend_from_slice(
            serde_json::to_string(&cursor)
                .unwrap_or_default()
                .as_bytes(),
        );
        body.extend_from_slice(b",\"messages\":[");
        body.extend_from_slice(&p.items);
        body.extend_from_slice(b"]}");
        ctx.metrics.polls_answered.inc();
        w.answer_poll(ctx, 200, &body, "");
    }

    /// A long poll went away.
    pub fn poll_gone(&mut self, conn: u32) {
        self.polls.remove(&conn);
    }

    /// An unnumbered frame (a direct message, a presence event) for connection `conn`.
    pub fn offer_frame(&mut self, conn: u32, w: &mut Writer, ctx: &Ctx<'_>, frame: &[u8]) {
        if w.is_poll() {
            if let Some(data) = text_payload(frame) {
                if !self.gather(conn, ctx, data, Room::Within) {
                    // Unnumbered: no cursor brings it back.
                    ctx.metrics.delivery_drops.inc();
                }
            }
            return;
        }
        if w.phase() != Phase::Open || w.queued() + frame.len() > ctx.cfg.max_outbound {
            return;
        }
        ctx.message_out();
        if w.is_stream() {
            if let Some(data) = text_payload(frame) {
                w.write(ctx, |v| {
                    crate::session::sse::write_event(v, None, None, data)
                });
            }
            return;
        }
        w.write(ctx, |v| v.extend_from_slice(frame));
    }

    /// A gap for connection `conn` of an event stream: an event, the cursor past it.
    pub fn stream_gap(&mut self, conn: u32, id: u64, from: u64, to: u64) -> Option<Arc<[u8]>> {
        let name = self.local.name(id)?.to_string();
        if self.local.after(conn, id).is_some_and(|a| a < to) {
            self.local.set_after(conn, id, to);
        }
        let cursor = self.local.cursor(conn);
        let data =
            serde_json::json!({"type": "gap", "topic": name, "from": from, "to": to}).to_string();
        let mut v = Vec::new();
        crate::session::sse::write_event(&mut v, Some(&cursor), None, data.as_bytes());
        Some(v.into())
    }

    /// Whether `conn` may subscribe to or unsubscribe from `n` topics now, under
    /// `--subscribe-rate` (taken if so).
    fn may_change(&mut self, conn: u32, n: usize) -> bool {
        let rate = self.spec.subscribe_rate;
        if rate == 0 {
            return true;
        }
        // Milliseconds since this worker's side started (wraps after 49 days: the bucket
        // copes, see `LocalSubs::take_changes`). Control messages are rare enough to read
        // the clock for.
        let now = self.started.elapsed().as_millis() as u32;
        let burst = self.spec.limits.max_per_connection.max(SUBSCRIBE_BURST) as u32;
        self.local
            .take_changes(conn, now, n as u32, 1000 / rate, burst)
    }

    /// Whether connection `conn` is a pub/sub connection.
    pub fn is_member(&self, conn: u32) -> bool {
        self.local.is_member(conn)
    }

    /// A control message from pub/sub connection `conn`.
    ///
    /// `permits`: what the connection may do. A `refresh` is not handled here: its token
    /// is returned for the identity side, with the message's `"id"`. Every reply carries
    /// the message's id, when it gave one.
    pub fn on_control(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        msg: Message<'_>,
        permits: &mut dyn Permits,
        user: Option<Arc<str>>,
    ) -> Option<(String, Option<RequestId>)> {
        let Message::Text(text) = msg else {
            control_error(w, ctx, "binary_frames_are_not_control_messages", None);
            return None;
        };
        if text.len() > self.spec.max_control_bytes {
            let reason = format!(
                "control_message_too_large (max {} bytes)",
                self.spec.max_control_bytes
            );
            control_error(w, ctx, &reason, None);
            return None;
        }
        let pubsub::Request { id, control } = pubsub::parse_request(text, &self.spec.limits);
        let id = id.as_ref();
        let changes = match &control {
            Ok(Control::Subscribe { topics, .. } | Control::Unsubscribe { topics }) => topics.len(),
            _ => 0,
        };
        if changes > 0 && !self.may_change(conn, changes) {
            ctx.metrics.subscribe_rate_limited.inc();
            let reason = format!(
                "rate_limited (at most {} subscribes and unsubscribes a second, per topic; \
                 this message was not acted on)",
                self.spec.subscribe_rate
            );
            control_error(w, ctx, &reason, id);
            return None;
        }
        match control {
            Err(e) => control_error(w, ctx, &e.reason(), id),
            Ok(Control::Refresh { token }) => return Some((token, id.cloned())),
            Ok(Control::Subscribe {
                topics,
                resume,
                tokens,
            }) => {
                let mut allowed = Vec::with_capacity(topics.len());
                for t in topics {
                    let token = tokens
                        .iter()
                        .find(|(n, _)| *n == t)
                        .map(|(_, j)| j.as_str());
                    match permits.subscribe(&t, token) {
                        Ok(()) => allowed.push(t),
                        Err(reason) => topic_error(w, ctx, &t, &reason, id),
                    }
                }
                let topics = allowed;
                if !topics.is_empty() {
                    self.subscribe(conn, w, ctx, topics, resume, user, id);
                }
            }
            Ok(Control::Unsubscribe { topics }) => {
                for t in topics {
                    if let Some(topic) = self.local.find(conn, &t) {
                        self.local.unsubscribe(conn, topic);
                        self.waiting.remove(&(conn, topic));
                        let conn_id = self.local.conn_id(conn);
                        self.spec.hub.unsubscribe_conn(self.worker, &t, conn_id);
                        self.left(conn, &t, user.clone());
                    }
                    let r = serde_json::json!({"type": "unsubscribed", "topic": t});
                    reply(w, ctx, &pubsub::with_id(r, id));
                }
                self.count(ctx.metrics);
            }
            Ok(Control::Publish { topic, data }) => {
                if !self.spec.client_publish {
                    control_error(
                        w,
                        ctx,
                        "publish_disabled (the server was started without --client-publish)",
                        id,
                    );
                    return None;
                }
                if !permits.publish(&topic) {
                    let reason = format!("forbidden: no grant to publish on {topic}");
                    control_error(w, ctx, &reason, id);
                    return None;
                }
                let conn_id = self.local.conn_id(conn).unwrap_or(0);
                let who = (self.worker, conn, conn_id);
                match self
                    .spec
                    .backplane
                    .publish_for(&topic, Payload::Text(&data), who, id)
                {
                    Ok(Some(p)) => {
                        ctx.metrics.client_publishes.inc();
                        let text = pubsub::reply_published(&topic, p.seq, p.epoch, id);
                        reply(w, ctx, &text);
                    }
                    // With a broker the answer comes back through the worker's queue, with
                    // the id.
                    Ok(None) => ctx.metrics.client_publishes.inc(),
                    Err(e) => control_error(w, ctx, &e.reason(), id),
                }
            }
        }
        None
    }

    /// Subscribe connection `conn` to `topics`, replaying from the resume points given.
    /// Replies `subscribed` (with the newest number, the epoch and, when resuming, whether
    /// everything missed was recovered) per topic, then the gap and the replayed frames if
    /// resuming; live messages follow without duplicates. A topic the backplane has not
    /// brought yet is answered when it has ([`PubsubSide::ready`]). Replies carry `asked`,
    /// the `"id"` of the control message that asked (none at the handshake).
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        topics: Vec<String>,
        resume: Vec<(String, pubsub::Position)>,
        user: Option<Arc<str>>,
        asked: Option<&RequestId>,
    ) {
        let max = self.spec.limits.max_per_connection;
        let held = self.local.topics_of(conn).len();
        let new = topics
            .iter()
            .filter(|t| self.local.find(conn, t).is_none())
            .count();
        if held + new > max {
            let e = pubsub::TopicError::TooManyTopics { max };
            return control_error(w, ctx, &e.reason(), asked);
        }
        let conn_id = self.local.join(conn);
        let waiter = asked.cloned().map(Waiter::Asked);
        for topic in topics {
            let from = resume.iter().find(|(t, _)| *t == topic).map(|(_, s)| *s);
            let (who, user) = (waiter.clone(), user.clone());
            self.subscribe_one(conn, conn_id, w, ctx, &topic, from, who, user);
        }
        self.count(ctx.metrics);
    }

    /// Subscribe `conn` to one topic from `from` (a resume point, if any): answered now, or
    /// when the backplane brings the topic. `waiter`: a subscription handed over from the
    /// previous process (see [`PubsubSide::adopt`]), or asked for by a message with an id.
    #[allow(clippy::too_many_arguments)]
    fn subscribe_one(
        &mut self,
        conn: u32,
        conn_id: u64,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        topic: &str,
        from: Option<pubsub::Position>,
        waiter: Option<Waiter>,
        user: Option<Arc<str>>,
    ) {
        let asked = Waiter::asked(waiter.as_ref());
        let sub = match self
            .spec
            .hub
            .subscribe_conn(self.worker, topic, from, conn, conn_id)
        {
            Ok(x) => x,
            Err(e) => return topic_error(w, ctx, topic, &e.reason(), asked),
        };
        let policy = self.spec.policies.for_topic(topic);
        match sub {
            Subscription::Pending { id } => {
                if !self.local.subscribe(conn, id, topic, policy, PENDING) {
                    // Already subscribed: the hub counted it twice.
                    self.spec.hub.unsubscribe(self.worker, topic);
                } else if let Some(waiter) = waiter {
                    self.waiting.insert((conn, id), waiter);
                }
            }
            Subscription::Now(sub) => {
                if !self
                    .local
                    .subscribe(conn, sub.id, topic, policy, sub.owed.last)
                {
                    self.spec.hub.unsubscribe(self.worker, topic);
                }
                let settled = Settled {
                    id: sub.id,
                    name: topic,
                    epoch: sub.epoch,
                    owed: &sub.owed,
                    resumed: from.is_some(),
                    policy,
                    silent: Waiter::adopted(waiter.as_ref()),
                    asked,
                };
                self.settle(conn, w, ctx, &settled, user);
            }
        }
    }

    /// A subscription is answered: the reply, then the gap and the replayed frames.
    fn settle(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        s: &Settled<'_>,
        user: Option<Arc<str>>,
    ) {
        let recovered = s.resumed.then_some(s.owed.recovered);
        match recovered {
            Some(true) => ctx.metrics.resumes_recovered.inc(),
            Some(false) => ctx.metrics.resumes_not_recovered.inc(),
            None => {}
        }
        if s.resumed {
            let gap = s.owed.gap.map(|(a, b)| b.saturating_sub(a) + 1);
            ctx.metrics
                .hist
                .record_resume(s.owed.frames.len() as u64, gap);
        }
        self.local.set_epoch(s.id, s.epoch);
        // Made only where it is sent: a poll that resumes recovered (every poll after the
        // first) has no use for it, and making it was 8% of a polling server's CPU.
        let text = || pubsub::reply_subscribed(s.name, s.owed.last, s.epoch, recovered, s.asked);
        if s.silent && s.owed.recovered {
            // Handed over: the client never left, and nothing it was owed is lost.
        } else if w.is_poll() {
            // A poll's answer tells what the subscription got when it matters: a fresh
            // subscription (no cursor for the topic: answered at once, so the client learns
            // the position to poll from), or a resume that was not recovered (the client
            // must reset).
            if recovered != Some(true) {
                self.gather(conn, ctx, text().as_bytes(), Room::Always);
            }
            // The cursor starts before what is owed and moves with what the answer takes
            // (one that fills up leaves the rest to the next poll).
            let mut after = s
                .owed
                .frames
                .first()
                .map_or(s.owed.last, |f| f.0.saturating_sub(1));
            if let Some((a, b)) = s.owed.gap {
                let gap = serde_json::json!({"type": "gap", "topic": s.name, "from": a, "to": b});
                if !self.gather(conn, ctx, gap.to_string().as_bytes(), Room::Within) {
                    after = a - 1;
                }
                after = after.min(b);
            }
            self.local.set_after(conn, s.id, after);
        } else {
            reply(w, ctx, &text());
            if let Some((a, b)) = s.owed.gap {
                w.outbound().push_gap(s.id, a, b);
            }
        }
        let events = w.is_stream() || w.is_poll();
        for (seq, frame) in &s.owed.frames {
            if !events {
                let none = EventJson::new(); // a WebSocket takes the frame itself
                self.offer_to(conn, w, ctx, (s.id, *seq, frame, &none), s.policy);
                continue;
            }
            if self.polls.get(&conn).is_some_and(|p| p.full) {
                break; // the next poll takes the rest, from the cursor
            }
            // Converted once for every stream and poll resuming over the same history.
            let json = self.replayed.cell(frame);
            self.offer_to(conn, w, ctx, (s.id, *seq, frame, &json), s.policy);
        }
        if self.is_member_of(conn, s.name) {
            let m = self.member(conn, user);
            self.spec.backplane.presence(s.name, m, true);
        }
    }

    /// Whether `conn` is a presence member of `topic`: subscribed to a presence topic, and
    /// not a long poll. A poll is one request of a series: as a member it came and went with
    /// each one (a new connection id each time, two broker writes a poll), and with
    /// `--presence-events` its own join answered it at once — one poll client spun thousands
    /// of polls a second and sent every subscriber of the topic a join and a leave for each.
    fn is_member_of(&self, conn: u32, topic: &str) -> bool {
        self.spec.backplane.is_presence(topic) && !self.local.is_poll(conn)
    }

    /// A pending subscription's topic arrived from the backplane: answer it now, if the
    /// connection is still the one that asked and still subscribed.
    pub fn ready(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        topic: u64,
        r: &pubsub::Ready,
        user: Option<Arc<str>>,
    ) {
        if self.local.conn_id(conn) != Some(r.conn_id)
            || !self.local.set_after(conn, topic, r.owed.last)
        {
            return;
        }
        let policy = self
            .local
            .topic(topic)
            .map_or(SlowPolicy::Drop, |t| t.policy);
        let waiter = self.waiting.remove(&(conn, topic));
        let settled = Settled {
            id: topic,
            name: &r.name,
            epoch: r.epoch,
            owed: &r.owed,
            resumed: r.resumed,
            policy,
            silent: Waiter::adopted(waiter.as_ref()),
            asked: Waiter::asked(waiter.as_ref()),
        };
        self.settle(conn, w, ctx, &settled, user);
    }

    /// Subscribe a connection handed over from the previous process to `subs` (topic,
    /// epoch, last number queued to it), silently: it gets what was numbered after its
    /// position (replayed from the window, or from the broker), and is told only if that
    /// could not be recovered.
    pub fn adopt(
        &mut self,
        conn: u32,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        subs: Vec<(String, u64, u64)>,
        user: Option<Arc<str>>,
    ) {
        let conn_id = self.local.join(conn);
        for (topic, epoch, after) in subs {
            let from = pubsub::Position {
                seq: after,
                epoch: Some(epoch),
            };
            self.subscribe_one(
                conn,
                conn_id,
                w,
                ctx,
                &topic,
                Some(from),
                Some(Waiter::Adopted),
                user.clone(),
            );
        }
        self.count(ctx.metrics);
    }

    /// This connection as a presence member.
    fn member(&self, conn: u32, user: Option<Arc<str>>) -> Member {
        Member {
            node: self.spec.backplane.node().clone(),
            conn: format!("{:x}", self.local.conn_id(conn).unwrap_or(0)),
            user,
            client: self.local.client(conn).map(Into::into),
            since: crate::auth::unix_now(),
        }
    }

    /// `conn` left `topic` (unsubscribed or closed): its presence goes.
    fn left(&self, conn: u32, topic: &str, user: Option<Arc<str>>) {
        if self.is_member_of(conn, topic) {
            let m = self.member(conn, user);
            self.spec.backplane.presence(topic, m, false);
        }
    }

    /// The gap frame for topic `id`, if connections here still follow it.
    pub fn gap_frame(&self, id: u64, from: u64, to: u64) -> Option<Arc<[u8]>> {
        Some(pubsub::encode_gap(self.local.name(id)?, from, to))
    }

    /// Connection `conn` is going: drop its subscriptions (local index and hub counts).
    pub fn leave(&mut self, conn: u32, metrics: &WorkerMetrics, user: Option<Arc<str>>) {
        if !self.local.is_member(conn) {
            return;
        }
        // Only its own entries: a scan of the whole set cost every close O(subscriptions
        // adopted and still waiting), which a broker down after a hand-over keeps large.
        if !self.waiting.is_empty() {
            for &id in self.local.topics_of(conn) {
                self.waiting.remove(&(conn, id));
            }
        }
        // Its presence member is built only when it leaves a presence topic.
        let presence = self.local.topics_of(conn).iter().any(|&id| {
            self.local
                .name(id)
                .is_some_and(|n| self.is_member_of(conn, n))
        });
        let conn_member = presence.then(|| self.member(conn, user));
        let conn_id = self.local.conn_id(conn);
        for name in self.local.leave(conn) {
            self.spec.hub.unsubscribe_conn(self.worker, &name, conn_id);
            if let Some(m) = conn_member
                .as_ref()
                .filter(|_| self.spec.backplane.is_presence(&name))
            {
                self.spec.backplane.presence(&name, m.clone(), false);
            }
        }
        self.count(metrics);
    }

    fn count(&self, metrics: &WorkerMetrics) {
        metrics.subscriptions.set(self.local.subscriptions() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::{PolicyTable, ReplayLimits, TopicLimits};

    fn side(hold: std::time::Duration) -> PubsubSide {
        let (hub, mut rx) = Hub::new(
            vec![Box::new(|| {})],
            TopicLimits::default(),
            ReplayLimits {
                messages: 4,
                bytes: 1 << 20,
                budget: 1 << 30,
                idle_expiry: 0,
                epoch_seed: 1,
                max_topics: 16,
                queue_messages: 100,
                queue_bytes: 1 << 20,
                queue_deliveries: 1 << 20,
                max_frame: 1 << 20,
            },
        );
        let opts = crate::backplane::Options {
            url: None,
            node: "test".into(),
            history: 4,
            history_bytes: 1 << 20,
            history_ttl: 0,
            presence_prefix: "presence:".into(),
            presence_ttl: 30,
            presence_events: false,
        };
        let backplane = crate::backplane::Backplane::start(opts, hub.clone()).unwrap();
        PubsubSide::new(
            0,
            PubsubSpec {
                hub,
                rx: rx.remove(0),
                waker: Arc::new(crate::io::waker::Waker::new().unwrap()),
                policies: Arc::new(PolicyTable::parse(SlowPolicy::Drop, "").unwrap()),
                limits: TopicLimits::default(),
                client_publish: true,
                max_control_bytes: 4096,
                subscribe_rate: 0,
                poll_hold: hold,
                backplane,
            },
        )
    }

    fn test_ctx<'a>(cfg: &'a crate::session::Config, metrics: &'a WorkerMetrics) -> Ctx<'a> {
        Ctx {
            cfg,
            metrics,
            now: 0,
            trace: None,
        }
    }

    #[test]
    fn a_ready_poll_that_went_away_does_not_answer_the_next_one_in_its_slot() {
        let cfg = crate::session::pair::test_config();
        let metrics = WorkerMetrics::default();
        let ctx = test_ctx(&cfg, &metrics);
        let hold = std::time::Duration::from_secs(60);
        let mut s = side(hold);
        let mut due = Vec::new();
        // A poll gathers something (due at the next turn), then goes away; a new poll
        // takes its slot.
        s.poll_opened(5);
        s.poll_reset(5, &ctx, b"{}");
        s.poll_gone(5);
        s.poll_opened(5);
        s.polls_due(std::time::Instant::now(), &mut due);
        assert!(due.is_empty(), "the new poll waits: {due:?}");
        // Something for it: due once, even if asked twice.
        s.poll_reset(5, &ctx, b"{}");
        s.poll_reset(5, &ctx, b"{}");
        s.polls_due(std::time::Instant::now(), &mut due);
        assert_eq!(due, [5]);
        // A parked call in a slot a gathered poll left is not answered early either.
        due.clear();
        s.poll_opened(6);
        s.poll_reset(6, &ctx, b"{}");
        s.poll_gone(6);
        s.await_broker(6);
        s.polls_due(std::time::Instant::now(), &mut due);
        assert!(due.is_empty(), "{due:?}");
        // At the end of its hold a quiet poll is due, and past its guard the parked call
        // (to be answered 504).
        s.poll_opened(7);
        s.polls_due(std::time::Instant::now() + hold, &mut due);
        due.sort_unstable();
        assert_eq!(due, [6, 7]);
    }

    #[test]
    fn a_poll_answer_that_fills_up_takes_nothing_more_except_notices() {
        let mut cfg = crate::session::pair::test_config();
        cfg.max_outbound = 4096; // an answer holds 2 KiB
        let metrics = WorkerMetrics::default();
        let ctx = test_ctx(&cfg, &metrics);
        let mut s = side(std::time::Duration::from_secs(60));
        let big = vec![b'x'; 1000];
        assert!(!s.gather(5, &ctx, b"{}", Room::Within), "no poll waiting");
        s.poll_opened(5);
        assert!(s.gather(5, &ctx, &big, Room::Within));
        assert!(
            !s.gather(5, &ctx, &big, Room::Within),
            "no room for a second"
        );
        assert!(
            !s.gather(5, &ctx, b"{}", Room::Within),
            "nor for a smaller one after it: it would pass the cursor over the first"
        );
        assert!(
            s.gather(5, &ctx, b"{}", Room::Always),
            "a notice still goes in"
        );
        let mut due = Vec::new();
        s.polls_due(std::time::Instant::now(), &mut due);
        assert_eq!(due, [5], "due once");
        assert_eq!(s.polls[&5].items.len(), 1000 + 1 + 2);
    }

    #[test]
    fn adopted_subscriptions_waiting_for_the_broker_are_forgotten_by_their_own_connection() {
        let cfg = crate::session::pair::test_config();
        let metrics = WorkerMetrics::default();
        let ctx = test_ctx(&cfg, &metrics);
        let mut s = side(std::time::Duration::from_secs(60));
        // A broker: topics wait for its numbering, so adopted subscriptions are pending.
        s.spec.hub.attach_external(Box::new(|_| {}));
        let mut session = crate::session::Session::new(0);
        let subs = |names: &[&str]| names.iter().map(|n| (n.to_string(), 1, 5)).collect();
        s.adopt(1, session.writer(), &ctx, subs(&["a", "b"]), None);
        s.adopt(2, session.writer(), &ctx, subs(&["a"]), None);
        s.adopt(3, session.writer(), &ctx, subs(&["b"]), None);
        let mut waiting: Vec<u32> = s.waiting.keys().map(|&(c, _)| c).collect();
        waiting.sort_unstable();
        assert_eq!(waiting, [1, 1, 2, 3]);
        assert!(s.local.waiting(1), "pending until the broker numbers them");
        // One leaves: only its entries go.
        s.leave(1, &metrics, None);
        let mut waiting: Vec<u32> = s.waiting.keys().map(|&(c, _)| c).collect();
        waiting.sort_unstable();
        assert_eq!(waiting, [2, 3]);
        // An unsubscribe takes its entry too, so a later subscription in the slot is not
        // settled silently as if adopted.
        let b = s.local.find(3, "b").unwrap();
        struct All;
        impl Permits for All {
            fn subscribe(&mut self, _: &str, _: Option<&str>) -> Result<(), String> {
                Ok(())
            }
            fn publish(&mut self, _: &str) -> bool {
                true
            }
        }
        let msg = Message::Text(r#"{"op":"unsubscribe","topics":["b"]}"#);
        assert_eq!(
            s.on_control(3, session.writer(), &ctx, msg, &mut All, None),
            None
        );
        assert!(!s.waiting.contains_key(&(3, b)), "{:?}", s.waiting);
        assert!(s.waiting.keys().all(|&(c, _)| c == 2));
        // The hub's waiting subscriptions went with them: only connection 2's to "a".
        assert_eq!((s.spec.hub.waiting("a"), s.spec.hub.waiting("b")), (1, 0));
    }

    #[test]
    fn messages_for_an_idle_websocket_go_in_one_owned_send_and_otherwise_one_by_one() {
        use crate::io::SendBuf;
        use crate::session::pair::{Pair, Seen};
        let mut p = Pair::new(crate::session::pair::test_config());
        p.open(&[]);
        p.stall = true;
        let frame = |t: &str| {
            let mut v = Vec::new();
            crate::ws::frame::encode_frame(&mut v, true, OpCode::Text, None, t.as_bytes());
            Arc::<[u8]>::from(v)
        };
        let (a, b, c) = (frame("a"), frame("bb"), frame("ccc"));
        let big = frame(&"x".repeat(GATHER_BYTES / 2));
        let ctx = Ctx {
            cfg: &p.cfg,
            metrics: &p.metrics,
            now: 0,
            trace: None,
        };
        let w = p.session.writer();
        // Not taken (nothing done): something that is not a plain message, one frame alone
        // (it goes uncopied), more than a gather.
        assert!(!offer_frames(w, &ctx, [Some(&a[..]), None].into_iter()));
        assert!(!offer_frames(w, &ctx, [Some(&a[..])].into_iter()));
        assert!(!offer_frames(
            w,
            &ctx,
            [Some(&big[..]), Some(&big[..])].into_iter()
        ));
        assert_eq!(w.queued(), 0, "refused offers queue nothing");
        assert!(offer_frames(
            w,
            &ctx,
            [Some(&a[..]), Some(&b[..])].into_iter()
        ));
        // Output not idle: one by one, behind them.
        assert!(!offer_frames(
            w,
            &ctx,
            [Some(&c[..]), Some(&c[..])].into_iter()
        ));
        offer(w, &ctx, 1, 3, &c, SlowPolicy::Drop);
        assert_eq!(p.metrics.deliveries.get(), 3);
        assert_eq!(p.metrics.messages_out.get(), 3);
        p.drive();
        match &p.inflight {
            // One send: the two in their own buffer, the one behind them gathered into it.
            Some(SendBuf::Owned(v)) => assert_eq!(v[..], [&a[..], &b[..], &c[..]].concat()[..]),
            other => panic!("{other:?}"),
        }
        p.stall = false;
        p.release();
        let seen = p.received();
        let texts = ["a", "bb", "ccc"].map(|t| Seen::Text(t.into()));
        assert_eq!(seen, texts);
    }
}
