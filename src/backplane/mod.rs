//! The backplane: what makes many Holdfast nodes one server. Two engines:
//!
//! - `memory` (the default): one node. The hub numbers messages; users, direct messages
//!   and presence are this process's.
//! - `redis` (`--backplane redis://…`, Redis ≥ 7 or a Redis Cluster): the broker numbers
//!   every topic's messages (a stream per topic, its entry ids are the sequence numbers,
//!   with an epoch key), so a message has the same number on every node and a client
//!   resumes on any node. A node listens (sharded pub/sub, `SSUBSCRIBE`) only to the
//!   topics its own connections subscribe to and to the users it holds; it encodes each
//!   message once and hands it to the hub, which fans it out as for a local publish.
//!
//! The data plane never waits on the broker: workers hand jobs to the backplane's thread
//! through a bounded queue and get answers on their delivery queue ([`crate::pubsub::Kind`]);
//! the admin API waits for a publish's number at most [`broker::TIMEOUT`]. While the broker
//! is unreachable local connections keep flowing, publishes are refused (503), and when it
//! is back every topic is listened to again and caught up from its stream; what the stream
//! no longer holds reaches subscribers as a gap (or a reset, when the history is gone).
//! docs/backplane.md has the operator's view; docs/architecture.md the design.

pub mod broker;
mod engine;
pub mod presence;
pub mod resp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::io::waker::Waker;
use crate::pubsub::{self, Delivery, Hub, Kind, Payload, TopicError};
pub use presence::{Member, PresenceReport};

/// The function library every node loads into the broker (also what a backend calls to
/// publish without a node: `FCALL hf_publish …`, see docs/backplane.md).
pub const LIBRARY: &str = include_str!("holdfast.lua");

/// Jobs waiting for the backplane's thread at most; past it workers' requests are refused.
pub const JOB_QUEUE: usize = 65_536;

/// How the backplane is configured.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None`: the memory engine; `Some`: the broker.
    pub url: Option<broker::Url>,
    /// This node's name in presence and logs.
    pub node: Arc<str>,
    /// Messages each topic's stream keeps (and a node loads when it starts listening).
    pub history: usize,
    /// Bytes of messages a node loads at most when it starts listening to a topic (at least
    /// one message): what its replay window keeps (`--replay-bytes`).
    pub history_bytes: usize,
    /// Seconds a topic's history lives after its last publish (0: forever).
    pub history_ttl: u64,
    /// Topics whose names start with this keep a member list.
    pub presence_prefix: String,
    /// Seconds a member stays listed after its node last refreshed it.
    pub presence_ttl: u64,
    /// Whether subscribers of presence topics are sent join and leave events.
    pub presence_events: bool,
}

/// Why a request to the backplane failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackplaneError {
    /// The broker is unreachable (or did not answer in time): retry later (503).
    Unavailable(String),
    /// The request itself is wrong (400): a bad topic, a message too large.
    Refused(TopicError),
    /// The broker refused it (a misconfigured broker, an old Redis).
    Broker(String),
}

impl BackplaneError {
    /// The reason as sent to a client.
    pub fn reason(&self) -> String {
        match self {
            Self::Unavailable(why) => format!("backplane_unavailable ({why})"),
            Self::Refused(e) => e.reason(),
            Self::Broker(e) => format!("backplane_error ({e})"),
        }
    }

    /// The HTTP status for it.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unavailable(_) => 503,
            Self::Refused(
                TopicError::TooLargeToDeliver { .. } | TopicError::TooLargeForQueue { .. },
            ) => 413,
            Self::Refused(
                TopicError::Overloaded { .. }
                | TopicError::MemoryBudget { .. }
                | TopicError::HandingOver,
            ) => 503,
            Self::Refused(_) => 400,
            Self::Broker(_) => 502,
        }
    }
}

/// Whether a refused publish's reason (`error` reply, or a `POST /publish` body) asks the
/// publisher to retry later: the server's back-pressure — `overloaded`, `handing_over`,
/// `backplane_unavailable` — exactly the refusals answered with 503 (docs/protocol.md).
/// Anything else is the request's or the setup's fault.
pub fn asks_to_retry(reason: &str) -> bool {
    ["overloaded", "handing_over", "backplane_unavailable"]
        .iter()
        .any(|p| reason.starts_with(p))
}

