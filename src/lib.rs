//! Holdfast: a high-density WebSocket connection server on io_uring.
//!
//! The crate is organised so that the protocol lives apart from I/O:
//! - [`ws`]: the sans-IO RFC 6455 core (handshake, frame codec, masking, UTF-8, close codes).

pub mod ws;
