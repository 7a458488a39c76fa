//! The hub: the one owner of each topic's sequence numbers and replay window, and the
//! fan-out to workers. A publish takes the topic's lock once, numbers and encodes the message
//! once, records it for replay, and hands the shared frame to the queue of every worker that
//! has a local subscriber (a worker with none does no work for it), then wakes those workers.
//! Deliveries themselves take no lock (see docs/architecture.md, "Pub/sub").

use super::TopicId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::delivery::{delivery_len_bound, encode_delivery, Payload};
use super::replay::{Replay, Resume};
use super::topic::{validate_topic, TopicError, TopicLimits};

/// One message for a worker to deliver to its local subscribers of `topic`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The topic's id (stable for the hub's life).
    pub topic: TopicId,
    /// The message's sequence number in its topic.
    pub seq: u64,
    /// The complete frame, shared by every recipient.
    pub frame: Arc<[u8]>,
}

struct TopicState {
    id: TopicId,
    replay: Replay,
    /// Subscribers per worker.
    local: Vec<u64>,
}

/// Limits of the replay window every topic gets, and of the topics the hub holds.
#[derive(Debug, Clone, Copy)]
pub struct ReplayLimits {
    /// Messages kept per topic.
    pub messages: usize,
    /// Frame bytes kept per topic.
    pub bytes: usize,
    /// Topics held at once (each keeps its window); a publish or subscribe that would create
    /// one more is refused.
    pub max_topics: usize,
    /// Messages waiting in one worker's queue at most; a publish that would pass it (or
    /// `queue_bytes`) is refused as overloaded, before it is numbered.
    pub queue_messages: usize,
    /// Frame bytes waiting in one worker's queue at most.
    pub queue_bytes: usize,
    /// The largest frame a connection can be sent (its outbound cap): a larger message is
    /// refused at publish time.
    pub max_frame: usize,
}

/// The hub shared by the admin thread (publishes) and the workers (subscriptions).
pub struct Hub {
    topics: Mutex<HashMap<Box<str>, TopicState>>,
    queues: Vec<Sender<Delivery>>,
    wake: Vec<Box<dyn Fn() + Send + Sync>>,
    limits: TopicLimits,
    replay: ReplayLimits,
    max_topics: usize,
    next_id: AtomicU64,
    /// Topics held that have subscribers and no message yet (changed under the lock).
    sub_only: AtomicUsize,
    published: AtomicU64,
    refused: AtomicU64,
    /// Frame bytes waiting in each worker's queue.
    queued_bytes: Vec<AtomicUsize>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("workers", &self.queues.len())
            .finish_non_exhaustive()
    }
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's sequence number.
    pub seq: u64,
    /// Workers it was handed to (those with a subscriber).
    pub workers: usize,
    /// Subscribers it will reach.
    pub subscribers: u64,
}

