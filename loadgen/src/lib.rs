//! holdfast-loadgen: an io_uring WebSocket client that holds far more connections per
//! process than `ulimit -n` allows (sockets are direct descriptors in per-engine rings).
//!
//! - [`target`]: the URL, the shared upgrade request and expected accept key, sources.
//! - [`engine`]: one thread, one ring: the connect chain, handshake, pings, clean close.
//! - [`stats`]: counters the engines share with the reporting thread.

pub mod engine;
pub mod stats;
pub mod target;
