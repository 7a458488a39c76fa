//! What connections are for, above the session: routing an upgrade request to a service,
//! admission (limits, drain), echo, and the worker's side of pub/sub. [`ConnHost`] is the
//! session's [`Host`] for one connection.
//!
//! **Architecture Invariant:** services see sessions (through [`Writer`]) and the pub/sub
//! hub, never a ring, a socket or the worker loop; the reactor calls them through
//! [`ConnHost`] and a few delivery and release hooks.

pub mod admission;
mod handover;
pub mod identity;
pub mod limits;
pub mod pubsub;
mod replay_json;

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

pub use admission::Admission;
pub use identity::{Edge, IdentitySide};
pub use pubsub::{PubsubSide, PubsubSpec};

use crate::metrics::{Limit, WorkerMetrics};
use crate::session::{self, Answer, Ctx, Host, Writer};
use crate::ws::assembler::Message;
use crate::ws::handshake::{Rejection, Request};
use crate::ws::OpCode;

/// The endpoints a request may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/echo` and `/`: every message comes back.
    Echo,
    /// `/ws`: pub/sub, with the subscription asked for in the query (topics, resume points)
    /// and what the client says it is (`client=`, shown in presence).
    PubSub(
        Vec<String>,
        Vec<(String, crate::pubsub::Position)>,
        Option<Box<str>>,
    ),
    /// `/sse` (a plain GET): the same subscription as an event stream; resume points come
    /// from `resume=` and from `Last-Event-ID` (a cursor the stream's events carried).
    Stream(
        Vec<String>,
        Vec<(String, crate::pubsub::Position)>,
        Option<Box<str>>,
    ),
    /// `/poll` (a plain GET): everything after `cursor=` (or `resume=`), or the next
    /// messages within the hold, as one JSON answer.
    Poll(
        Vec<String>,
        Vec<(String, crate::pubsub::Position)>,
        Option<Box<str>>,
    ),
    /// The data port's HTTP API, for what an event stream or a poll cannot say.
    Call(Call),
}

/// A call on the data port's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `POST /publish?topic=T`: the body is the message (binary with `binary=1` or
    /// `Content-Type: application/octet-stream`, else UTF-8 text); needs `--client-publish`
    /// and a token that may publish on T.
    Publish {
        /// The topic (validated).
        topic: String,
        /// Binary or text.
        binary: bool,
    },
    /// `GET /presence?topic=T[&members=0]`: who is on T; needs a token that may subscribe
    /// to T.
    Presence {
        /// The topic (validated).
        topic: String,
        /// Whether to list the members (or only count).
        list: bool,
    },
}

/// The call a `POST /publish` or `GET /presence` asks for, or its 400.
fn call(req: &Request<'_>, limits: &crate::pubsub::TopicLimits) -> Result<Call, Answer> {
    let bad = |why: String| Answer::Refuse(Limit::BadRequest, Rejection::BadRequest, why);
    let topic = req
        .query_param("topic")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("missing ?topic=".into()))?;
    crate::pubsub::validate_topic(topic, limits).map_err(|e| bad(e.reason()))?;
    let topic = topic.to_string();
    Ok(match req.path {
        "/publish" => {
            let octets = req.header("content-type").is_some_and(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/octet-stream"))
            });
            Call::Publish {
                topic,
                binary: octets || flag(req, "binary", false)?,
            }
        }
        _ => Call::Presence {
            topic,
            list: flag(req, "members", true)?,
        },
    })
}

/// A 0-or-1 parameter: `default` when absent, a 400 for any other value.
fn flag(req: &Request<'_>, name: &str, default: bool) -> Result<bool, Answer> {
    crate::ws::handshake::zero_or_one(req.query_param(name), default).ok_or_else(|| {
        Answer::Refuse(
            Limit::BadRequest,
            Rejection::BadRequest,
            format!("bad_parameter {name} (0 or 1)"),
        )
    })
}

