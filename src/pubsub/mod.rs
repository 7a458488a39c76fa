//! Pub/sub core, sans-IO: topic names and limits, per-topic sequence
//! numbers with a bounded replay window and resume, delivery frames encoded once for every
//! recipient, and the JSON control protocol. Nothing here touches a socket or a clock.
//!
//! [`hub::Hub`] owns each topic's numbering and window and fans frames out to per-worker
//! crossbeam queues with a wake callback; each worker keeps a [`local::LocalSubs`] index of
//! its own subscribers and applies the topic's [`policy::SlowPolicy`]. The wiring into the
//! reactor is in `reactor::worker`; the protocol is in docs/protocol.md.

#![forbid(unsafe_code)]

pub mod control;
pub mod delivery;
pub mod hub;
pub mod local;
pub mod policy;
pub mod replay;
pub mod topic;

pub use control::{
    parse_control, parse_query, parse_request, reply_error, reply_published, reply_reset,
    reply_subscribed, with_id, Control, ControlError, Request, RequestId,
};
pub use delivery::{encode_delivery, encode_direct, encode_gap, Payload};
pub use hub::{
    Busiest, Delivery, Hub, Injected, Kind, Need, Published, Ready, ReplayLimits, Subscribed,
    Subscription,
};
pub use local::{LocalSubs, PENDING};
pub use policy::{PolicyTable, SlowPolicy};
pub use replay::{format_epoch, parse_epoch, Position, Replay, Resume};
pub use topic::{validate_topic, TopicError, TopicLimits};

/// A topic's id in the hub: a counter that is never reused (64 bits: at a million new
/// topics a second it would take half a million years to wrap), so a message for one topic
/// can never reach another's subscribers through a recycled id.
pub type TopicId = u64;
