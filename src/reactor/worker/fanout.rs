//! The worker's side of pub/sub: draining the hub's queue on a wake, handing each shared
//! frame to the local subscribers (by reference, no copy per recipient), the slow-consumer
//! policies, control messages from clients, and leaving topics when a connection goes.

use std::sync::Arc;

use io_uring::{opcode, types};

use super::{Core, HUB_WAKE};
use crate::conn::{Outbound, Phase};
use crate::pubsub::{self, Control, Payload, SlowPolicy};
use crate::reactor::token::{Op, Token};
use crate::ws::OpCode;

impl Core {
    /// Ring 0 polls the hub's eventfd for this worker (multishot).
    pub(super) fn arm_hub_wake(&mut self) {
        let fd = self.ps.spec.waker.raw_fd();
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(Token::new(Op::Wake, HUB_WAKE, 0).encode());
        self.push(0, sqe);
    }

    /// Deliver what the hub queued for this worker, up to a batch per turn.
    pub(super) fn deliver_queued(&mut self) {
        self.ps.backlog = false;
        for _ in 0..super::DELIVERY_BATCH {
            let Ok(d) = self.ps.spec.rx.try_recv() else {
                return;
            };
            self.ps.spec.hub.taken(self.id, d.frame.len());
            self.deliver(d.topic, d.seq, &d.frame);
        }
        // More than a batch waiting: finish on the next turn, after other completions.
        self.ps.backlog = !self.ps.spec.rx.is_empty();
    }

    /// Message `seq` of topic `id` to every local subscriber that takes it live.
    fn deliver(&mut self, id: u32, seq: u64, frame: &Arc<[u8]>) {
        let Some(policy) = self.ps.local.topic(id).map(|t| t.policy) else {
            return; // every local subscriber left since it was queued
        };
        let mut list = std::mem::take(&mut self.ps.scratch);
        self.ps.local.recipients(id, seq, &mut list);
        for &c in &list {
            self.deliver_to(c as usize, id, seq, frame, policy);
        }
        self.ps.scratch = list;
    }

    /// Queue one shared frame for connection `idx`, applying the topic's policy if it would
    /// cross the outbound cap.
    fn deliver_to(&mut self, idx: usize, id: u32, seq: u64, frame: &Arc<[u8]>, p: SlowPolicy) {
        let cap = self.s.max_outbound;
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        let out = conn.out.get_or_insert_with(Box::<Outbound>::default);
        let need = frame.len();
        let mut fits = out.queued() + need <= cap;
        if !fits {
            if p == SlowPolicy::Close {
                self.metrics.slow_policy_closes.inc();
                self.close_slow(idx);
                return self.flush(idx);
            }
            let mut dropped = out.drop_oldest(id, need, cap).messages;
            fits = out.queued() + need <= cap;
            if !fits {
                // Still no room (other topics or replies fill the queue): this one goes
                // too, named in the gap at the back.
                out.push_gap(id, seq, seq);
                dropped += 1;
            }
            self.metrics.slow_drop_events.inc();
            self.metrics.delivery_drops.add(dropped);
            tracing::debug!(
                worker = self.id,
                conn = idx,
                dropped,
                "slow consumer: dropped oldest deliveries, gap queued"
            );
        }
        if fits {
            out.push_shared(frame.clone(), id, seq);
            self.metrics.deliveries.inc();
            self.metrics.messages_out.inc();
            self.metrics.bytes_out.add(need as u64);
        }
        self.flush(idx);
    }

    /// A whole message from a client: control for pub/sub connections, echo otherwise.
    pub(super) fn on_message(&mut self, idx: usize, op: OpCode, payload: &[u8]) {
        if self.ps.local.is_member(idx as u32) {
            self.on_control(idx, op, payload);
        } else {
            self.queue_frame(idx, op, payload);
        }
    }

    fn reply(&mut self, idx: usize, text: &str) {
        self.queue_frame(idx, OpCode::Text, text.as_bytes());
    }

    fn control_error(&mut self, idx: usize, reason: &str) {
        self.metrics.control_errors.inc();
        self.reply(idx, &pubsub::reply_error(reason));
    }