/// The `client=` parameter of a pub/sub upgrade: at most 64 bytes of `A-Z a-z 0-9 . _ - : /`.
fn client_info(query: &str) -> Result<Option<Box<str>>, String> {
    let Some(v) = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "client")
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    let limits = crate::pubsub::TopicLimits {
        max_len: 64,
        ..Default::default()
    };
    // The rules are a topic name's, but the refusal names the parameter: "client:
    // topic_too_long" sent a developer looking at their topics.
    use crate::pubsub::TopicError;
    crate::pubsub::validate_topic(v, &limits)
        .map(|()| Some(v.into()))
        .map_err(|e| match e {
            TopicError::Empty => "client_empty (give client=NAME or leave it out)".into(),
            TopicError::TooLong { max } => format!("client_too_long (max {max} bytes)"),
            TopicError::BadByte { at } => {
                let allowed = crate::pubsub::topic::NAME_BYTES;
                format!("client_bad_character at byte {at} (allowed: {allowed})")
            }
            other => format!("client: {}", other.reason()),
        })
}

/// The query parameters that name one thing each (`topics=` and `resume=` are lists: theirs
/// add up).
const ONE_VALUE: [&str; 6] = ["topic", "binary", "members", "cursor", "client", "token"];

/// Which service a request is for, or the refusal (400 for a bad subscription query or a
/// parameter given twice, 404 for an unknown path or an endpoint turned off).
pub fn route(
    req: &Request<'_>,
    limits: &crate::pubsub::TopicLimits,
    edge: &Edge,
) -> Result<Route, Answer> {
    if let Some(name) = req
        .query
        .and_then(|q| crate::ws::handshake::repeated_param(q, &ONE_VALUE))
    {
        let why = format!("duplicate_parameter {name} (give it once)");
        return Err(Answer::Refuse(
            Limit::BadRequest,
            Rejection::BadRequest,
            why,
        ));
    }
    match req.path {
        "/echo" | "/" if edge.echo => Ok(Route::Echo),
        "/ws" if edge.pubsub => {
            let query = req.query.unwrap_or("");
            let bad = |why: String| Answer::Refuse(Limit::BadRequest, Rejection::BadRequest, why);
            let client = client_info(query).map_err(bad)?;
            match crate::pubsub::parse_query(query, limits) {
                Ok(crate::pubsub::Control::Subscribe { topics, resume, .. }) => {
                    Ok(Route::PubSub(topics, resume, client))
                }
                Ok(_) => Ok(Route::PubSub(Vec::new(), Vec::new(), client)),
                Err(e) => Err(bad(e.reason())),
            }
        }
        "/sse" | "/poll" if edge.pubsub && req.key.is_empty() => {
            let query = req.query.unwrap_or("");
            let bad = |why: String| Answer::Refuse(Limit::BadRequest, Rejection::BadRequest, why);
            let client = client_info(query).map_err(bad)?;
            let (topics, mut resume) = match crate::pubsub::parse_query(query, limits) {
                Ok(crate::pubsub::Control::Subscribe { topics, resume, .. }) => (topics, resume),
                Ok(_) => (Vec::new(), Vec::new()),
                Err(e) => return Err(bad(e.reason())),
            };
            // The cursor of the last event received (an event stream's reconnect sends it
            // as Last-Event-ID; a poll as cursor=): it wins over `resume=` for its topics.
            // Given twice, the first was read: a proxy in front may read the other.
            if req.header_values("last-event-id").nth(1).is_some() {
                return Err(bad("duplicate_header Last-Event-ID (give it once)".into()));
            }
            let cursor = match req.path {
                "/sse" => req.header("last-event-id"),
                _ => req.query_param("cursor"),
            };
            if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
                let parsed = crate::pubsub::parse_query(&format!("resume={cursor}"), limits)
                    .map_err(|e| bad(format!("cursor: {}", e.reason())))?;
                if let crate::pubsub::Control::Subscribe {
                    resume: from_id, ..
                } = parsed
                {
                    resume.retain(|(t, _)| !from_id.iter().any(|(u, _)| u == t));
                    resume.extend(from_id);
                }
            }
            Ok(match req.path {
                "/sse" => Route::Stream(topics, resume, client),
                _ => Route::Poll(topics, resume, client),
            })
        }
        "/publish" | "/presence" if edge.pubsub && req.key.is_empty() => {
            call(req, limits).map(Route::Call)
        }
        _ => Err(Answer::Refuse(
            Limit::NotFound,
            Rejection::NotFound,
            "no such endpoint".into(),
        )),
    }
}

