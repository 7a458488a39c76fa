//! One worker's view of pub/sub: which of its connections subscribe to which topic, and from
//! which sequence number on each of them takes live deliveries. Sans-IO; the worker owns one.
//!
//! The index has two sides: per topic, the subscribing connections with their `after` point
//! (live deliveries numbered ≤ `after` were replayed or predate the subscription and are
//! skipped), and per connection, its topics (for unsubscribing everything when it closes).
//! Connections that never use pub/sub have no entry at all.

use super::TopicId;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::policy::SlowPolicy;
use crate::slabmap::SlabMap;

/// A topic as one worker knows it.
#[derive(Debug)]
pub struct LocalTopic {
    /// The topic's name.
    pub name: Box<str>,
    /// What to do when a subscriber's outbound cap is crossed.
    pub policy: SlowPolicy,
    /// Subscribing connections (slab index) → the last sequence number they must not get live.
    pub subs: SlabMap<u64>,
    /// The topic's epoch as last told (for event-stream cursors).
    pub epoch: u64,
    /// The newest number this worker offered its subscribers (a hand-over's position).
    pub last: u64,
    /// Every subscriber in ascending slab order, kept between publishes while the
    /// subscribers do not change ([`LocalSubs::recipients`]); empty while `fresh` is false.
    order: Vec<u32>,
    /// The greatest `after` in `subs` when `order` was made: a message numbered above it
    /// goes to every subscriber.
    most: u64,
    /// Whether `order` and `most` stand for `subs`.
    fresh: bool,
}

/// A topic with at least this many subscribers on a worker keeps its recipient order
/// between publishes; a smaller one is listed afresh (a few map entries cost less than a
/// list kept per topic).
const ORDER_MIN: usize = 32;

impl LocalTopic {
    /// Its subscribers changed: the kept order is rebuilt at the next publish (its room is
    /// kept: a topic publishing through a stream of joins reuses it).
    fn stale(&mut self) {
        self.fresh = false;
        self.order.clear();
    }
}

/// A subscription's `after` while it waits for the backplane to bring its topic's
/// numbering (see [`crate::pubsub::hub`]): it takes no live message until then.
pub const PENDING: u64 = u64::MAX;

/// A pub/sub connection as one worker knows it.
#[derive(Debug, Default)]
struct Member {
    /// Its topics.
    topics: Vec<TopicId>,
    /// Its connection id: unique in the process (never reused), so an answer meant for it
    /// cannot reach a later connection in the same slab entry.
    id: u64,
    /// What the client said it is (`client=` on the upgrade), for presence.
    client: Option<Box<str>>,
    /// An event stream (server-sent events) rather than a WebSocket.
    stream: bool,
    /// A long poll.
    poll: bool,
    /// The subscribe rate's theoretical arrival time, in milliseconds of the worker's clock
    /// (a GCRA bucket in the struct's padding: a member is still 56 bytes); 0: none yet.
    due: u32,
}

/// Hashes a [`TopicId`] with one multiplication. The hub numbers topics 0, 1, 2, … itself,
/// so no client chooses a key here and SipHash's defence against chosen keys buys nothing;
/// an odd multiplier maps consecutive ids to distinct low bits (the table's slot) and mixes
/// the high ones (its tag). SipHash was ~2.5% of an event stream's server samples: two
/// lookups per event (`set_after`, `write_cursor`).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by server-assigned ids ([`IdHasher`]).
type IdMap<V> = HashMap<TopicId, V, BuildHasherDefault<IdHasher>>;

/// A worker's subscription index.
#[derive(Debug, Default)]
pub struct LocalSubs {
    topics: IdMap<LocalTopic>,
    /// Pub/sub connections (those upgraded on the pub/sub endpoint) → their topics.
    conns: SlabMap<Member>,
    /// Subscriptions held.
    count: usize,
    /// Of them, pending ones (waiting for the backplane): while none is, [`LocalSubs::waiting`]
    /// answers without a lookup (a hand-over asks it of every connection).
    pending: usize,
    /// The next connection id (the worker's index in the top 16 bits).
    next_id: u64,
}