    fn on_control(&mut self, idx: usize, op: OpCode, payload: &[u8]) {
        // Text frames were checked as UTF-8 by the decoder.
        let text = match (op, std::str::from_utf8(payload)) {
            (OpCode::Text, Ok(t)) => t,
            _ => return self.control_error(idx, "binary_frames_are_not_control_messages"),
        };
        match pubsub::parse_control(text, &self.ps.spec.limits) {
            Err(e) => self.control_error(idx, &e.reason()),
            Ok(Control::Subscribe { topics, resume }) => self.subscribe(idx, topics, resume),
            Ok(Control::Unsubscribe { topics }) => {
                for t in topics {
                    let c = idx as u32;
                    if let Some(id) = self.ps.local.find(c, &t) {
                        self.ps.local.unsubscribe(c, id);
                        self.ps.spec.hub.unsubscribe(self.id, &t);
                    }
                    let r = serde_json::json!({"type": "unsubscribed", "topic": t}).to_string();
                    self.reply(idx, &r);
                }
                self.metrics
                    .subscriptions
                    .set(self.ps.local.subscriptions() as u64);
            }
            Ok(Control::Publish { topic, data }) => {
                if !self.ps.spec.client_publish {
                    return self.control_error(
                        idx,
                        "publish_disabled (the server was started without --client-publish)",
                    );
                }
                match self.ps.spec.hub.publish(&topic, Payload::Text(&data)) {
                    Ok(p) => {
                        self.metrics.client_publishes.inc();
                        self.reply(idx, &pubsub::reply_published(&topic, p.seq));
                    }
                    Err(e) => self.control_error(idx, &e.reason()),
                }
            }
        }
    }

    /// Subscribe connection `idx` to `topics`, replaying from the resume points given.
    /// Replies `subscribed` (with the newest number) per topic, then the gap and the replayed
    /// frames if resuming; live messages follow without duplicates.
    pub(super) fn subscribe(
        &mut self,
        idx: usize,
        topics: Vec<String>,
        resume: Vec<(String, u64)>,
    ) {
        let c = idx as u32;
        let max = self.ps.spec.limits.max_per_connection;
        let held = self.ps.local.topics_of(c).len();
        let new = topics
            .iter()
            .filter(|t| self.ps.local.find(c, t).is_none())
            .count();
        if held + new > max {
            let e = pubsub::TopicError::TooManyTopics { max };
            return self.control_error(idx, &e.reason());
        }
        for topic in topics {
            let from = resume.iter().find(|(t, _)| *t == topic).map(|(_, s)| *s);
            let (id, owed) = match self.ps.spec.hub.subscribe(self.id, &topic, from) {
                Ok(x) => x,
                Err(e) => {
                    self.control_error(idx, &e.reason());
                    continue;
                }
            };
            let policy = self.ps.spec.policies.for_topic(&topic);
            if !self.ps.local.subscribe(c, id, &topic, policy, owed.last) {
                // Already subscribed: the hub counted it twice.
                self.ps.spec.hub.unsubscribe(self.id, &topic);
            }
            self.reply(idx, &pubsub::reply_subscribed(&topic, owed.last));
            if let Some((a, b)) = owed.gap {
                if let Some(conn) = self.conns.get_mut(idx) {
                    let out = conn.out.get_or_insert_with(Box::<Outbound>::default);
                    out.push_gap(id, a, b);
                }
            }
            for (seq, frame) in &owed.frames {
                self.deliver_to(idx, id, *seq, frame, policy);
            }
            self.flush(idx);
        }
        self.metrics
            .subscriptions
            .set(self.ps.local.subscriptions() as u64);
    }

    /// Connection `idx` is going: drop its subscriptions (local index and hub counts).
    pub(super) fn leave_pubsub(&mut self, idx: usize) {
        if !self.ps.local.is_member(idx as u32) {
            return;
        }
        for name in self.ps.local.leave(idx as u32) {
            self.ps.spec.hub.unsubscribe(self.id, &name);
        }
        self.metrics
            .subscriptions
            .set(self.ps.local.subscriptions() as u64);
    }
}