/// One worker's services.
#[derive(Debug)]
pub struct Services {
    /// Limits and the WebSocket count.
    pub admission: Admission,
    /// Pub/sub.
    pub pubsub: PubsubSide,
    /// Who each connection is and what it may do.
    pub identity: IdentitySide,
    /// Connections to close because their user was disconnected everywhere.
    pub kicks: Vec<u32>,
}

impl Services {
    /// What connection `idx`'s request held here (its subscriptions, its poll, its user),
    /// released.
    fn forget(&mut self, idx: u32, metrics: &WorkerMetrics) {
        let user = self.identity.user(idx);
        self.pubsub.poll_gone(idx);
        self.pubsub.leave(idx, metrics, user.clone());
        if let Some(u) = user {
            self.pubsub.spec.backplane.user_closed(&u);
        }
        self.identity.leave(idx);
    }
}

impl session::Services for Services {
    type Host<'a> = ConnHost<'a>;
    /// The hub's message, its topic's slow-consumer policy, and its JSON for event streams
    /// and long polls — converted at the first such recipient and kept with the message for
    /// the rest (a run offers several messages to each recipient in turn: a cache of the
    /// last conversion missed at every offer, and event streams paid a conversion per
    /// delivery).
    type Delivery = (
        crate::pubsub::Delivery,
        crate::pubsub::SlowPolicy,
        pubsub::EventJson,
    );

