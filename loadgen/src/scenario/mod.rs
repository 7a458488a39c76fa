//! The scenarios, each in its own module: what its connections do inside the engine (hooks
//! called by `crate::engine`) and how its run is driven and reported (called by `main`).
//!
//! - [`hold`]: ramp to N connections, hold them answering pings, close cleanly.
//! - [`echo`]: closed or open loop round trips, latency from the intended send time.
//! - [`storm`]: every connection lost at once, reconnects with backoff and full jitter.
//! - [`fanout`]: subscribers checking sequence numbers, a publisher at a rate.

pub mod echo;
pub mod fanout;
pub mod hold;
pub mod storm;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use storm::Backoff;

use crate::counters::C;
use crate::engine::Engine;

/// What connections do once open.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Answer pings; nothing else.
    Hold,
    /// Send messages and time their echoes.
    Echo {
        /// Payload bytes per message (≥ 8: the first 8 carry the send stamp).
        size: usize,
        /// Open loop: messages per second this engine sends, spread over its connections.
        /// `None`: closed loop (each connection sends its next message when the echo of the
        /// last arrives).
        rate: Option<f64>,
    },
    /// Re-open lost connections with backoff.
    Storm(Backoff),
    /// Subscribers: check every delivery's sequence number (losses, duplicates, order,
    /// gaps) and record publish → delivery latency from the stamp in its payload. Target
    /// `t` subscribes to topic `t / per_topic` (targets are listed topic by topic).
    Fanout {
        /// Targets per topic (the URLs given).
        per_topic: usize,
        /// The newest number published per topic (written by the publisher), for the
        /// messages never received by the end.
        last: Arc<[AtomicU64]>,
        /// The number the publisher was given for each message.
        numbering: Arc<crate::publisher::Numbering>,
    },
}

/// A scenario's engine-side state.
#[derive(Debug)]
pub enum Work {
    /// Nothing.
    Hold,
    /// Echo's template, schedule and round-robin.
    Echo(echo::EchoWork),
    /// Storm's reconnect policy.
    Storm(Backoff),
    /// Fanout's topic layout.
    Fanout(fanout::FanoutWork),
}

impl Work {
    /// The state for `mode`.
    pub fn new(mode: &Mode) -> Self {
        match mode {
            Mode::Hold => Self::Hold,
            Mode::Echo { size, rate } => Self::Echo(echo::EchoWork::new(*size, *rate)),
            Mode::Storm(b) => Self::Storm(*b),
            Mode::Fanout {
                per_topic,
                last,
                numbering,
            } => Self::Fanout(fanout::FanoutWork {
                per_topic: *per_topic,
                last: last.clone(),
                numbering: numbering.clone(),
            }),
        }
    }
}

impl Engine {
    /// A connection was upgraded.
    pub(crate) fn on_open(&mut self, idx: u32) {
        if let Work::Echo(_) = self.work {
            self.echo_on_open(idx);
        }
    }

    /// A whole data message arrived.
    pub(crate) fn on_data(&mut self, idx: u32, binary: bool, msg: &[u8]) {
        match self.work {
            Work::Echo(_) => self.echo_on_message(idx, msg),
            Work::Fanout(_) => self.fanout_on_message(idx, binary, msg),
            Work::Hold | Work::Storm(_) => self.counts.inc(C::Messages),
        }
    }

    /// The run moved past the ramp (or into measuring).
    pub(crate) fn on_steady(&mut self) {
        if let Work::Echo(_) = self.work {
            self.echo_start();
        }
    }

    /// Send what the schedule says is due; returns when to come back.
    pub(crate) fn pace(&mut self, now: Instant) -> Option<Duration> {
        match self.work {
            Work::Echo(_) => self.echo_pace(now),
            _ => None,
        }
    }

    /// A connection in phase `was` ended.
    pub(crate) fn on_lost(
        &mut self,
        was: crate::engine::Phase,
        target: u16,
        attempt: Option<u16>,
        hint: u32,
    ) {
        if let Work::Storm(policy) = self.work {
            self.storm_on_lost(policy, was, target, attempt, hint);
        }
    }

    /// The run is ending (before the clean closes).
    pub(crate) fn at_end(&mut self) {
        if let Work::Fanout(_) = self.work {
            self.fanout_tail();
        }
    }
}
