//! Holdfast: a high-density WebSocket connection server on io_uring.
//!
//! Layers, bottom to top (dependencies point down only; docs/architecture.md has the map):
//! - [`io`]: rings, provided buffers, typed tokens, one connection's read machine, sends and
//!   shutdown-then-close. All `unsafe` of the server is here.
//! - [`ws`]: the sans-IO RFC 6455 core (handshake, frame codec, masking, UTF-8, close
//!   codes, the message reassembler), for both roles.
//! - [`session`]: the sans-IO per-connection protocol decisions.
//! - [`budget`]: the process-wide memory budget's counters (sans-IO).
//! - [`pubsub`]: the sans-IO pub/sub core and the hub.
//! - [`services`]: routing, admission, echo, the worker's side of pub/sub.
//! - [`reactor`]: the per-core worker loop.
//! - [`lifecycle`], [`server`], [`config`], [`admin`], [`metrics`], [`histograms`], [`topology`], [`tune`],
//!   [`plan`], [`units`], [`storm`], [`logging`]: running and operating it.
//! - [`slabmap`]: maps keyed by a worker's slab index (used across the layers above).

pub mod admin;
pub mod auth;
pub mod backplane;
pub mod budget;
pub mod config;
pub mod handover;
pub mod histograms;
pub mod io;
pub mod jitter;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod pubsub;
pub mod reactor;
pub mod server;
pub mod services;
pub mod session;
pub mod slabmap;
pub mod stdout;
pub mod storm;
pub mod tls;
pub mod topology;
pub mod tune;
pub mod units;
pub mod ws;