/// A publish's result: its number, and (memory engine) the local reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its sequence number in the topic.
    pub seq: u64,
    /// Its topic's epoch.
    pub epoch: u64,
    /// Local subscribers it will reach (memory engine; 0 with a broker: unknown here).
    pub subscribers: u64,
    /// Local workers it was handed to (memory engine; 0 with a broker).
    pub workers: usize,
}

/// Who waits for a job's answer.
#[derive(Debug)]
pub enum ReplyTo {
    /// A thread (the admin API), blocked on the receiver.
    Caller(Sender<Result<Answer, BackplaneError>>),
    /// A connection: the answer goes to its worker's queue as a [`Kind::Reply`].
    Conn {
        /// Its worker.
        worker: usize,
        /// Its slab index.
        conn: u32,
        /// Its connection id.
        conn_id: u64,
        /// The `"id"` of its control message: the reply carries it.
        asked: Option<crate::pubsub::RequestId>,
    },
    /// Nobody.
    Nobody,
}

/// A job's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A publish was numbered.
    Published(Published),
    /// A message to a user reached this many nodes.
    Nodes(u64),
    /// A topic's presence.
    Presence(PresenceReport),
}

/// What the backplane's thread is asked to do.
#[derive(Debug)]
pub enum Job {
    /// Publish to a topic.
    Publish {
        /// The topic (validated).
        topic: String,
        /// Binary (true) or text.
        binary: bool,
        /// The payload.
        data: Vec<u8>,
        /// Who waits.
        reply: ReplyTo,
    },
    /// Send `data` to every connection of `user`, or close them all (`kick`).
    User {
        /// The user.
        user: Arc<str>,
        /// `None`: close every connection of the user.
        data: Option<(bool, Vec<u8>)>,
        /// Who waits.
        reply: ReplyTo,
    },
    /// A user has its first connection here (`true`) or lost its last one.
    Online(Arc<str>, bool),
    /// A member joins (or leaves: `None`) a presence topic.
    Presence(Arc<str>, Member, bool),
    /// Who is on a topic.
    Query {
        /// The topic.
        topic: String,
        /// Members to list at most (0: only count).
        list: usize,
        /// Who waits.
        reply: ReplyTo,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Whether the broker is reachable (1) — always 1 for the memory engine.
    pub up: AtomicBool,
    /// Connections to the broker made after the first.
    pub reconnects: AtomicU64,
    /// Topics and users listened to again after a reconnect.
    pub resubscribes: AtomicU64,
    /// Messages received from the broker.
    pub received: AtomicU64,
    /// Messages published through this node.
    pub published: AtomicU64,
    /// Publishes refused (broker down, queue full).
    pub refused: AtomicU64,
    /// Catch-ups from a stream (a message arrived past the next number, or a reconnect).
    pub catch_ups: AtomicU64,
    /// Messages delivered by catch-ups.
    pub caught_up: AtomicU64,
    /// Messages that could not be used (malformed, not UTF-8 text, too large).
    pub malformed: AtomicU64,
    /// The last publish → receipt delay seen, microseconds (broker clock to this node's).
    pub lag_us: AtomicU64,
    /// Jobs dropped because the queue was full.
    pub dropped_jobs: AtomicU64,
}

/// The handle every thread holds.
pub struct Backplane {
    opts: Options,
    hub: Arc<Hub>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Connections per user on this node (the first and last are told to the broker).
    users: Mutex<HashMap<Arc<str>, u32>>,
    /// The memory engine's presence.
    local: Mutex<presence::Table>,
    /// The broker engine's queue and wake-up.
    port: Option<(Sender<Job>, Arc<Waker>)>,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("node", &self.opts.node)
            .field("broker", &self.opts.url)
            .finish_non_exhaustive()
    }
}

