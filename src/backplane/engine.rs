//! The broker engine's thread: one loop that polls the subscriber connections and the job
//! queue, runs jobs in pipelined batches, catches topics up from their streams, refreshes
//! presence, and reconnects (with backoff) when the broker goes away.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::broker::{arg, Broker, BrokerError, Cmd, Conn, Url};
use super::presence::{self, Member};
use super::resp::Value;
use super::{Answer, BackplaneError, Job, Options, Published, ReplyTo, Stats};
use crate::io::waker::Waker;
use crate::pubsub::{self, Delivery, Hub, Injected, Kind, Need, Payload};

/// Jobs taken per batch.
const BATCH: usize = 4096;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn key(topic: &str, part: &str) -> Vec<u8> {
    format!("hf:{{{topic}}}:{part}").into_bytes()
}

fn user_channel(user: &str) -> Vec<u8> {
    format!("hf:u:{{{user}}}").into_bytes()
}

/// What a channel is for.
#[derive(Debug, Clone)]
enum Chan {
    Topic(Arc<str>),
    User(Arc<str>),
}

fn parse_channel(ch: &[u8]) -> Option<Chan> {
    let s = std::str::from_utf8(ch).ok()?;
    if let Some(t) = s.strip_prefix("hf:{").and_then(|r| r.strip_suffix("}:m")) {
        return Some(Chan::Topic(t.into()));
    }
    let u = s.strip_prefix("hf:u:{")?.strip_suffix('}')?;
    Some(Chan::User(u.into()))
}

/// What to do with a batched command's reply.
enum Then {
    Publish(ReplyTo, String),
    User(ReplyTo),
    Query(ReplyTo, usize, String),
    Nothing,
}

pub(super) struct Engine {
    url: Url,
    opts: Options,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    jobs: Receiver<Job>,
    needs: Receiver<Need>,
    waker: Arc<Waker>,
    broker: Option<Broker>,
    /// Subscriber connection per master.
    subs: HashMap<String, Conn>,
    topics: HashSet<Arc<str>>,
    users: HashSet<Arc<str>>,
    members: HashMap<String, (Arc<str>, Member)>,
    next_try: Instant,
    backoff: Duration,
    connected_once: bool,
    last_refresh: Instant,
    last_error: String,
}

impl Engine {
    pub(super) fn new(
        url: Url,
        opts: Options,
        hub: Arc<Hub>,
        stats: Arc<Stats>,
        jobs: Receiver<Job>,
        needs: Receiver<Need>,
        waker: Arc<Waker>,
    ) -> Self {
        Self {
            url,
            opts,
            hub,
            stats,
            jobs,
            needs,
            waker,
            broker: None,
            subs: HashMap::new(),
            topics: HashSet::new(),
            users: HashSet::new(),
            members: HashMap::new(),
            next_try: Instant::now(),
            backoff: Duration::from_millis(50),
            connected_once: false,
            last_refresh: Instant::now(),
            last_error: String::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            if self.broker.is_none() && Instant::now() >= self.next_try {
                self.connect();
            }
            self.poll();
            self.waker.reset();
            if let Err(e) = self.step() {
                self.down(&e);
            }
        }
    }