    fn host(&mut self, idx: u32) -> ConnHost<'_> {
        ConnHost::new(idx, self)
    }

    fn on_accept(&mut self, idx: u32, peer: Option<IpAddr>) -> Option<Answer> {
        self.admission.on_accept(idx, peer, Instant::now())
    }

    fn on_release(&mut self, idx: u32, counted: bool, metrics: &WorkerMetrics) {
        self.forget(idx, metrics);
        self.admission.on_release(idx, counted);
    }

    fn on_recycle(&mut self, idx: u32, counted: bool, metrics: &WorkerMetrics) {
        self.forget(idx, metrics);
        self.admission.on_request_done(counted);
    }

    fn websockets(&self) -> usize {
        self.admission.websockets
    }

    fn next_rand(&mut self) -> u64 {
        self.admission.next_rand()
    }

    fn wake_fd(&self) -> RawFd {
        self.pubsub.spec.waker.raw_fd()
    }

    fn on_wake(&mut self) {
        self.pubsub.spec.waker.taken();
    }

    fn claim_wakes(&self) {
        self.pubsub.spec.waker.claim();
    }

    fn own_wake(&mut self) -> bool {
        self.pubsub.spec.waker.take_own()
    }

    fn next_delivery(&mut self) -> Option<(Self::Delivery, Vec<u32>)> {
        use crate::pubsub::Kind;
        loop {
            let d = self.pubsub.next_delivery()?;
            let list = match &d.kind {
                // None: every local subscriber left since it was queued.
                Kind::Message => self.pubsub.recipients(d.topic, d.seq),
                Kind::Gap { .. } | Kind::Reset { .. } | Kind::Event => self.pubsub.settled(d.topic),
                Kind::Ready(r) => self.pubsub.one(r.conn),
                Kind::Reply { conn, .. } => self.pubsub.one(*conn),
                Kind::Direct(user) => {
                    let conns = self.identity.conns_of(user);
                    (!conns.is_empty()).then(|| (conns.to_vec(), crate::pubsub::SlowPolicy::Drop))
                }
                Kind::Kick(user) => {
                    let conns = self.identity.conns_of(user).to_vec();
                    self.kicks.extend(conns);
                    None
                }
            };
            if let Some((list, policy)) = list {
                return Some(((d, policy, pubsub::EventJson::new()), list));
            }
        }
    }

    fn published_at(d: &Self::Delivery) -> Option<Instant> {
        d.0.at
    }

    fn delivery_bytes(d: &Self::Delivery, streams: bool) -> usize {
        let frame = d.0.frame.len();
        if streams {
            frame + pubsub::event_json(&d.2, &d.0.frame).map_or(0, <[u8]>::len)
        } else {
            frame
        }
    }

    fn offer_runs<'m, I>(&mut self, idx: u32, runs: I, w: &mut Writer, ctx: &Ctx<'_>)
    where
        I: Iterator<Item = &'m [Self::Delivery]> + Clone,
    {
        use crate::pubsub::Kind;
        let frames = runs.clone().flatten().map(|d| match d.0.kind {
            Kind::Message => Some(&d.0.frame[..]),
            _ => None,
        });
        if !pubsub::offer_frames(w, ctx, frames) {
            for d in runs.flatten() {
                self.offer(idx, d, w, ctx);
            }
        }
    }

    fn offer(&mut self, idx: u32, d: &Self::Delivery, w: &mut Writer, ctx: &Ctx<'_>) {
        use crate::pubsub::Kind;
        let (d, policy, event) = (&d.0, d.1, &d.2);
        match &d.kind {
            Kind::Message => {
                self.pubsub
                    .offer_to(idx, w, ctx, (d.topic, d.seq, &d.frame, event), policy)
            }
            Kind::Gap { from, to } => {
                // Only what this connection was still owed: one that subscribed (or
                // resumed) past part of the range is told of the rest, or of nothing.
                let after = self.pubsub.local.after(idx, d.topic).unwrap_or(u64::MAX);
                if w.phase() == session::Phase::Open && after < *to {
                    let from = (*from).max(after + 1);
                    if !w.is_poll() {
                        w.outbound().push_gap(d.topic, from, *to);
                        self.pubsub.local.set_after(idx, d.topic, *to);
                    } else if self.pubsub.poll_gap(idx, d.topic, from, *to, ctx) {
                        // A poll's cursor passes the gap only if its answer says so.
                        self.pubsub.local.set_after(idx, d.topic, *to);
                    }
                }
            }
            Kind::Reset { epoch } => {
                if w.phase() == session::Phase::Open {
                    self.pubsub.local.set_after(idx, d.topic, d.seq);
                    self.pubsub.local.set_epoch(d.topic, *epoch);
                    if let Some(name) = self.pubsub.local.name(d.topic) {
                        let text = crate::pubsub::reply_reset(name, *epoch, d.seq);
                        if w.is_poll() {
                            self.pubsub.poll_reset(idx, ctx, text.as_bytes());
                        } else {
                            w.send_frame(ctx, OpCode::Text, text.as_bytes());
                        }
                    }
                }
            }
            Kind::Ready(r) => {
                let user = self.identity.user(idx);
                self.pubsub.ready(idx, w, ctx, d.topic, r, user);
            }
            // Only to the connection that asked (its slot may hold another by now).
            Kind::Reply {
                conn_id, status, ..
            } if self.pubsub.local.conn_id(idx) == Some(*conn_id) => {
                if w.is_poll() {
                    // A call on the data port waiting for the broker's answer.
                    let body = pubsub::text_payload(&d.frame).unwrap_or_default();
                    self.pubsub.answer_call(idx, w, ctx, *status, body);
                } else {
                    w.write(ctx, |v| v.extend_from_slice(&d.frame));
                }
            }
            Kind::Reply { .. } => {}
            Kind::Event | Kind::Direct(_) => self.pubsub.offer_frame(idx, w, ctx, &d.frame),
            Kind::Kick(_) => {}
        }
    }

    fn finish_delivery(&mut self, list: Vec<u32>) {
        self.pubsub.give_back(list);
    }

    fn batchable(d: &Self::Delivery) -> bool {
        matches!(d.0.kind, crate::pubsub::Kind::Message)
    }

    fn has_deliveries(&self) -> bool {
        self.pubsub.has_deliveries()
    }

    fn user(&self, idx: u32) -> Option<Arc<str>> {
        self.identity.user(idx)
    }

    fn movable(&self, idx: u32) -> bool {
        self.movable_conn(idx)
    }

    fn export(
        &mut self,
        idx: u32,
        counted: bool,
        metrics: &WorkerMetrics,
    ) -> (
        Option<crate::handover::format::IdentitySnap>,
        Option<crate::handover::format::PubsubSnap>,
    ) {
        self.export_conn(idx, counted, metrics)
    }

    fn adopt(
        &mut self,
        idx: u32,
        peer: Option<IpAddr>,
        counted: bool,
        identity: Option<crate::handover::format::IdentitySnap>,
        pubsub: Option<crate::handover::format::PubsubSnap>,
        w: &mut Writer,
        ctx: &Ctx<'_>,
    ) {
        self.adopt_conn(idx, peer, counted, identity, pubsub, w, ctx);
    }

    fn answers_ready(&self) -> bool {
        self.pubsub.polls_ready()
    }

    fn answers_due(&mut self, out: &mut Vec<u32>) {
        self.pubsub.polls_due(Instant::now(), out);
    }

    fn answer(&mut self, idx: u32, w: &mut Writer, ctx: &Ctx<'_>) {
        self.pubsub.answer_poll(idx, w, ctx);
    }

    fn expired(&mut self, out: &mut Vec<(u32, crate::ws::CloseCode, &'static str)>) {
        let mut idx = Vec::new();
        self.identity.expired(crate::auth::unix_now(), &mut idx);
        let code = crate::ws::CloseCode(crate::auth::TOKEN_EXPIRED);
        out.extend(idx.into_iter().map(|i| (i, code, "token expired")));
        let kicked = crate::ws::CloseCode(crate::auth::DISCONNECTED);
        out.extend(
            self.kicks
                .drain(..)
                .map(|i| (i, kicked, "disconnected by the operator")),
        );
    }
}

