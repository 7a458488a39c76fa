//! Sans-IO RFC 6455: the opening handshake, the frame codec, masking, UTF-8 validation and
//! close codes, for both the server and (for the load generator) the client role.
//!
//! Fully deterministic: no sockets, no clocks, no randomness, no allocation in the steady
//! state. Bytes go in through `&mut [u8]` the caller owns (an io_uring provided buffer, say)
//! and come back as events with ranges into that buffer; output is appended to a caller's
//! `Vec<u8>`. That is what lets the same code be unit-tested, property-tested, fuzzed and
//! benchmarked alone, and driven by any I/O model.
//!
//! - [`handshake`]: find the request head in pieces ([`handshake::HeadScanner`]), validate it
//!   ([`handshake::parse_request`]), answer it (`write_accept`, `write_error`,
//!   `write_rejection`).
//! - [`decoder`]: frames in, [`decoder::Event`]s out, every §5 rule enforced.
//! - [`frame`]: headers and the encoder for server (unmasked) and client (masked) frames.
//! - [`error::Error`]: every rule a peer can break, each with its close code or HTTP status.
//!
//! Every limit, close code and status is listed in `docs/protocol.md`.
#![forbid(unsafe_code)]

pub mod assembler;
pub mod base64;
pub mod client;
pub mod close;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use close::{CloseCode, CloseState};
pub use decoder::{DataKind, Decoder, Event, Step};
pub use error::{Error, Reaction};
pub use frame::{OpCode, Role};

#[cfg(test)]
mod tests;