impl LocalSubs {
    /// The index of worker `worker` (its connection ids carry the worker's number).
    pub fn for_worker(worker: usize) -> Self {
        Self {
            next_id: (worker as u64) << 48,
            ..Self::default()
        }
    }

    /// Mark `conn` as a pub/sub connection (its text frames are control messages) and give
    /// it its connection id.
    pub fn join(&mut self, conn: u32) -> u64 {
        self.member(conn).id
    }

    /// `conn`'s entry, made (with the next id) if it has none.
    fn member(&mut self, conn: u32) -> &mut Member {
        let next = &mut self.next_id;
        self.conns.entry(conn).or_insert_with(|| {
            *next += 1;
            Member {
                topics: Vec::new(),
                id: *next,
                client: None,
                stream: false,
                poll: false,
                due: 0,
            }
        })
    }

    /// Record what pub/sub connection `conn` says it is.
    pub fn set_client(&mut self, conn: u32, client: Box<str>) {
        if let Some(m) = self.conns.get_mut(&conn) {
            m.client = Some(client);
        }
    }

    /// Mark pub/sub connection `conn` as an event stream.
    pub fn set_stream(&mut self, conn: u32) {
        self.member(conn).stream = true;
    }

    /// Whether `conn` may make `n` subscription changes at `now` (milliseconds, wrapping),
    /// one per `interval` ms with a burst of `burst`: taken if so. A generic cell rate
    /// bucket in one `u32`: its due time is never more than `burst` intervals ahead of now,
    /// so one further ahead than that is one in the past, however long ago (the clock
    /// wraps after 49 days). 0 is "no change yet".
    pub fn take_changes(&mut self, conn: u32, now: u32, n: u32, interval: u32, burst: u32) -> bool {
        let m = self.member(conn);
        let window = burst.saturating_mul(interval);
        let ahead = m.due.wrapping_sub(now);
        let from = if m.due != 0 && ahead <= window {
            m.due
        } else {
            now
        };
        let due = from.wrapping_add(n.saturating_mul(interval));
        if due.wrapping_sub(now) > window {
            return false;
        }
        m.due = due.max(1);
        true
    }

    /// Mark pub/sub connection `conn` as a long poll.
    pub fn set_poll(&mut self, conn: u32) {
        self.member(conn).poll = true;
    }

    /// Whether `conn` is a long poll.
    pub fn is_poll(&self, conn: u32) -> bool {
        self.conns.get(&conn).is_some_and(|m| m.poll)
    }

    /// Whether `conn` is an event stream.
    pub fn is_stream(&self, conn: u32) -> bool {
        self.conns.get(&conn).is_some_and(|m| m.stream)
    }

    /// Record topic `id`'s epoch (for cursors).
    pub fn set_epoch(&mut self, id: TopicId, epoch: u64) {
        if let Some(t) = self.topics.get_mut(&id) {
            if t.epoch != epoch {
                t.last = 0; // numbers of another epoch
            }
            t.epoch = epoch;
        }
    }