impl Backplane {
    /// Start the backplane for `hub`: with a broker URL its thread connects (and keeps
    /// reconnecting: a broker down at start is not fatal) and the hub stops numbering.
    pub fn start(opts: Options, hub: Arc<Hub>) -> std::io::Result<Arc<Self>> {
        let stats = Arc::new(Stats::default());
        let mut port = None;
        if let Some(url) = opts.url.clone() {
            let (jobs, rx) = crossbeam_channel::bounded(JOB_QUEUE);
            let (needs_tx, needs) = crossbeam_channel::unbounded();
            let waker = Arc::new(Waker::new()?);
            let w2 = waker.clone();
            hub.attach_external(Box::new(move |n| {
                let _ = needs_tx.send(n);
                w2.wake();
            }));
            let engine = engine::Engine::new(
                url,
                opts.clone(),
                hub.clone(),
                stats.clone(),
                rx,
                needs,
                waker.clone(),
            );
            std::thread::Builder::new()
                .name("holdfast-backplane".into())
                .spawn(move || engine.run())?;
            port = Some((jobs, waker));
        } else {
            stats.up.store(true, Ordering::Relaxed);
        }
        Ok(Arc::new(Self {
            opts,
            hub,
            stats,
            users: Mutex::new(HashMap::new()),
            local: Mutex::new(presence::Table::default()),
            port,
        }))
    }

    /// Whether a broker numbers messages.
    pub fn is_broker(&self) -> bool {
        self.port.is_some()
    }

    /// This node's name.
    pub fn node(&self) -> &Arc<str> {
        &self.opts.node
    }

    /// Whether `topic` keeps a member list.
    pub fn is_presence(&self, topic: &str) -> bool {
        !self.opts.presence_prefix.is_empty() && topic.starts_with(&self.opts.presence_prefix)
    }

    /// Whether the broker is reachable (always, for the memory engine).
    pub fn up(&self) -> bool {
        self.stats.up.load(Ordering::Relaxed)
    }