    /// Wait for a subscriber connection, a job, or 100 ms.
    fn poll(&self) {
        if !self.jobs.is_empty() || !self.needs.is_empty() {
            return;
        }
        let mut fds = vec![libc::pollfd {
            fd: self.waker.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for c in self.subs.values() {
            fds.push(libc::pollfd {
                fd: c.fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        crate::io::sys::poll_fds(&mut fds, Duration::from_millis(100));
    }

    fn connect(&mut self) {
        let mut b = match Broker::connect(&self.url) {
            Ok(b) => b,
            Err(e) => return self.retry(&format!("cannot connect: {e}")),
        };
        let load = vec![
            arg("FUNCTION"),
            arg("LOAD"),
            arg("REPLACE"),
            arg(super::LIBRARY),
        ];
        if let Err(e) = b.on_masters(&load) {
            return self.retry(&format!(
                "cannot load the function library (Redis >= 7 is required): {e}"
            ));
        }
        let cluster = b.is_cluster();
        let masters = b.masters().len();
        self.broker = Some(b);
        for t in self.hub.wanted() {
            self.topics.insert(t);
        }
        let channels: Vec<Vec<u8>> = self
            .topics
            .iter()
            .map(|t| key(t, "m"))
            .chain(self.users.iter().map(|u| user_channel(u)))
            .collect();
        if self.connected_once {
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            self.stats
                .resubscribes
                .fetch_add(channels.len() as u64, Ordering::Relaxed);
        }
        for ch in channels {
            if let Err(e) = self.listen(&ch, true) {
                return self.down(&e);
            }
        }
        // Members this node holds are listed again (a broker that restarted lost them).
        if let Err(e) = self.refresh_presence() {
            return self.down(&e);
        }
        self.connected_once = true;
        self.backoff = Duration::from_millis(50);
        self.last_error.clear();
        self.stats.up.store(true, Ordering::Relaxed);
        tracing::info!(
            broker = ?self.url.seeds,
            cluster,
            masters,
            topics = self.topics.len(),
            users = self.users.len(),
            "backplane connected"
        );
    }

    fn retry(&mut self, why: &str) {
        if why != self.last_error {
            tracing::warn!(broker = ?self.url.seeds, "backplane: {why}; retrying");
            self.last_error = why.to_string();
        }
        self.broker = None;
        self.subs.clear();
        self.stats.up.store(false, Ordering::Relaxed);
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn down(&mut self, e: &BrokerError) {
        if self.broker.is_some() {
            tracing::warn!("backplane: the broker went away ({e}); local connections keep flowing, publishes are refused until it is back");
            self.last_error.clear();
        }
        self.retry(&e.to_string());
    }

    /// (S)SUBSCRIBE or SUNSUBSCRIBE `ch` on the subscriber connection of its master.
    fn listen(&mut self, ch: &[u8], on: bool) -> Result<(), BrokerError> {
        let Some(b) = self.broker.as_mut() else {
            return Ok(());
        };
        let addr = b.owner(ch);
        if !self.subs.contains_key(&addr) {
            if !on {
                return Ok(());
            }
            let c = b.open(&addr)?;
            self.subs.insert(addr.clone(), c);
        }
        let verb = if on { "SSUBSCRIBE" } else { "SUNSUBSCRIBE" };
        let c = self.subs.get_mut(&addr).expect("present");
        c.send(&[verb.as_bytes(), ch])?;
        Ok(())
    }

    fn step(&mut self) -> Result<(), BrokerError> {
        // Subscriber connections first: confirmations start syncs, messages go to the hub.
        let addrs: Vec<String> = self.subs.keys().cloned().collect();
        for addr in addrs {
            let mut values = Vec::new();
            let r = match self.subs.get_mut(&addr) {
                Some(c) => c.read_ready(&mut values),
                None => Ok(()),
            };
            for v in values {
                self.on_push(v)?;
            }
            r?;
        }
        while let Ok(n) = self.needs.try_recv() {
            match n {
                Need::Listen(t) => {
                    if self.topics.insert(t.clone()) {
                        self.listen(&key(&t, "m"), true)?;
                    }
                }
                Need::Unlisten(t) => {
                    if self.topics.remove(&t) {
                        self.listen(&key(&t, "m"), false)?;
                    }
                }
            }
        }
        let mut batch: Vec<(Cmd, Then)> = Vec::new();
        while batch.len() < BATCH {
            let Ok(job) = self.jobs.try_recv() else {
                break;
            };
            self.plan(job, &mut batch)?;
        }
        if !batch.is_empty() {
            self.execute(batch)?;
        }
        let every = Duration::from_secs((self.opts.presence_ttl / 3).max(1));
        if self.broker.is_some() && self.last_refresh.elapsed() >= every {
            self.refresh_presence()?;
        }
        Ok(())
    }

    /// Turn a job into commands (or do it now, when it needs none).
    fn plan(&mut self, job: Job, batch: &mut Vec<(Cmd, Then)>) -> Result<(), BrokerError> {
        let up = self.broker.is_some();
        let unavailable = || BackplaneError::Unavailable("the broker is unreachable".into());
        match job {
            Job::Publish {
                topic,
                binary,
                data,
                reply,
            } => {
                if !up {
                    return {
                        self.answer(reply, Err(unavailable()), Some(&topic));
                        Ok(())
                    };
                }
                let kind = if binary { "b" } else { "t" };
                let args = vec![
                    arg("FCALL"),
                    arg("hf_publish"),
                    arg("5"),
                    key(&topic, "s"),
                    key(&topic, "e"),
                    key(&topic, "m"),
                    key(&topic, "z"),
                    key(&topic, "b"),
                    arg(kind),
                    data,
                    arg(self.opts.history.max(1).to_string()),
                    arg(self.opts.history_ttl.to_string()),
                    // The stream keeps what a node's window would, no more.
                    arg(self.opts.history_bytes.to_string()),
                ];
                batch.push((
                    Cmd::new(key(&topic, "s"), args),
                    Then::Publish(reply, topic),
                ));
            }
            Job::User { user, data, reply } => {
                if !up {
                    self.answer(reply, Err(unavailable()), None);
                    return Ok(());
                }
                let msg = match data {
                    Some((binary, mut bytes)) => {
                        let mut m = if binary {
                            b"d b ".to_vec()
                        } else {
                            b"d t ".to_vec()
                        };
                        m.append(&mut bytes);
                        m
                    }
                    None => b"k".to_vec(),
                };
                let ch = user_channel(&user);
                let args = vec![arg("SPUBLISH"), ch.clone(), msg];
                batch.push((Cmd::new(ch, args), Then::User(reply)));
            }
            Job::Online(user, on) => {
                let changed = if on {
                    self.users.insert(user.clone())
                } else {
                    self.users.remove(&user)
                };
                if changed {
                    self.listen(&user_channel(&user), on)?;
                }
            }
            Job::Presence(topic, member, join) => {
                let k = format!("{topic}\u{0}{}", member.key());
                if join {
                    self.members.insert(k, (topic.clone(), member.clone()));
                } else {
                    self.members.remove(&k);
                }
                if up {
                    batch.push((self.member_cmd(&topic, &member, join), Then::Nothing));
                    if self.opts.presence_events {
                        let body = presence::event_frame(&topic, &member, join);
                        let mut msg = b"p ".to_vec();
                        msg.extend_from_slice(&body);
                        let ch = key(&topic, "m");
                        batch.push((
                            Cmd::new(ch.clone(), vec![arg("SPUBLISH"), ch, msg]),
                            Then::Nothing,
                        ));
                    }
                }
            }
            Job::Query { topic, list, reply } => {
                if !up {
                    self.answer(reply, Err(unavailable()), Some(&topic));
                    return Ok(());
                }
                let args = vec![
                    arg("FCALL"),
                    arg("hf_presence"),
                    arg("3"),
                    key(&topic, "p"),
                    key(&topic, "x"),
                    key(&topic, "u"),
                    arg(now_ms().to_string()),
                    arg(if list > 0 { "1" } else { "0" }),
                    arg(list.to_string()),
                ];
                let k = key(&topic, "p");
                batch.push((Cmd::new(k, args), Then::Query(reply, list, topic)));
            }
        }
        Ok(())
    }

    fn member_cmd(&self, topic: &str, m: &Member, join: bool) -> Cmd {
        let mut args = vec![
            arg("FCALL"),
            arg(if join { "hf_join" } else { "hf_leave" }),
            arg("3"),
            key(topic, "p"),
            key(topic, "x"),
            key(topic, "u"),
            arg(m.key()),
        ];
        if join {
            let expires = now_ms() + self.opts.presence_ttl.max(1) * 1000;
            args.push(arg(m.user.as_deref().unwrap_or("")));
            args.push(arg(m.info()));
            args.push(arg(expires.to_string()));
        }
        Cmd::new(key(topic, "p"), args)
    }

    /// Refresh this node's members, and sweep each topic they are on: a count-only
    /// `hf_presence` drops members whose node stopped refreshing them (at most 10,000 a
    /// call). Without it a dead node's members, and their users in the topic's `users`
    /// count, stayed until someone asked who was there.
    fn refresh_presence(&mut self) -> Result<(), BrokerError> {
        self.last_refresh = Instant::now();
        if self.members.is_empty() {
            return Ok(());
        }
        let mut cmds: Vec<Cmd> = self
            .members
            .values()
            .map(|(t, m)| self.member_cmd(t, m, true))
            .collect();
        let topics: std::collections::BTreeSet<&str> =
            self.members.values().map(|(t, _)| &**t).collect();
        let now = now_ms().to_string();
        for topic in topics {
            let args = vec![
                arg("FCALL"),
                arg("hf_presence"),
                arg("3"),
                key(topic, "p"),
                key(topic, "x"),
                key(topic, "u"),
                arg(&now),
                arg("0"),
                arg("0"),
            ];
            cmds.push(Cmd::new(key(topic, "p"), args));
        }
        let Some(b) = self.broker.as_mut() else {
            return Ok(());
        };
        for chunk in cmds.chunks(BATCH) {
            b.run(chunk)?;
        }
        Ok(())
    }

    fn execute(&mut self, batch: Vec<(Cmd, Then)>) -> Result<(), BrokerError> {
        let (cmds, thens): (Vec<Cmd>, Vec<Then>) = batch.into_iter().unzip();
        let Some(b) = self.broker.as_mut() else {
            return Ok(());
        };
        let replies = match b.run(&cmds) {
            Ok(r) => r,
            Err(e) => {
                for t in thens {
                    let why = BackplaneError::Unavailable(format!("{e}"));
                    match t {
                        Then::Publish(r, topic) => self.answer(r, Err(why), Some(&topic)),
                        Then::Query(r, _, topic) => self.answer(r, Err(why), Some(&topic)),
                        Then::User(r) => self.answer(r, Err(why), None),
                        Then::Nothing => {}
                    }
                }
                return Err(e);
            }
        };
        for (v, t) in replies.into_iter().zip(thens) {
            match t {
                Then::Publish(r, topic) => {
                    let res = match &v {
                        Value::Error(e) => Err(BackplaneError::Broker(e.clone())),
                        _ => published(&v).ok_or_else(|| {
                            BackplaneError::Broker(format!("unexpected reply {v:?}"))
                        }),
                    };
                    if res.is_ok() {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                    }
                    self.answer(r, res.map(Answer::Published), Some(&topic));
                }
                Then::User(r) => {
                    let res = v
                        .int()
                        .map(|n| Answer::Nodes(n.max(0) as u64))
                        .ok_or_else(|| BackplaneError::Broker(format!("unexpected reply {v:?}")));
                    self.answer(r, res, None);
                }
                Then::Query(r, list, topic) => {
                    let res = presence_report(&v, list)
                        .map(Answer::Presence)
                        .ok_or_else(|| BackplaneError::Broker(format!("unexpected reply {v:?}")));
                    self.answer(r, res, Some(&topic));
                }
                Then::Nothing => {
                    if let Value::Error(e) = v {
                        tracing::warn!("backplane: the broker refused a presence update: {e}");
                    }
                }
            }
        }
        Ok(())
    }

    fn answer(&self, to: ReplyTo, r: Result<Answer, BackplaneError>, topic: Option<&str>) {
        match to {
            ReplyTo::Caller(tx) => {
                let _ = tx.try_send(r);
            }
            ReplyTo::Conn {
                worker,
                conn,
                conn_id,
                asked,
            } => {
                let topic = topic.unwrap_or("");
                let asked = asked.as_ref();
                let (status, text) = match &r {
                    Ok(Answer::Published(p)) => {
                        (200, pubsub::reply_published(topic, p.seq, p.epoch, asked))
                    }
                    Ok(Answer::Presence(p)) => (200, presence::report_json(topic, p)),
                    Ok(Answer::Nodes(_)) => return,
                    Err(e) => (e.status(), pubsub::reply_error(&e.reason(), asked)),
                };
                let frame = presence::text_frame(&text);
                self.hub.send_to(
                    worker,
                    Delivery {
                        kind: Kind::Reply {
                            conn,
                            conn_id,
                            status,
                        },
                        topic: 0,
                        seq: 0,
                        frame,
                        recipients: 0,
                        at: None,
                    },
                );
            }
            ReplyTo::Nobody => {}
        }
    }

    fn on_push(&mut self, v: Value) -> Result<(), BrokerError> {
        let items = match &v {
            Value::Array(Some(items)) => items,
            Value::Error(e) => {
                // A subscription sent to a master that no longer owns the slot (the cluster
                // changed): reconnect, which maps the slots again.
                return Err(BrokerError::Reply(format!("subscriber connection: {e}")));
            }
            _ => return Ok(()),
        };
        let kind = items.first().and_then(Value::text).unwrap_or("");
        let Some(ch) = items.get(1).and_then(Value::bytes) else {
            return Ok(());
        };
        match (kind, parse_channel(ch)) {
            ("ssubscribe", Some(Chan::Topic(t))) => self.sync(&t),
            ("sunsubscribe", Some(Chan::Topic(t))) if self.topics.contains(&t) => {
                // The broker dropped it (its slot moved): listen again where it lives now.
                if let Some(b) = self.broker.as_mut() {
                    b.refresh()?;
                }
                self.listen(&key(&t, "m"), true)
            }
            ("sunsubscribe", Some(Chan::User(u))) if self.users.contains(&u) => {
                if let Some(b) = self.broker.as_mut() {
                    b.refresh()?;
                }
                self.listen(&user_channel(&u), true)
            }
            ("smessage", Some(chan)) => {
                let Some(body) = items.get(2).and_then(Value::bytes) else {
                    return Ok(());
                };
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                match chan {
                    Chan::Topic(t) => self.on_message(&t, body),
                    Chan::User(u) => {
                        self.on_user(&u, body);
                        Ok(())
                    }
                }
            }
            _ => Ok(()),
        }
    }

    fn malformed(&self, what: &str) {
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("backplane: ignoring a malformed message from the broker: {what}");
    }

    fn on_user(&self, user: &Arc<str>, body: &[u8]) {
        if body == b"k" {
            let _ = super::deliver_user(&self.hub, user, None);
            return;
        }
        match body {
            [b'd', b' ', k @ (b't' | b'b'), b' ', data @ ..] => {
                if *k == b't' && std::str::from_utf8(data).is_err() {
                    return self.malformed("a text message to a user that is not UTF-8");
                }
                let direct = Some((*k == b'b', data.to_vec()));
                if super::deliver_user(&self.hub, user, direct).is_err() {
                    self.malformed("a message to a user larger than a connection may be sent");
                }
            }
            _ => self.malformed("an unknown message on a user channel"),
        }
    }

    fn on_message(&mut self, topic: &Arc<str>, body: &[u8]) -> Result<(), BrokerError> {
        if let Some(frame) = body.strip_prefix(b"p ") {
            match presence::event_from_broker(topic, frame, self.hub.max_frame()) {
                Some(event) => self.hub.event(topic, event),
                None => self.malformed("a presence event that is not one for its topic"),
            }
            return Ok(());
        }
        let Some(m) = parse_message(body) else {
            self.malformed("a topic message that does not parse");
            return Ok(());
        };
        let lag = now_us().saturating_sub(m.at);
        self.stats.lag_us.store(lag, Ordering::Relaxed);
        let at = Instant::now().checked_sub(Duration::from_micros(lag));
        let Some(frame) = self.frame(topic, m.seq, m.binary, m.data) else {
            return Ok(());
        };
        match self.hub.inject(topic, m.epoch, m.seq, frame, at) {
            Injected::Behind { .. } | Injected::OtherEpoch => {
                self.stats.catch_ups.fetch_add(1, Ordering::Relaxed);
                self.sync(topic)
            }
            _ => Ok(()),
        }
    }

    /// The delivery frame of message `seq`, or None (counted) when it cannot be delivered.
    fn frame(&self, topic: &str, seq: u64, binary: bool, data: &[u8]) -> Option<Arc<[u8]>> {
        let payload = if binary {
            Payload::Binary(data)
        } else {
            match std::str::from_utf8(data) {
                Ok(t) => Payload::Text(t),
                Err(_) => {
                    self.malformed("text that is not UTF-8 (published straight into the broker?)");
                    return None;
                }
            }
        };
        if self.hub.check_publish(topic, &payload).is_err() {
            self.malformed("a message larger than a connection may be sent (--max-outbound)");
            return None;
        }
        Some(pubsub::encode_delivery(topic, seq, payload))
    }

    /// Bring `topic`'s epoch, newest number and history from its stream into the hub.
    fn sync(&mut self, topic: &Arc<str>) -> Result<(), BrokerError> {
        let Some(b) = self.broker.as_mut() else {
            return Ok(());
        };
        let args = vec![
            arg("FCALL"),
            arg("hf_open"),
            arg("2"),
            key(topic, "s"),
            key(topic, "e"),
            arg(self.opts.history.to_string()),
            arg(self.opts.history_ttl.to_string()),
            arg(self.opts.history_bytes.to_string()),
        ];
        let v = b.call(Cmd::new(key(topic, "s"), args))?;
        let items = v.items().unwrap_or(&[]);
        let (Some(epoch), Some(last)) = (
            items
                .first()
                .and_then(Value::text)
                .and_then(pubsub::parse_epoch),
            items.get(1).and_then(Value::int),
        ) else {
            self.malformed("an hf_open reply");
            return Ok(());
        };
        let mut history = Vec::new();
        for e in items
            .get(2)
            .and_then(Value::items)
            .unwrap_or(&[])
            .iter()
            .rev()
        {
            let Some((seq, binary, data)) = stream_entry(e) else {
                continue;
            };
            if let Some(frame) = self.frame(topic, seq, binary, &data) {
                history.push((seq, frame));
            }
        }
        let n = self.hub.sync(topic, epoch, last.max(0) as u64, history);
        self.stats.caught_up.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn now_ms() -> u64 {
    now_us() / 1000
}

/// A topic message as the function library publishes it: `m EPOCH SEQ KIND AT DATA`.
#[derive(Debug, PartialEq, Eq)]
struct Message<'a> {
    epoch: u64,
    seq: u64,
    binary: bool,
    at: u64,
    data: &'a [u8],
}

fn parse_message(body: &[u8]) -> Option<Message<'_>> {
    let rest = body.strip_prefix(b"m ")?;
    let mut parts = rest.splitn(5, |&b| b == b' ');
    fn field(p: Option<&[u8]>) -> Option<&str> {
        p.and_then(|x| std::str::from_utf8(x).ok())
    }
    let epoch = pubsub::parse_epoch(field(parts.next())?)?;
    let seq: u64 = field(parts.next())?.parse().ok()?;
    let binary = match parts.next()? {
        b"t" => false,
        b"b" => true,
        _ => return None,
    };
    let at: u64 = field(parts.next())?.parse().ok()?;
    let data = parts.next().unwrap_or(b"");
    (seq > 0).then_some(Message {
        epoch,
        seq,
        binary,
        at,
        data,
    })
}

/// A stream entry `[0-N, [k, KIND, d, DATA]]`.
fn stream_entry(e: &Value) -> Option<(u64, bool, Vec<u8>)> {
    let items = e.items()?;
    let seq: u64 = items.first()?.text()?.strip_prefix("0-")?.parse().ok()?;
    let fields = items.get(1)?.items()?;
    let mut kind = None;
    let mut data = None;
    for pair in fields.chunks(2) {
        match (pair.first().and_then(Value::bytes), pair.get(1)) {
            (Some(b"k"), Some(v)) => kind = v.bytes(),
            (Some(b"d"), Some(v)) => data = v.bytes(),
            _ => {}
        }
    }
    let binary = match kind? {
        b"t" => false,
        b"b" => true,
        _ => return None,
    };
    Some((seq, binary, data?.to_vec()))
}

fn published(v: &Value) -> Option<Published> {
    let items = v.items()?;
    Some(Published {
        epoch: pubsub::parse_epoch(items.first()?.text()?)?,
        seq: items.get(1)?.int()?.max(0) as u64,
        subscribers: 0,
        workers: 0,
    })
}

fn presence_report(v: &Value, list: usize) -> Option<presence::PresenceReport> {
    let items = v.items()?;
    let connections = items.first()?.int()?.max(0) as u64;
    let users = items.get(1)?.int()?.max(0) as u64;
    let mut members = Vec::new();
    for pair in items.get(2)?.items()?.chunks(2) {
        if let Some(m) = pair
            .get(1)
            .and_then(Value::bytes)
            .and_then(Member::from_record)
        {
            members.push(m);
        }
    }
    Some(presence::PresenceReport::new(
        connections,
        users,
        members,
        list,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_stream_entries_parse_and_garbage_does_not() {
        let m = parse_message(b"m 19a2b3c4d5e6f 42 t 1700000000123456 hello world").unwrap();
        assert_eq!(
            m,
            Message {
                epoch: 0x19a2b3c4d5e6f,
                seq: 42,
                binary: false,
                at: 1_700_000_000_123_456,
                data: b"hello world",
            }
        );
        assert_eq!(parse_message(b"m 1 2 b 3 ").unwrap().data, b"");
        for bad in [
            &b"m zz 1 t 1 x"[..],
            b"m 1 x t 1 x",
            b"m 1 1 q 1 x",
            b"x",
            b"m 1 0 t 1 x",
        ] {
            assert_eq!(
                parse_message(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = Value::Array(Some(vec![
            Value::Bulk(Some(b"0-7".to_vec())),
            Value::Array(Some(vec![
                Value::Bulk(Some(b"k".to_vec())),
                Value::Bulk(Some(b"b".to_vec())),
                Value::Bulk(Some(b"d".to_vec())),
                Value::Bulk(Some(vec![0, 1])),
            ])),
        ]));
        assert_eq!(stream_entry(&e), Some((7, true, vec![0, 1])));
        assert!(matches!(parse_channel(b"hf:{chat:1}:m"), Some(Chan::Topic(t)) if &*t == "chat:1"));
        assert!(matches!(parse_channel(b"hf:u:{ann}"), Some(Chan::User(u)) if &*u == "ann"));
        assert!(parse_channel(b"other").is_none());
    }
}
