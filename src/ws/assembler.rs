//! A convenience layer over [`Decoder`] for callers that want whole messages from a byte
//! stream: it keeps the unconsumed tail between reads and joins pieces of split messages.
//!
//! It allocates (two growable buffers, reused), so the server's hot path uses the decoder
//! directly; the load generator, the tests and the fuzz targets use this.

use super::close::CloseCode;
use super::decoder::{DataKind, Decoder, Event};
use super::error::Error;

/// A complete message or control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message (validated UTF-8).
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A Ping payload.
    Ping(&'a [u8]),
    /// A Pong payload.
    Pong(&'a [u8]),
    /// A Close: code, reason, and the reply due (see [`Event::Close`]).
    Close(Option<CloseCode>, &'a str, Option<Option<CloseCode>>),
}

/// Byte stream in, whole messages out.
#[derive(Debug)]
pub struct Assembler {
    /// The frame decoder (its close state says whether the peer closed).
    pub decoder: Decoder,
    pending: Vec<u8>,
    message: Vec<u8>,
}

impl Assembler {
    /// An assembler around `decoder`.
    pub const fn new(decoder: Decoder) -> Self {
        Self {
            decoder,
            pending: Vec::new(),
            message: Vec::new(),
        }
    }

    /// Bytes received but not yet consumed (a split header or control frame).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feed newly received bytes; `on_message` sees every complete message in order.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        max_message: u32,
        mut on_message: impl FnMut(Message<'_>),
    ) -> Result<(), Error> {
        self.pending.extend_from_slice(bytes);
        let mut pos = 0;
        let result = loop {
            let base = pos;
            let step = match self.decoder.decode(&mut self.pending[base..], max_message) {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            pos += step.consumed;
            let Some(event) = step.event else {
                break Ok(());
            };
            let at = |r: core::ops::Range<usize>| base + r.start..base + r.end;
            match event {
                Event::Data {
                    kind,
                    range,
                    first,
                    last,
                } => {
                    let piece = &self.pending[at(range)];
                    let whole: &[u8] = if first && last {
                        piece
                    } else {
                        if first {
                            self.message.clear();
                        }
                        self.message.extend_from_slice(piece);
                        if !last {
                            continue;
                        }
                        &self.message
                    };
                    on_message(match kind {
                        // The decoder validated the whole message as UTF-8.
                        DataKind::Text => Message::Text(
                            core::str::from_utf8(whole).map_err(|_| Error::InvalidUtf8)?,
                        ),
                        DataKind::Binary => Message::Binary(whole),
                    });
                }
                Event::Ping(r) => on_message(Message::Ping(&self.pending[at(r)])),
                Event::Pong(r) => on_message(Message::Pong(&self.pending[at(r)])),
                Event::Close {
                    code,
                    reason,
                    reply,
                } => {
                    let reason = core::str::from_utf8(&self.pending[at(reason)])
                        .map_err(|_| Error::InvalidUtf8)?;
                    on_message(Message::Close(code, reason, reply));
                }
            }
        };
        self.pending.drain(..pos);
        result
    }
}