    /// Hand `job` to the backplane's thread without waiting; false if the queue is full.
    fn submit(&self, job: Job) -> Result<(), Job> {
        let Some((tx, waker)) = &self.port else {
            return Err(job);
        };
        match tx.try_send(job) {
            Ok(()) => {
                waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => {
                self.stats.dropped_jobs.fetch_add(1, Ordering::Relaxed);
                Err(j)
            }
        }
    }

    fn wait(
        &self,
        job: Job,
        rx: &Receiver<Result<Answer, BackplaneError>>,
    ) -> Result<Answer, BackplaneError> {
        if !self.up() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(BackplaneError::Unavailable(
                "the broker is unreachable".into(),
            ));
        }
        if self.submit(job).is_err() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(BackplaneError::Unavailable(
                "the backplane's queue is full".into(),
            ));
        }
        rx.recv_timeout(broker::TIMEOUT + Duration::from_millis(500))
            .unwrap_or_else(|_| {
                Err(BackplaneError::Unavailable(
                    "the broker did not answer in time".into(),
                ))
            })
    }

    fn check(&self, topic: &str, payload: &Payload<'_>) -> Result<(), BackplaneError> {
        self.hub
            .check_publish(topic, payload)
            .map_err(BackplaneError::Refused)
    }

    /// Publish, waiting for the number (the admin API's `POST /publish`).
    pub fn publish(
        &self,
        topic: &str,
        payload: Payload<'_>,
        at: Option<std::time::Instant>,
    ) -> Result<Published, BackplaneError> {
        if !self.is_broker() {
            let p = self
                .hub
                .publish_at(topic, payload, at)
                .map_err(BackplaneError::Refused)?;
            let epoch = self.hub.position(topic).map_or(0, |(e, _)| e);
            return Ok(Published {
                seq: p.seq,
                epoch,
                subscribers: p.subscribers,
                workers: p.workers,
            });
        }
        self.check(topic, &payload)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (binary, data) = split(payload);
        let job = Job::Publish {
            topic: topic.to_string(),
            binary,
            data,
            reply: ReplyTo::Caller(tx),
        };
        match self.wait(job, &rx)? {
            Answer::Published(p) => Ok(p),
            other => Err(BackplaneError::Broker(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// A connection publishes (client publish): with the memory engine the answer is now;
    /// with a broker it is `Ok(None)` and the answer reaches the connection later, carrying
    /// `asked` (the `"id"` of its control message).
    pub fn publish_for(
        &self,
        topic: &str,
        payload: Payload<'_>,
        who: (usize, u32, u64),
        asked: Option<&crate::pubsub::RequestId>,
    ) -> Result<Option<Published>, BackplaneError> {
        if !self.is_broker() {
            return self
                .publish(topic, payload, Some(std::time::Instant::now()))
                .map(Some);
        }
        self.check(topic, &payload)?;
        if !self.up() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(BackplaneError::Unavailable(
                "the broker is unreachable".into(),
            ));
        }
        let (binary, data) = split(payload);
        let job = Job::Publish {
            topic: topic.to_string(),
            binary,
            data,
            reply: ReplyTo::Conn {
                worker: who.0,
                conn: who.1,
                conn_id: who.2,
                asked: asked.cloned(),
            },
        };
        match self.submit(job) {
            Ok(()) => Ok(None),
            Err(_) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(BackplaneError::Unavailable(
                    "the backplane's queue is full".into(),
                ))
            }
        }
    }

    /// Send a message to every connection of `user` (on every node), or with `data`
    /// `None` close them all; returns the nodes reached (this one: 1 if it holds the user).
    pub fn to_user(&self, user: &str, data: Option<Payload<'_>>) -> Result<u64, BackplaneError> {
        let user: Arc<str> = user.into();
        let too_large = |bytes| {
            BackplaneError::Refused(TopicError::TooLargeToDeliver {
                bytes,
                max: self.hub.max_frame(),
            })
        };
        let data = data.map(split);
        if !self.is_broker() {
            let here = self
                .users
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&user);
            deliver_user(&self.hub, &user, data).map_err(too_large)?;
            return Ok(u64::from(here));
        }
        // Refused here, as a topic's message is, rather than skipped by every connection of
        // the user on every node.
        if let Some((binary, bytes)) = &data {
            direct_frame(&self.hub, &user, *binary, bytes).map_err(too_large)?;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = Job::User {
            user,
            data,
            reply: ReplyTo::Caller(tx),
        };
        match self.wait(job, &rx)? {
            Answer::Nodes(n) => Ok(n),
            other => Err(BackplaneError::Broker(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// A connection of `user` opened on this node.
    pub fn user_opened(&self, user: &Arc<str>) {
        let first = {
            let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            let n = users.entry(user.clone()).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first && self.is_broker() {
            let _ = self.submit(Job::Online(user.clone(), true));
        }
    }

    /// A connection of `user` closed on this node.
    pub fn user_closed(&self, user: &Arc<str>) {
        let last = {
            let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            match users.get_mut(user) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    users.remove(user);
                    true
                }
                None => false,
            }
        };
        if last && self.is_broker() {
            let _ = self.submit(Job::Online(user.clone(), false));
        }
    }

    /// A member joins (`true`) or leaves a presence topic.
    pub fn presence(&self, topic: &str, member: Member, join: bool) {
        let topic: Arc<str> = topic.into();
        if self.is_broker() {
            let _ = self.submit(Job::Presence(topic, member, join));
            return;
        }
        let event = {
            let mut t = self.local.lock().unwrap_or_else(|p| p.into_inner());
            let changed = if join {
                t.join(&topic, member.clone())
            } else {
                t.leave(&topic, &member.key())
            };
            changed && self.opts.presence_events
        };
        if event {
            self.hub
                .event(&topic, presence::event_frame(&topic, &member, join));
        }
    }

    /// Who is on `topic`, for a connection (a call on the data port): with the memory
    /// engine the answer is now; with a broker it is `Ok(None)` and the answer reaches the
    /// connection later (as for [`Backplane::publish_for`]). At most `list` members are
    /// listed (0: only counted).
    pub fn who_for(
        &self,
        topic: &str,
        list: usize,
        who: (usize, u32, u64),
    ) -> Result<Option<PresenceReport>, BackplaneError> {
        if !self.is_broker() {
            return self.who(topic, list).map(Some);
        }
        if !self.up() {
            return Err(BackplaneError::Unavailable(
                "the broker is unreachable".into(),
            ));
        }
        let job = Job::Query {
            topic: topic.to_string(),
            list,
            reply: ReplyTo::Conn {
                worker: who.0,
                conn: who.1,
                conn_id: who.2,
                asked: None,
            },
        };
        self.submit(job)
            .map(|()| None)
            .map_err(|_| BackplaneError::Unavailable("the backplane's queue is full".into()))
    }

    /// Who is on `topic` (every node's members, when a broker is used), listing at most
    /// `list` members (0: only counting).
    pub fn who(&self, topic: &str, list: usize) -> Result<PresenceReport, BackplaneError> {
        if !self.is_broker() {
            let t = self.local.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(t.report(topic, list));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = Job::Query {
            topic: topic.to_string(),
            list,
            reply: ReplyTo::Caller(tx),
        };
        match self.wait(job, &rx)? {
            Answer::Presence(p) => Ok(p),
            other => Err(BackplaneError::Broker(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }
}

/// Queue a user's message (or, with `data` None, a kick) for every worker of this node.
///
/// Err (nothing delivered): the message's frame is larger than a connection may be sent,
/// with its size; every connection would have skipped it without a word.
fn deliver_user(hub: &Hub, user: &Arc<str>, data: Option<(bool, Vec<u8>)>) -> Result<(), usize> {
    let (kind, frame) = match data {
        Some((binary, bytes)) => (
            Kind::Direct(user.clone()),
            direct_frame(hub, user, binary, &bytes)?,
        ),
        None => (Kind::Kick(user.clone()), Arc::from(&[][..])),
    };
    hub.broadcast(&Delivery {
        kind,
        topic: 0,
        seq: 0,
        frame,
        recipients: 0,
        at: None,
    });
    Ok(())
}

/// A user's message as its connections are sent it, or its size when that is larger than
/// a connection may be sent.
fn direct_frame(hub: &Hub, user: &str, binary: bool, bytes: &[u8]) -> Result<Arc<[u8]>, usize> {
    let frame = pubsub::encode_direct(user, binary, bytes);
    if frame.len() > hub.max_frame() {
        return Err(frame.len());
    }
    Ok(frame)
}

/// A payload as the broker carries it: (binary?, bytes).
fn split(p: Payload<'_>) -> (bool, Vec<u8>) {
    match p {
        Payload::Text(t) => (false, t.as_bytes().to_vec()),
        Payload::Binary(b) => (true, b.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md: the reasons that ask a publisher to retry (`overloaded`,
    /// `handing_over`, `backplane_unavailable`) are exactly those `POST /publish` answers
    /// with 503; a client reads the reason, so the two must not drift apart.
    #[test]
    fn the_reasons_that_ask_to_retry_are_exactly_the_503s() {
        let errors = [
            BackplaneError::Unavailable("cannot connect".into()),
            BackplaneError::Broker("ERR".into()),
            BackplaneError::Refused(TopicError::Empty),
            BackplaneError::Refused(TopicError::TooLong { max: 1 }),
            BackplaneError::Refused(TopicError::BadByte { at: 0 }),
            BackplaneError::Refused(TopicError::TooManyTopics { max: 1 }),
            BackplaneError::Refused(TopicError::Overloaded { worker: 0 }),
            BackplaneError::Refused(TopicError::TooLargeToDeliver { bytes: 2, max: 1 }),
            BackplaneError::Refused(TopicError::ServerTopicLimit { max: 1 }),
            BackplaneError::Refused(TopicError::MemoryBudget { max: 1 }),
            BackplaneError::Refused(TopicError::HandingOver),
        ];
        for e in &errors {
            assert_eq!(
                asks_to_retry(&e.reason()),
                e.status() == 503,
                "{e:?}: {}",
                e.reason()
            );
        }
        assert_eq!(errors.iter().filter(|e| e.status() == 503).count(), 4);
    }
}
