//! The one message reassembler: bytes as they arrive in, whole messages and control frames
//! out, used by the server's sessions, the load generator, the tests and the fuzz targets.
//!
//! [`feed_in_place`] decodes in the caller's buffer (an io_uring provided buffer, say)
//! whenever nothing is held over from an earlier read, which is the common case: a message
//! that arrives whole is handed out as a slice of that buffer, with no copy. Only a split
//! frame header or control frame (copied to `pending`) and a fragmented message (joined in
//! `message`) need the heap, in a [`Partial`] that exists only while they do.

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

/// Whether the reassembler should go on after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Decode the rest.
    Continue,
    /// Stop here and discard the rest (the connection is closing).
    Stop,
}

/// What is held between reads: a split header or control frame, a message in pieces.
#[derive(Debug, Default)]
pub struct Partial {
    /// Received bytes not yet consumed.
    pub pending: Vec<u8>,
    /// The fragmented message joined so far.
    pub message: Vec<u8>,
    /// The kind of the message being joined, if one is.
    pub kind: Option<DataKind>,
}

impl Partial {
    /// Nothing held: the box can go.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.kind.is_none()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.pending.capacity() + self.message.capacity()
    }
}

/// A heap box that holds a [`Partial`] (and perhaps more of its owner's split state).
pub trait HoldsPartial: Default {
    /// The partial.
    fn partial(&mut self) -> &mut Partial;
}

impl HoldsPartial for Partial {
    fn partial(&mut self) -> &mut Partial {
        self
    }
}

/// Decode `data` (received bytes, unmasked in place) after whatever `held` keeps, calling
/// `on_message` for every complete message and control frame in order. `held` is created
/// when something must be kept and emptied (set to `None`) when nothing is. A [`Flow::Stop`]
/// or an error discards the rest.
pub fn feed_in_place<H: HoldsPartial>(
    decoder: &mut Decoder,
    held: &mut Option<Box<H>>,
    data: &mut [u8],
    max_message: u32,
    mut on_message: impl FnMut(Message<'_>) -> Flow,
) -> Result<(), Error> {
    // Decode from `pending` when it holds a split header or control frame; else in place.
    let mut joined = match held.as_mut().map(|h| h.partial()) {
        Some(h) if !h.pending.is_empty() => {
            let mut p = std::mem::take(&mut h.pending);
            p.extend_from_slice(data);
            Some(p)
        }
        _ => None,
    };
    let buf: &mut [u8] = match joined.as_mut() {
        Some(p) => p,
        None => data,
    };
    let mut pos = 0;
    let mut stopped = false;
    let result = loop {
        let base = pos;
        let step = match decoder.decode(&mut buf[base..], max_message) {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        pos += step.consumed;
        let Some(event) = step.event else {
            break Ok(());
        };
        let at = |r: core::ops::Range<usize>| base + r.start..base + r.end;
        let flow = match event {
            Event::Data {
                kind,
                range,
                first,
                last,
            } => {
                let piece = &buf[at(range)];
                if first && last {
                    deliver(kind, piece, &mut on_message)?
                } else {
                    let h = held.get_or_insert_with(Box::default).partial();
                    if first {
                        h.message.clear();
                        h.kind = Some(kind);
                    }
                    h.message.extend_from_slice(piece);
                    if last {
                        let msg = std::mem::take(&mut h.message);
                        h.kind = None;
                        let flow = deliver(kind, &msg, &mut on_message);
                        if let Some(h) = held.as_mut() {
                            // Keep the allocation for the next fragmented message.
                            h.partial().message = msg;
                            h.partial().message.clear();
                        }
                        flow?
                    } else {
                        Flow::Continue
                    }
                }
            }
            Event::Ping(r) => on_message(Message::Ping(&buf[at(r)])),
            Event::Pong(r) => on_message(Message::Pong(&buf[at(r)])),
            Event::Close {
                code,
                reason,
                reply,
            } => {
                let reason =
                    core::str::from_utf8(&buf[at(reason)]).map_err(|_| Error::InvalidUtf8)?;
                on_message(Message::Close(code, reason, reply))
            }
        };
        if flow == Flow::Stop {
            stopped = true;
            break Ok(());
        }
    };
    let len = buf.len();
    if stopped || result.is_err() {
        *held = None;
        return result;
    }
    // Keep what could not be decoded yet (a split header or control frame).
    if pos < len {
        let h = held.get_or_insert_with(Box::default).partial();
        match joined {
            Some(mut p) => {
                p.drain(..pos);
                h.pending = p;
            }
            None => {
                h.pending.clear();
                h.pending.extend_from_slice(&data[pos..]);
            }
        }
    }
    if held.as_mut().is_some_and(|h| h.partial().is_idle()) {
        *held = None;
    }
    result
}

fn deliver(
    kind: DataKind,
    bytes: &[u8],
    on_message: &mut impl FnMut(Message<'_>) -> Flow,
) -> Result<Flow, Error> {
    Ok(on_message(match kind {
        // The decoder validated the whole message as UTF-8 (this check cannot fail).
        DataKind::Text => {
            Message::Text(core::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8)?)
        }
        DataKind::Binary => Message::Binary(bytes),
    }))
}

/// A decoder and what it holds between reads, for callers that own neither (tests, fuzz
/// targets, simple clients).
#[derive(Debug)]
pub struct Assembler {
    /// The frame decoder (its close state says whether the peer closed).
    pub decoder: Decoder,
    held: Option<Box<Partial>>,
    scratch: Vec<u8>,
}

impl Assembler {
    /// An assembler around `decoder`.
    pub const fn new(decoder: Decoder) -> Self {
        Self {
            decoder,
            held: None,
            scratch: Vec::new(),
        }
    }

    /// Bytes received but not yet consumed (a split header or control frame).
    pub fn pending_len(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.pending.len())
    }

    /// Feed newly received bytes (copied, then decoded in place); `on_message` sees every
    /// complete message in order.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        max_message: u32,
        mut on_message: impl FnMut(Message<'_>),
    ) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(bytes);
        let r = feed_in_place(
            &mut self.decoder,
            &mut self.held,
            &mut buf,
            max_message,
            |m| {
                on_message(m);
                Flow::Continue
            },
        );
        self.scratch = buf;
        r
    }
}