impl Hub {
    /// A hub for `wake.len()` workers; returns it and each worker's queue. `wake[w]` is called
    /// after deliveries were queued for worker `w` (e.g. writes the eventfd its ring polls).
    pub fn new(
        wake: Vec<Box<dyn Fn() + Send + Sync>>,
        limits: TopicLimits,
        replay: ReplayLimits,
    ) -> (Arc<Self>, Vec<Receiver<Delivery>>) {
        let (queues, receivers) = (0..wake.len())
            .map(|_| crossbeam_channel::bounded(replay.queue_messages.max(1)))
            .unzip();
        let queued_bytes = (0..wake.len()).map(|_| AtomicUsize::new(0)).collect();
        let hub = Self {
            topics: Mutex::new(HashMap::new()),
            queues,
            wake,
            limits,
            max_topics: replay.max_topics,
            replay,
            next_id: AtomicU64::new(0),
            sub_only: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            queued_bytes,
        };
        (Arc::new(hub), receivers)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, TopicState>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The topic's state, created if needed. Topics with messages and topics with only
    /// subscribers have separate budgets of `max_topics` each, so subscribing to made-up
    /// names can never starve publishing (and publishing never starves subscribing).
    /// Returns whether the topic had only subscribers until now.
    fn state<'a>(
        &self,
        map: &'a mut HashMap<Box<str>, TopicState>,
        topic: &str,
        for_publish: bool,
    ) -> Result<(&'a mut TopicState, bool), TopicError> {
        let limit = TopicError::ServerTopicLimit {
            max: self.max_topics,
        };
        let sub_only = self.sub_only.load(Ordering::Relaxed);
        let with_history = map.len() - sub_only;
        let was_sub_only = match map.get(topic) {
            Some(st) => st.replay.last() == 0,
            None if for_publish && with_history >= self.max_topics => return Err(limit),
            None if !for_publish && sub_only >= self.max_topics => return Err(limit),
            None => {
                if !for_publish {
                    self.sub_only.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
        };
        if for_publish && was_sub_only {
            // Its first message moves it to the topics with history.
            if with_history >= self.max_topics {
                return Err(limit);
            }
            self.sub_only.fetch_sub(1, Ordering::Relaxed);
        }
        let st = map.entry(topic.into()).or_insert_with(|| TopicState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            replay: Replay::new(self.replay.messages, self.replay.bytes),
            local: vec![0; self.queues.len()],
        });
        Ok((st, was_sub_only))
    }

    /// Publish `payload` to `topic`: number it, encode it once, keep it for replay, queue it
    /// for every worker with a subscriber and wake them.
    pub fn publish(&self, topic: &str, payload: Payload<'_>) -> Result<Published, TopicError> {
        validate_topic(topic, &self.limits)?;
        let mut woken = Vec::new();
        let len = delivery_len_bound(topic, &payload);
        if len > self.replay.max_frame {
            return Err(TopicError::TooLargeToDeliver {
                bytes: len,
                max: self.replay.max_frame,
            });
        }
        let published = {
            let mut map = self.lock();
            // Refuse before numbering if a worker that must get it is full: every number
            // handed out reaches every subscriber (or is named in a gap). Queues only drain
            // while the lock is held, so room seen here is still there below.
            let full = map.get(topic).and_then(|st| {
                st.local.iter().enumerate().find(|(w, n)| {
                    **n > 0
                        && (self.queues[*w].len() >= self.replay.queue_messages
                            || self.queued_bytes[*w].load(Ordering::Relaxed) + len
                                > self.replay.queue_bytes)
                })
            });
            if let Some((w, _)) = full {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(TopicError::Overloaded { worker: w });
            }
            let (st, _) = self.state(&mut map, topic, true)?;
            let seq = st.replay.next_seq();
            self.published.fetch_add(1, Ordering::Relaxed);
            let frame = encode_delivery(topic, seq, payload);
            st.replay.push(frame.clone());
            let mut subscribers = 0;
            for (w, n) in st.local.iter().enumerate().filter(|(_, n)| **n > 0) {
                subscribers += n;
                let d = Delivery {
                    topic: st.id,
                    seq,
                    frame: frame.clone(),
                };
                // A worker that has gone away has dropped its receiver: nothing to deliver.
                if self.queues[w].try_send(d).is_ok() {
                    self.queued_bytes[w].fetch_add(frame.len(), Ordering::Relaxed);
                    woken.push(w);
                }
            }
            Published {
                seq,
                workers: woken.len(),
                subscribers,
            }
        };
        for w in woken {
            (self.wake[w])();
        }
        Ok(published)
    }

    /// A connection on `worker` subscribes to `topic`, resuming after `resume` if given.
    /// Returns the topic id and, for a resume, what the connection is owed; live deliveries
    /// with `seq` ≤ `Resume::last` must then be skipped for it (they were replayed).
    pub fn subscribe(
        &self,
        worker: usize,
        topic: &str,
        resume: Option<u64>,
    ) -> Result<(TopicId, Resume), TopicError> {
        validate_topic(topic, &self.limits)?;
        let mut map = self.lock();
        let (st, _) = self.state(&mut map, topic, false)?;
        st.local[worker] += 1;
        let owed = match resume {
            Some(last) => st.replay.resume(last),
            None => Resume {
                gap: None,
                frames: Vec::new(),
                last: st.replay.last(),
            },
        };
        Ok((st.id, owed))
    }

    /// A connection on `worker` leaves `topic`. A topic left with no subscriber and nothing
    /// ever published is forgotten, so subscribing to made-up names cannot fill the topic
    /// table (`max_topics`); a topic with messages keeps its window for resuming clients.
    pub fn unsubscribe(&self, worker: usize, topic: &str) {
        let mut map = self.lock();
        let forget = match map.get_mut(topic) {
            Some(st) => {
                st.local[worker] = st.local[worker].saturating_sub(1);
                st.replay.last() == 0 && st.local.iter().all(|&n| n == 0)
            }
            None => false,
        };
        if forget {
            map.remove(topic);
            self.sub_only.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Test hook: the next topic created gets id `n`.
    #[cfg(test)]
    fn start_ids_at(&self, n: TopicId) {
        self.next_id.store(n, Ordering::Relaxed);
    }

    /// Worker `worker` took a delivery of `bytes` off its queue.
    pub fn taken(&self, worker: usize, bytes: usize) {
        self.queued_bytes[worker].fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Publishes refused because a worker's queue was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Messages published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Topics held, and the bytes their replay windows hold.
    pub fn totals(&self) -> (usize, usize) {
        let map = self.lock();
        (map.len(), map.values().map(|st| st.replay.held().1).sum())
    }

    /// Subscribers per topic and worker, for `/metrics` and the admin API.
    pub fn presence(&self) -> Vec<(String, Vec<u64>)> {
        let map = self.lock();
        let mut v: Vec<_> = map
            .iter()
            .map(|(t, st)| (t.to_string(), st.local.clone()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn hub(workers: usize) -> (Arc<Hub>, Vec<Receiver<Delivery>>, Arc<Vec<AtomicUsize>>) {
        let wakes: Arc<Vec<AtomicUsize>> =
            Arc::new((0..workers).map(|_| AtomicUsize::new(0)).collect());
        let fns = (0..workers)
            .map(|w| {
                let wakes = wakes.clone();
                Box::new(move || {
                    wakes[w].fetch_add(1, Ordering::Relaxed);
                }) as Box<dyn Fn() + Send + Sync>
            })
            .collect();
        let (h, rx) = Hub::new(
            fns,
            TopicLimits::default(),
            ReplayLimits {
                messages: 4,
                bytes: 1 << 20,
                max_topics: 3,
                queue_messages: 1000,
                queue_bytes: 1 << 20,
                max_frame: 4 << 20,
            },
        );
        (h, rx, wakes)
    }

    #[test]
    fn subscribing_to_made_up_names_cannot_starve_publishing() {
        // Issue 13 item 5: topics with only subscribers counted toward --max-topics, so
        // made-up names filled the table and publishes to any new topic were refused.
        let (h, _rx, _) = hub(1); // max_topics 3
        for t in ["x1", "x2", "x3"] {
            h.subscribe(0, t, None).unwrap();
        }
        assert!(matches!(
            h.subscribe(0, "x4", None),
            Err(TopicError::ServerTopicLimit { .. })
        ));
        for t in ["p1", "p2", "p3"] {
            assert_eq!(h.publish(t, Payload::Text("m")).unwrap().seq, 1, "{t}");
        }
        assert!(matches!(
            h.publish("p4", Payload::Text("m")),
            Err(TopicError::ServerTopicLimit { .. })
        ));
        // A subscribed topic's first message needs room among the topics with history.
        assert!(matches!(
            h.publish("x1", Payload::Text("m")),
            Err(TopicError::ServerTopicLimit { .. })
        ));
        // Leaving a made-up topic frees its place in its own budget.
        h.unsubscribe(0, "x3");
        h.subscribe(0, "x4", None).unwrap();
        assert_eq!(h.totals().0, 6);
    }

    #[test]
    fn topic_ids_never_collide_past_32_bits() {
        // Issue 13 item 4: ids were a u32 advanced by every new name; after a wrap a new
        // topic shared an id with a live one and received its messages.
        let (h, rx, _) = hub(1);
        let (a, _) = h.subscribe(0, "a", None).unwrap();
        h.start_ids_at(u64::from(u32::MAX));
        let (b, _) = h.subscribe(0, "b", None).unwrap();
        let (c, _) = h.subscribe(0, "c", None).unwrap();
        assert_eq!((b, c), (u64::from(u32::MAX), 1 << 32));
        assert!(a != b && a != c && b != c);
        h.publish("a", Payload::Text("x")).unwrap();
        let d = rx[0].try_recv().unwrap();
        assert_eq!(d.topic, a, "a message goes to its own topic's id only");
    }

    #[test]
    fn fan_out_reaches_only_workers_with_subscribers_sharing_one_frame() {
        let (h, rx, wakes) = hub(3);
        h.subscribe(0, "news", None).unwrap();
        h.subscribe(0, "news", None).unwrap();
        h.subscribe(2, "news", None).unwrap();
        let p = h.publish("news", Payload::Text("hello")).unwrap();
        assert_eq!(
            p,
            Published {
                seq: 1,
                workers: 2,
                subscribers: 3
            }
        );
        let (a, c) = (rx[0].try_recv().unwrap(), rx[2].try_recv().unwrap());
        assert!(rx[1].try_recv().is_err(), "worker 1 has no subscriber");
        assert!(Arc::ptr_eq(&a.frame, &c.frame), "encoded once, shared");
        assert_eq!((a.seq, a.topic), (1, c.topic));
        let w: Vec<usize> = wakes.iter().map(|x| x.load(Ordering::Relaxed)).collect();
        assert_eq!(w, [1, 0, 1]);
        assert_eq!(h.presence(), vec![("news".to_string(), vec![2, 0, 1])]);
        h.unsubscribe(2, "news");
        assert_eq!(h.publish("news", Payload::Binary(b"x")).unwrap().workers, 1);
        assert!(h.publish("bad topic", Payload::Text("")).is_err());
        h.publish("second", Payload::Text("")).unwrap();
        h.publish("third", Payload::Text("")).unwrap();
        assert_eq!(
            h.publish("fourth", Payload::Text("")),
            Err(TopicError::ServerTopicLimit { max: 3 })
        );
        assert_eq!(h.totals().0, 3);
        // Subscribing to names nobody publishes to does not use up the table.
        let (h, _rx, _) = hub(1);
        for round in 0..10 {
            let name = format!("made-up-{round}");
            h.subscribe(0, &name, None).unwrap();
            h.unsubscribe(0, &name);
        }
        assert_eq!(h.totals().0, 0);
    }

    #[test]
    fn resume_through_the_hub_replays_then_reports_the_gap() {
        let (h, rx, _) = hub(1);
        for i in 0..6 {
            h.publish("t", Payload::Text(&i.to_string())).unwrap();
        }
        // The window holds 3..=6.
        let (_, owed) = h.subscribe(0, "t", Some(4)).unwrap();
        assert_eq!((owed.gap, owed.frames.len(), owed.last), (None, 2, 6));
        let (_, owed) = h.subscribe(0, "t", Some(0)).unwrap();
        assert_eq!((owed.gap, owed.frames.len()), (Some((1, 2)), 4));
        // Live delivery continues after `last`.
        h.publish("t", Payload::Text("7")).unwrap();
        assert_eq!(rx[0].try_recv().unwrap().seq, 7);
    }

    #[test]
    fn a_full_worker_queue_refuses_the_publish_before_numbering_it() {
        let (h, rx, _) = hub(2);
        h.subscribe(0, "t", None).unwrap();
        for _ in 0..1000 {
            h.publish("t", Payload::Binary(b"x")).unwrap();
        }
        assert_eq!(
            h.publish("t", Payload::Binary(b"x")),
            Err(TopicError::Overloaded { worker: 0 })
        );
        assert_eq!(h.refused(), 1);
        // Draining makes room; numbering continues with no hole.
        let d = rx[0].try_recv().unwrap();
        h.taken(0, d.frame.len());
        assert_eq!(h.publish("t", Payload::Binary(b"x")).unwrap().seq, 1001);
        // Bytes bound too: a message bigger than the byte budget is refused.
        let (h, _rx, _) = hub(1);
        h.subscribe(0, "big", None).unwrap();
        let big = vec![0u8; 2 << 20];
        assert!(matches!(
            h.publish("big", Payload::Binary(&big)),
            Err(TopicError::Overloaded { .. })
        ));
        // A message no connection could be sent (over the per-connection cap) is refused
        // as such, before it is numbered.
        let huge = vec![0u8; 5 << 20];
        assert!(matches!(
            h.publish("big", Payload::Binary(&huge)),
            Err(TopicError::TooLargeToDeliver { .. })
        ));
        assert_eq!(h.publish("big", Payload::Binary(b"x")).unwrap().seq, 1);
    }

    #[test]
    fn concurrent_publishers_get_distinct_ordered_numbers() {
        let (h, rx, _) = hub(2);
        h.subscribe(1, "t", None).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        h.publish("t", Payload::Text("m")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let seqs: Vec<u64> = rx[1].try_iter().map(|d| d.seq).collect();
        assert_eq!(
            seqs,
            (1..=1000).collect::<Vec<_>>(),
            "in order, no gaps, no duplicates"
        );
    }
}
