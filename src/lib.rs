//! Holdfast: a high-density WebSocket connection server on io_uring.
//!
//! - [`ws`]: the sans-IO RFC 6455 core (handshake, frame codec, masking, UTF-8, close codes).
//! - [`reactor`]: per-core io_uring workers: ring setup, provided buffers, the event loop.
//! - [`conn`]: the compact per-connection state.
//! - [`server`], [`config`], [`admin`], [`metrics`], [`topology`]: running it.

pub mod admin;
pub mod config;
pub mod conn;
pub mod jitter;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod pubsub;
pub mod reactor;
pub mod server;
pub mod topology;
pub mod tune;
pub mod ws;
