//! Pub/sub core, sans-IO (issue 5, in progress): topic names and limits, per-topic sequence
//! numbers with a bounded replay window and resume, delivery frames encoded once for every
//! recipient, and the JSON control protocol. Nothing here touches a socket or a clock; the
//! reactor will own one `Topics` per worker and fan frames out across workers.
//!
//! [`hub::Hub`] owns each topic's numbering and window and fans frames out to per-worker
//! crossbeam queues with a wake callback. Not wired into the server yet: the workers' side
//! (draining the queue on wake, sending the shared frame, a per-connection subscription
//! index, skip-after-resume), `POST /publish`, slow-consumer policies, presence metrics and
//! the loadgen `fanout` scenario are still to come.

#![forbid(unsafe_code)]

pub mod control;
pub mod delivery;
pub mod hub;
pub mod replay;
pub mod topic;

pub use control::{
    parse_control, parse_query, reply_error, reply_subscribed, Control, ControlError,
};
pub use delivery::{encode_delivery, encode_gap, Payload};
pub use hub::{Delivery, Hub, Published, ReplayLimits};
pub use replay::{Replay, Resume};
pub use topic::{validate_topic, TopicError, TopicLimits};
