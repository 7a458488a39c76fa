//! holdfast-loadgen: an io_uring WebSocket client that holds far more connections per
//! process than `ulimit -n` allows (sockets are direct descriptors in per-engine rings).
//! It is a second user of the server's io layer (`holdfast::io`) and of the client role of
//! `holdfast::ws`: it has no io_uring operation, read machine or close sequence of its own.
//!
//! - [`cli`]: scenarios and flags.
//! - [`target`]: the URL, the shared upgrade request and expected accept key, sources.
//! - [`engine`]: rings driven by a few threads: connects, the handshake, frames, pings,
//!   clean close; [`engine::conn`] is the one client-connection type.
//! - [`scenario`]: hold, echo, storm and fanout, each in its own module.
//! - [`publisher`]: the fanout scenario's publisher.
//! - [`counters`]: engine-local counters published per tick, and the run control.
//! - [`run`]: launching engine threads, sampling, the ramp, finishing.
//! - [`report`]: machine description, HDR histograms as JSON, process CPU time.
//! - [`unread`]: bytes delivered to a client on this host and not yet read (its own part of
//!   a latency).

pub mod cli;
pub mod counters;
pub mod engine;
pub mod publisher;
pub mod report;
pub mod run;
pub mod scenario;
pub mod target;
pub mod unread;
