//! holdfast-loadgen: an io_uring WebSocket client that holds far more connections per
//! process than `ulimit -n` allows (sockets are direct descriptors in per-engine rings).
//!
//! - [`target`]: the URL, the shared upgrade request and expected accept key, sources.
//! - [`engine`]: rings driven by a few threads: the connect chain, handshake, pings, echo
//!   round trips, storm reconnects with backoff, clean close.
//! - [`stats`]: counters the engines share with the reporting thread, and the run control.
//! - [`fanout`]: delivery parsing and the publisher of the `fanout` scenario.
//! - [`report`]: machine description, HDR histograms as JSON, process CPU time.

pub mod engine;
pub mod fanout;
pub mod report;
pub mod stats;
pub mod target;