    /// `conn`'s position in every topic it follows: `topic:seq@epoch,…` (what an event
    /// stream's event ids carry, and what `Last-Event-ID` gives back). Pending
    /// subscriptions are left out.
    pub fn cursor(&self, conn: u32) -> String {
        let mut out = Vec::new();
        self.write_cursor(conn, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`LocalSubs::cursor`] appended to `out` without allocating (an event stream writes
    /// it into every event).
    pub fn write_cursor(&self, conn: u32, out: &mut Vec<u8>) {
        let mut first = true;
        for id in self.topics_of(conn) {
            let Some(t) = self.topics.get(id) else {
                continue;
            };
            let Some(&after) = t.subs.get(&conn).filter(|a| **a != PENDING) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            // `name:after@epoch`, the epoch as `format_epoch` writes it; by hand, since the
            // formatter was ~3% of an event stream's server samples (an id per event).
            out.extend_from_slice(t.name.as_bytes());
            out.push(b':');
            push_decimal(out, after);
            out.push(b'@');
            push_hex16(out, t.epoch);
        }
    }

    /// What pub/sub connection `conn` said it is.
    pub fn client(&self, conn: u32) -> Option<&str> {
        self.conns.get(&conn).and_then(|m| m.client.as_deref())
    }

    /// Connection `conn`'s id, if it is a pub/sub connection.
    pub fn conn_id(&self, conn: u32) -> Option<u64> {
        self.conns.get(&conn).map(|m| m.id)
    }

    /// Set the point after which `conn` takes live messages of topic `id` (a pending
    /// subscription completes); false if it is not subscribed.
    pub fn set_after(&mut self, conn: u32, id: TopicId, after: u64) -> bool {
        let Some(t) = self.topics.get_mut(&id) else {
            return false;
        };
        let Some(a) = t.subs.get_mut(&conn) else {
            return false;
        };
        let was = std::mem::replace(a, after);
        t.stale();
        self.pending = self.pending + usize::from(after == PENDING) - usize::from(was == PENDING);
        true
    }

    /// The point after which `conn` takes live messages of topic `id`, if subscribed.
    pub fn after(&self, conn: u32, id: TopicId) -> Option<u64> {
        self.topics.get(&id)?.subs.get(&conn).copied()
    }

    /// Fill `out` with the connections subscribed to topic `id` that are not pending, in
    /// ascending slab order ([`ascending`]).
    pub fn settled(&self, id: TopicId, out: &mut Vec<u32>) {
        out.clear();
        if let Some(t) = self.topics.get(&id) {
            out.extend(
                t.subs
                    .iter()
                    .filter(|(_, &after)| after != PENDING)
                    .map(|(&c, _)| c),
            );
        }
        ascending(out);
    }

    /// `conn`'s settled subscriptions as (topic, epoch, last number queued to it); pending
    /// ones are left out (see [`LocalSubs::waiting`]).
    pub fn positions(&self, conn: u32) -> Vec<(Box<str>, u64, u64)> {
        self.topics_of(conn)
            .iter()
            .filter_map(|id| {
                let t = self.topics.get(id)?;
                match t.subs.get(&conn) {
                    Some(&after) if after != PENDING => {
                        Some((t.name.clone(), t.epoch, after.max(t.last)))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Whether `conn` has a subscription still waiting for its topic's numbering (which
    /// cannot be handed over yet). Allocates nothing: a hand-over asks it of every
    /// connection before moving it.
    pub fn waiting(&self, conn: u32) -> bool {
        self.pending > 0
            && self.topics_of(conn).iter().any(|id| {
                self.topics
                    .get(id)
                    .is_some_and(|t| t.subs.get(&conn) == Some(&PENDING))
            })
    }

    /// Whether `conn` is a pub/sub connection.
    pub fn is_member(&self, conn: u32) -> bool {
        !self.conns.is_empty() && self.conns.contains_key(&conn)
    }

    /// Topics `conn` is subscribed to.
    pub fn topics_of(&self, conn: u32) -> &[TopicId] {
        self.conns.get(&conn).map_or(&[], |m| m.topics.as_slice())
    }

    /// Subscribe `conn` to topic `id` taking live messages numbered > `after`. The name and
    /// policy are needed the first time this worker sees the topic. Returns false if it was
    /// already subscribed (its `after` is updated).
    pub fn subscribe(
        &mut self,
        conn: u32,
        id: TopicId,
        name: &str,
        policy: SlowPolicy,
        after: u64,
    ) -> bool {
        let t = self.topics.entry(id).or_insert_with(|| LocalTopic {
            name: name.into(),
            policy,
            subs: SlabMap::default(),
            epoch: 0,
            last: 0,
            order: Vec::new(),
            most: 0,
            fresh: false,
        });
        t.stale();
        let was = t.subs.insert(conn, after);
        self.pending =
            self.pending + usize::from(after == PENDING) - usize::from(was == Some(PENDING));
        let new = was.is_none();
        if new {
            self.count += 1;
            self.member(conn).topics.push(id);
        }
        new
    }

    /// Unsubscribe `conn` from topic `id`; returns the topic's name if it was subscribed.
    pub fn unsubscribe(&mut self, conn: u32, id: TopicId) -> Option<Box<str>> {
        let t = self.topics.get_mut(&id)?;
        let was = t.subs.remove(&conn)?;
        t.stale();
        self.count -= 1;
        self.pending -= usize::from(was == PENDING);
        let name = t.name.clone();
        if let Some(m) = self.conns.get_mut(&conn) {
            m.topics.retain(|&x| x != id);
        }
        if t.subs.is_empty() {
            self.topics.remove(&id);
        }
        Some(name)
    }

    /// `conn` is gone: forget it; returns the names of the topics it was subscribed to.
    pub fn leave(&mut self, conn: u32) -> Vec<Box<str>> {
        let Some(Member { topics: list, .. }) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let mut names = Vec::with_capacity(list.len());
        for id in list {
            if let Some(t) = self.topics.get_mut(&id) {
                if let Some(was) = t.subs.remove(&conn) {
                    t.stale();
                    self.count -= 1;
                    self.pending -= usize::from(was == PENDING);
                }
                names.push(t.name.clone());
                if t.subs.is_empty() {
                    self.topics.remove(&id);
                }
            }
        }
        names
    }

    /// The topic with id `id`, if any local connection subscribes to it.
    pub fn topic(&self, id: TopicId) -> Option<&LocalTopic> {
        self.topics.get(&id)
    }

    /// Topic `id`'s name, if known here.
    pub fn name(&self, id: TopicId) -> Option<&str> {
        self.topics.get(&id).map(|t| &*t.name)
    }

    /// Fill `out` with the connections that take message `seq` of topic `id` live, in
    /// ascending slab order ([`ascending`]). A topic with [`ORDER_MIN`] subscribers or more
    /// keeps that order between publishes: while its subscribers stay the same and none
    /// waits for a number at or above `seq`, its list is copied, not rebuilt from the map
    /// (at 9k subscribers a worker's rebuild was 1.6% of its samples at 120 publishes/s).
    pub fn recipients(&mut self, id: TopicId, seq: u64, out: &mut Vec<u32>) {
        out.clear();
        if let Some(t) = self.topics.get_mut(&id) {
            t.last = t.last.max(seq);
            if t.subs.len() >= ORDER_MIN {
                if !t.fresh {
                    // One pass over the map for the list and the greatest `after`.
                    t.order.clear();
                    let mut most = 0;
                    for (&c, &after) in &t.subs {
                        t.order.push(c);
                        most = most.max(after);
                    }
                    ascending(&mut t.order);
                    t.most = most;
                    t.fresh = true;
                }
                if seq > t.most {
                    out.extend_from_slice(&t.order);
                    return;
                }
            }
            out.extend(
                t.subs
                    .iter()
                    .filter(|(_, &after)| seq > after)
                    .map(|(&c, _)| c),
            );
        }
        ascending(out);
    }

    /// Subscriptions held on this worker.
    pub fn subscriptions(&self) -> usize {
        self.count
    }

    /// The id of topic `name` if `conn` is subscribed to it.
    pub fn find(&self, conn: u32, name: &str) -> Option<TopicId> {
        self.topics_of(conn)
            .iter()
            .copied()
            .find(|id| self.name(*id) == Some(name))
    }
}

/// `n` in decimal, appended: what `write!(out, "{n}")` writes.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `n` as 16 lowercase hex digits, appended: what `write!(out, "{n:016x}")` writes.
fn push_hex16(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend((0..16).rev().map(|i| HEX[((n >> (i * 4)) & 0xf) as usize]));
}

/// Put distinct slab indices in ascending order. A topic's map iterates in its hash's order,
/// which scatters neighbouring slots on purpose; a worker that sends to its recipients in
/// slab order goes from a connection to its neighbour, whose kernel objects (file-table
/// entry, resource node, file, socket) were allocated beside it as the slots were taken
/// (forty-sixth sitting, `bench/results/2026-12-06-grouped-phases-46-notes.md`). Dense
/// indices (at least one per 64 slots of their span) go through a bit set, one pass over
/// the list and one over the bits; sparse ones are sorted, so the cost stays within
/// `O(n log n)` of the list whatever slots it holds.
pub fn ascending(out: &mut [u32]) {
    let Some(&top) = out.iter().max() else {
        return;
    };
    let words = top as usize / 64 + 1;
    if out.len() <= 16 || words > out.len() {
        out.sort_unstable();
        return;
    }
    let mut bits = vec![0u64; words];
    for &i in out.iter() {
        bits[i as usize / 64] |= 1 << (i % 64);
    }
    let mut k = 0;
    for (w, &word) in bits.iter().enumerate() {
        let mut x = word;
        while x != 0 {
            // Distinct indices: exactly `out.len()` bits are set, so `k` stays in bounds.
            out[k] = (w * 64) as u32 + x.trailing_zeros();
            k += 1;
            x &= x - 1;
        }
    }
    debug_assert_eq!(k, out.len(), "indices must be distinct");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The cursor's numbers written by hand read as the formatter writes them.
        #[test]
        fn numbers_by_hand_are_what_the_formatter_writes(n in any::<u64>(), small in 0u64..1000) {
            for v in [n, small, 0, 9, 10, u64::MAX] {
                let mut out = Vec::new();
                push_decimal(&mut out, v);
                out.push(b'@');
                push_hex16(&mut out, v);
                prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{v}@{v:016x}"));
            }
        }
    }

    #[test]
    fn an_event_streams_cursor_names_each_settled_topic_with_its_epoch() {
        let mut l = LocalSubs::default();
        l.join(1);
        assert!(l.subscribe(1, 10, "a.b", SlowPolicy::Drop, 0));
        assert!(l.subscribe(1, 11, "c", SlowPolicy::Drop, 0));
        l.set_epoch(10, 0x6f1c_0e2a_9b3d_4c57);
        l.set_epoch(11, 1);
        assert!(l.set_after(1, 10, 41) && l.set_after(1, 11, u64::MAX - 1));
        assert_eq!(
            l.cursor(1),
            format!(
                "a.b:41@6f1c0e2a9b3d4c57,c:{}@0000000000000001",
                u64::MAX - 1
            )
        );
    }

    #[test]
    fn recipients_skip_what_was_replayed_and_leave_unsubscribes_everything() {
        let mut l = LocalSubs::default();
        assert!(!l.is_member(1));
        l.join(1);
        assert!(l.is_member(1) && !l.is_member(2));
        assert!(l.subscribe(1, 10, "a", SlowPolicy::Drop, 0));
        assert!(l.subscribe(2, 10, "a", SlowPolicy::Drop, 5));
        assert!(l.subscribe(2, 11, "b", SlowPolicy::Close, 0));
        assert!(
            !l.subscribe(2, 11, "b", SlowPolicy::Close, 3),
            "already subscribed"
        );
        let mut r = Vec::new();
        l.recipients(10, 5, &mut r);
        assert_eq!(r, [1], "connection 2 resumed through 5");
        l.recipients(10, 6, &mut r);
        assert_eq!(r, [1, 2]);
        l.recipients(11, 3, &mut r);
        assert!(r.is_empty(), "after was updated to 3");
        assert_eq!(l.subscriptions(), 3);
        assert_eq!(l.unsubscribe(1, 10).as_deref(), Some("a"));
        assert_eq!(l.unsubscribe(1, 10), None);
        let mut gone = l.leave(2);
        gone.sort();
        assert_eq!(gone, ["a".into(), "b".into()] as [Box<str>; 2]);
        assert_eq!(l.subscriptions(), 0);
        assert!(l.topic(10).is_none(), "an empty topic is forgotten");
        assert!(
            l.is_member(1),
            "1 is still a pub/sub connection with no topics"
        );
        assert!(l.leave(1).is_empty());
        assert!(!l.is_member(1));
    }

    #[test]
    fn recipients_and_settled_lists_come_in_slab_order_dense_or_sparse() {
        let mut l = LocalSubs::default();
        // Dense: 3,000 of the first 3,500 slots, subscribed in a scrambled order.
        let dense: Vec<u32> = (0..3_500u32).filter(|i| i % 7 != 3).collect();
        let mut scrambled = dense.clone();
        scrambled.sort_by_key(|&i| i.wrapping_mul(0x9E37_79B9));
        for &c in &scrambled {
            assert!(l.subscribe(c, 10, "a", SlowPolicy::Drop, 0));
        }
        let mut r = Vec::new();
        l.recipients(10, 1, &mut r);
        assert_eq!(r, dense);
        l.settled(10, &mut r);
        assert_eq!(r, dense);
        // Sparse: 40 slots spread over a million.
        let sparse: Vec<u32> = (0..40u32).map(|i| i * 25_013 + i % 3).collect();
        for &c in sparse.iter().rev() {
            assert!(l.subscribe(c, 11, "b", SlowPolicy::Drop, 0));
        }
        l.recipients(11, 1, &mut r);
        assert_eq!(r, sparse);
        // Edge cases of the bit set: slot 0, a word's last bit, the next word's first.
        let mut edges = vec![
            127, 0, 64, 63, 1, 65, 126, 2, 62, 3, 66, 125, 4, 61, 5, 67, 124,
        ];
        ascending(&mut edges);
        assert_eq!(
            edges,
            [0, 1, 2, 3, 4, 5, 61, 62, 63, 64, 65, 66, 67, 124, 125, 126, 127]
        );
        let mut empty: Vec<u32> = Vec::new();
        ascending(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn subscription_changes_take_a_burst_then_the_rate_and_the_clock_may_wrap() {
        // The bucket lives in the member's padding.
        assert_eq!(std::mem::size_of::<Member>(), 56);
        let mut l = LocalSubs::default();
        let (interval, burst) = (50, 64); // 20 a second, 64 at once
        let take = |l: &mut LocalSubs, now: u32, n: u32| l.take_changes(7, now, n, interval, burst);
        let t0 = 1_000_000;
        assert!(take(&mut l, t0, 60));
        assert!(take(&mut l, t0, 4), "the burst: 64");
        assert!(!take(&mut l, t0, 1), "the 65th at once");
        assert!(!take(&mut l, t0 + 49, 1));
        assert!(take(&mut l, t0 + 50, 1), "one more per 50 ms");
        assert!(!take(&mut l, t0 + 50, 1));
        assert!(!take(&mut l, t0 + 99, 2));
        assert!(take(&mut l, t0 + 150, 2));
        // Refused messages take nothing: idle for a burst's time, the burst is back.
        assert!(take(&mut l, t0 + 150 + 3200, 64));
        // Idle past the clock's wrap (49 days of milliseconds), from anywhere: a full burst.
        let mut w = LocalSubs::default();
        assert!(w.take_changes(1, u32::MAX - 10, 64, interval, burst));
        assert!(
            w.take_changes(1, 5_000, 64, interval, burst),
            "after the wrap"
        );
        assert!(!w.take_changes(1, 5_000, 1, interval, burst));
        // More than a burst in one message never passes.
        assert!(!LocalSubs::default().take_changes(2, 0, 65, interval, burst));
    }

    #[test]
    fn a_pending_subscription_makes_its_connection_wait_and_is_left_out_of_its_positions() {
        let mut l = LocalSubs::default();
        assert!(!l.waiting(1), "not a member");
        l.join(1);
        assert!(l.subscribe(1, 10, "a", SlowPolicy::Drop, 4));
        assert!(l.subscribe(1, 11, "b", SlowPolicy::Drop, PENDING));
        assert!(l.subscribe(2, 11, "b", SlowPolicy::Drop, 7));
        assert!(l.waiting(1) && !l.waiting(2));
        let mut r = Vec::new();
        l.recipients(10, 9, &mut r);
        assert_eq!(
            l.positions(1),
            [("a".into(), 0, 9)],
            "the settled topic, at the newest number offered; the pending one left out"
        );
        assert_eq!(l.positions(2), [("b".into(), 0, 7)]);
        assert!(l.set_after(1, 11, 8), "numbered now");
        assert!(!l.waiting(1));
        assert_eq!(l.positions(1).len(), 2);
        assert_eq!(pending(&l), 0);
        // The tally of pending subscriptions follows every way one comes and goes.
        assert!(l.subscribe(3, 12, "c", SlowPolicy::Drop, PENDING));
        assert!(l.subscribe(4, 12, "c", SlowPolicy::Drop, PENDING));
        assert!(
            !l.subscribe(4, 12, "c", SlowPolicy::Drop, PENDING),
            "again: counted once"
        );
        assert!(l.subscribe(4, 13, "d", SlowPolicy::Drop, PENDING));
        assert_eq!(pending(&l), 3);
        assert!(l.waiting(3) && l.waiting(4));
        assert!(l.set_after(4, 13, 2));
        assert_eq!(pending(&l), 2);
        assert!(l.set_after(4, 13, PENDING), "pending again (a resubscribe)");
        assert_eq!(pending(&l), 3);
        assert!(l.unsubscribe(3, 12).is_some());
        assert_eq!(pending(&l), 2);
        assert!(!l.waiting(3));
        assert_eq!(l.leave(4).len(), 2);
        assert_eq!(pending(&l), 0);
        assert!(!l.waiting(1) && !l.waiting(2) && !l.waiting(4));
    }

    #[test]
    fn a_kept_recipient_order_follows_every_change_of_a_large_topic() {
        let mut l = LocalSubs::default();
        // Above ORDER_MIN, subscribed in descending order.
        let n = ORDER_MIN as u32 * 2;
        for c in (0..n).rev() {
            l.subscribe(c, 7, "t", SlowPolicy::Drop, 0);
        }
        // Recomputed from the map each time: what the kept order must equal.
        let fresh = |l: &LocalSubs, seq: u64| {
            let mut v: Vec<u32> = l.topics[&7]
                .subs
                .iter()
                .filter(|(_, &a)| seq > a)
                .map(|(&c, _)| c)
                .collect();
            v.sort_unstable();
            v
        };
        let mut r = Vec::new();
        let seq = std::cell::Cell::new(1);
        let mut check = |l: &mut LocalSubs, why: &str| {
            l.recipients(7, seq.get(), &mut r);
            assert_eq!(r, fresh(l, seq.get()), "{why}");
            seq.set(seq.get() + 1);
        };
        check(&mut l, "first publish");
        assert!(l.topics[&7].fresh, "a large topic keeps its order");
        check(&mut l, "unchanged");
        l.subscribe(n + 5, 7, "t", SlowPolicy::Drop, 0);
        check(&mut l, "a join");
        assert!(l.unsubscribe(3, 7).is_some());
        check(&mut l, "an unsubscribe");
        l.leave(10);
        check(&mut l, "a connection leaving");
        // A resume through a number ahead of the next publish: that subscriber skips it.
        assert!(l.set_after(20, 7, seq.get() + 1));
        check(&mut l, "a subscriber ahead: skipped");
        check(&mut l, "still ahead: skipped");
        check(&mut l, "caught up: included");
        assert!(l.set_after(21, 7, PENDING));
        check(&mut l, "a pending subscriber: skipped");
        assert!(l.set_after(21, 7, 0));
        check(&mut l, "settled again");
        l.recipients(7, seq.get(), &mut r);
        assert_eq!(r.len(), n as usize + 1 - 2, "one joined, two left");
    }

    /// The pending tally, checked against the index it summarises.
    fn pending(l: &LocalSubs) -> usize {
        let counted = l
            .topics
            .values()
            .flat_map(|t| t.subs.values())
            .filter(|&&a| a == PENDING)
            .count();
        assert_eq!(l.pending, counted, "the tally drifted from the index");
        counted
    }
}