/// The session's [`Host`] for connection `idx`, for the length of one call.
#[derive(Debug)]
pub struct ConnHost<'a> {
    idx: u32,
    svc: &'a mut Services,
    route: Option<Route>,
    identity: Option<crate::auth::Identity>,
}

impl<'a> ConnHost<'a> {
    /// The host for connection `idx`.
    pub fn new(idx: u32, svc: &'a mut Services) -> Self {
        Self {
            idx,
            svc,
            route: None,
            identity: None,
        }
    }
}

impl Host for ConnHost<'_> {
    fn on_request(&mut self, req: &Request<'_>, ctx: &Ctx<'_>) -> Answer {
        let route = match route(req, &self.svc.pubsub.spec.limits, &self.svc.identity.edge) {
            Ok(r) => r,
            Err(refusal) => {
                if matches!(refusal, Answer::Refuse(Limit::BadRequest, ..)) {
                    // A subscription query that does not parse is a control error too.
                    ctx.metrics.control_errors.inc();
                }
                return refusal;
            }
        };
        let presence;
        let topics: &[String] = match &route {
            Route::PubSub(t, ..) | Route::Stream(t, ..) | Route::Poll(t, ..) => t,
            // Who is on a topic: for those who may subscribe to it.
            Route::Call(Call::Presence { topic, .. }) => {
                presence = [topic.clone()];
                &presence
            }
            Route::Echo | Route::Call(Call::Publish { .. }) => &[],
        };
        let id = match self
            .svc
            .identity
            .check(req, topics, crate::auth::unix_now())
        {
            Ok(id) => id,
            Err((answer, e)) => {
                if let Some(e) = e {
                    ctx.metrics.auth_failures[e.index()].inc();
                }
                return answer;
            }
        };
        let answer = self.svc.admission.admit();
        if answer != Answer::Accept {
            self.svc.identity.release_user(&id);
            return answer;
        }
        self.route = Some(route);
        self.identity = Some(id);
        ctx.metrics
            .websockets
            .set(self.svc.admission.websockets as u64);
        // A browser that sent its token as a subprotocol must get one of its protocols back.
        match req.choose_protocol(&[crate::auth::PROTOCOL]) {
            Some(_) => Answer::AcceptProtocol(crate::auth::PROTOCOL),
            None => Answer::Accept,
        }
    }

    fn on_open(&mut self, w: &mut Writer, ctx: &Ctx<'_>) {
        if let Some(id) = self.identity.take() {
            self.svc.identity.open(self.idx, id);
        }
        let user = self.svc.identity.user(self.idx);
        if let Some(u) = &user {
            self.svc.pubsub.spec.backplane.user_opened(u);
        }
        if let Some(
            Route::PubSub(topics, resume, client)
            | Route::Stream(topics, resume, client)
            | Route::Poll(topics, resume, client),
        ) = self.route.take()
        {
            self.svc.pubsub.join(self.idx);
            if w.is_stream() {
                self.svc.pubsub.local.set_stream(self.idx);
            }
            if w.is_poll() {
                self.svc.pubsub.poll_opened(self.idx);
            }
            if let Some(c) = client {
                self.svc.pubsub.local.set_client(self.idx, c);
            }
            if !topics.is_empty() {
                self.svc
                    .pubsub
                    .subscribe(self.idx, w, ctx, topics, resume, user, None);
            }
        }
    }

    fn on_message(&mut self, w: &mut Writer, ctx: &Ctx<'_>, msg: Message<'_>) {
        if self.svc.pubsub.is_member(self.idx) {
            let Services {
                pubsub, identity, ..
            } = &mut *self.svc;
            let user = identity.user(self.idx);
            let mut permits = identity::ConnPermits::new(identity, self.idx, ctx);
            let refresh = pubsub.on_control(self.idx, w, ctx, msg, &mut permits, user);
            if let Some((token, id)) = refresh {
                self.refresh(w, ctx, &token, id.as_ref());
            }
            return;
        }
        match msg {
            Message::Text(t) => w.send_frame(ctx, OpCode::Text, t.as_bytes()),
            Message::Binary(b) => w.send_frame(ctx, OpCode::Binary, b),
            _ => {}
        }
    }

    fn gap_frame(&mut self, topic: u64, from: u64, to: u64) -> Option<Arc<[u8]>> {
        if self.svc.pubsub.local.is_stream(self.idx) {
            return self.svc.pubsub.stream_gap(self.idx, topic, from, to);
        }
        self.svc.pubsub.gap_frame(topic, from, to)
    }

    fn plain(&self, method: &str, path: &str) -> Option<session::Plain> {
        use session::Plain;
        if !self.svc.identity.edge.pubsub {
            return None;
        }
        match (method, path) {
            ("GET", "/sse") => Some(Plain::Stream),
            ("GET", "/poll") => Some(Plain::Poll),
            ("POST", "/publish") | ("GET", "/presence") => Some(Plain::Call),
            ("OPTIONS", "/sse" | "/poll" | "/publish" | "/presence") => Some(Plain::Preflight),
            (_, "/publish") => Some(Plain::MethodNotAllowed("POST, OPTIONS")),
            (_, "/presence") => Some(Plain::MethodNotAllowed("GET, OPTIONS")),
            _ => None,
        }
    }

    fn on_call(&mut self, w: &mut Writer, ctx: &Ctx<'_>, body: &[u8]) {
        // A call holds no user slot and no identity past its decision: it is answered and
        // goes.
        let id = self.identity.take();
        if let Some(id) = &id {
            self.svc.identity.release_user(id);
        }
        let Some(Route::Call(call)) = self.route.take() else {
            return;
        };
        let grants = id
            .as_ref()
            .filter(|_| self.svc.identity.edge.auth.enabled())
            .map(|id| &id.grants);
        match call {
            Call::Publish { topic, binary } => {
                let may = grants.is_none_or(|g| g.may_publish(&topic));
                self.svc
                    .pubsub
                    .call_publish(self.idx, w, ctx, &topic, binary, body, may);
            }
            Call::Presence { topic, list } => {
                self.svc
                    .pubsub
                    .call_presence(self.idx, w, ctx, &topic, list);
            }
        }
    }
}

impl ConnHost<'_> {
    /// A `refresh` control message (`id`: its `"id"`): the new token replaces the old
    /// (same user), or the error is answered and the old one stays until it expires.
    fn refresh(
        &mut self,
        w: &mut Writer,
        ctx: &Ctx<'_>,
        token: &str,
        id: Option<&crate::pubsub::RequestId>,
    ) {
        let now = crate::auth::unix_now();
        let text = match self.svc.identity.refresh(self.idx, token, now) {
            Ok(exp) => {
                ctx.metrics.token_refreshes.inc();
                serde_json::json!({"type": "refreshed", "exp": exp})
            }
            Err(e) => {
                ctx.metrics.token_refresh_failures.inc();
                ctx.metrics.auth_failures[e.index()].inc();
                serde_json::json!({"type": "error", "op": "refresh", "reason": e.reason()})
            }
        };
        let text = crate::pubsub::with_id(text, id);
        w.send_frame(ctx, OpCode::Text, text.as_bytes());
    }
}
