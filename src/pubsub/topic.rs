//! Topic names: what is accepted, and the per-connection limits.

/// Limits on the topics one connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Longest topic name, bytes.
    pub max_len: usize,
    /// Most topics one connection may be subscribed to.
    pub max_per_connection: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        Self {
            max_len: 128,
            max_per_connection: 64,
        }
    }
}

/// Why a topic (or a subscription) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// An empty name.
    Empty,
    /// Longer than the limit.
    TooLong {
        /// The limit, bytes.
        max: usize,
    },
    /// A byte outside `A-Z a-z 0-9 . _ - : /` at this offset.
    BadByte {
        /// Offset of the first bad byte.
        at: usize,
    },
    /// The connection is at its topic limit.
    TooManyTopics {
        /// The limit.
        max: usize,
    },
    /// A worker's delivery queue is full (subscribers are not keeping up): retry later.
    Overloaded {
        /// The worker.
        worker: usize,
    },
    /// The message's frame would be larger than a connection may queue (`--max-outbound`):
    /// no subscriber could ever be sent it, so it is refused before it is numbered.
    TooLargeToDeliver {
        /// The frame's size.
        bytes: usize,
        /// The per-connection outbound cap.
        max: usize,
    },
    /// The message's frame would be larger than a worker's delivery queue may hold
    /// (`--publish-queue-bytes`): it could never be queued, so it is refused before it is
    /// numbered (it was answered `overloaded … retry later`, for ever).
    TooLargeForQueue {
        /// The frame's size (a bound).
        bytes: usize,
        /// The queue's byte bound.
        max: usize,
    },
    /// The server holds as many topics as it allows (`--max-topics`).
    ServerTopicLimit {
        /// The limit.
        max: usize,
    },
    /// The process-wide memory budget is exhausted (`--memory-budget`): retry later.
    MemoryBudget {
        /// The budget, bytes.
        max: usize,
    },
    /// The process is handing its topics to a new process (a binary upgrade): retry in a
    /// moment (the new process numbers them).
    HandingOver,
}

/// The bytes a topic name (and a `client=` name) may hold, as refusals list them.
pub const NAME_BYTES: &str = "A-Z a-z 0-9 . _ - : /";

impl TopicError {
    /// The reason as sent to the client (also a metric label).
    pub fn reason(&self) -> String {
        match self {
            Self::Empty => "topic_empty".into(),
            Self::TooLong { max } => format!("topic_too_long (max {max} bytes)"),
            Self::BadByte { at } => {
                format!("topic_bad_character at byte {at} (allowed: {NAME_BYTES})")
            }
            Self::TooManyTopics { max } => format!("too_many_topics (max {max})"),
            Self::ServerTopicLimit { max } => format!("server_topic_limit (max {max})"),
            Self::TooLargeToDeliver { bytes, max } => format!(
                "message_too_large_to_deliver ({bytes} bytes encoded; a connection queues at \
                 most {max}: --max-outbound)"
            ),
            Self::TooLargeForQueue { bytes, max } => format!(
                "message_too_large_to_deliver ({bytes} bytes encoded; a worker's delivery \
                 queue holds at most {max}: --publish-queue-bytes)"
            ),
            Self::MemoryBudget { max } => format!(
                "overloaded (the server's memory budget of {max} bytes is exhausted; retry \
                 later)"
            ),
            Self::HandingOver => "handing_over (the server is upgrading; retry in a second)".into(),
            Self::Overloaded { worker } => {
                format!("overloaded (worker {worker}'s delivery queue is full; retry later)")
            }
        }
    }
}

/// Check a topic name against the limits. Names are ASCII so they can go into a delivery
/// frame's header and a JSON string without escaping.
pub fn validate_topic(name: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > limits.max_len {
        return Err(TopicError::TooLong {
            max: limits.max_len,
        });
    }
    match name
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"._-:/".contains(&b)))
    {
        Some(at) => Err(TopicError::BadByte { at }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_against_the_limits() {
        let l = TopicLimits {
            max_len: 8,
            max_per_connection: 2,
        };
        assert_eq!(validate_topic("chat:1", &l), Ok(()));
        assert_eq!(validate_topic("a/b.c_d-", &l), Ok(()));
        assert_eq!(validate_topic("", &l), Err(TopicError::Empty));
        assert_eq!(
            validate_topic("123456789", &l),
            Err(TopicError::TooLong { max: 8 })
        );
        assert_eq!(
            validate_topic("ab\"c", &l),
            Err(TopicError::BadByte { at: 2 })
        );
        assert_eq!(validate_topic("é", &l), Err(TopicError::BadByte { at: 0 }));
        assert!(TopicError::TooManyTopics { max: 2 }
            .reason()
            .contains("max 2"));
    }
}
