//! A session handed to another process: what [`Session::export`] writes and
//! [`Session::import`] reads back. Only an open WebSocket or event stream with nothing in
//! flight moves ([`Session::movable`]); its output queue goes as the bytes the socket would
//! have carried (gaps encoded by the host), its partial input as it was held.

use std::sync::Arc;

use super::{Held, Outbound, Phase, Session, Writer, CALL, COUNTED, PING_DUE, POLL, STREAM};
use crate::handover::format::SessionSnap;
use crate::ws::assembler::Partial;
use crate::ws::decoder::DataKind;
use crate::ws::Decoder;

/// Flags that travel with a session (the rest describe work in progress on this side).
const MOVES: u8 = COUNTED | STREAM | PING_DUE;

impl Session {
    /// Whether it can be handed over now: an open WebSocket or event stream (not a poll or
    /// a call), no send in flight, no request body or head being read, no close under way.
    pub fn movable(&self) -> bool {
        self.w.phase == Phase::Open
            && self.w.flags & (POLL | CALL) == 0
            && self.w.out.as_ref().is_none_or(|o| o.inflight_bytes == 0)
            && self
                .held
                .as_ref()
                .is_none_or(|h| h.head_end == 0 && h.body_end == 0)
    }

    /// Its state for the new process, at tick `now`; gaps in its output are encoded by
    /// `gap` (topic, from, to). Call only when [`Session::movable`]; the session is left
    /// empty (it is released without a close afterwards).
    pub fn export(
        &mut self,
        now: u32,
        mut gap: impl FnMut(u64, u64, u64) -> Option<Arc<[u8]>>,
    ) -> SessionSnap {
        let mut outbound = Vec::new();
        if let Some(out) = self.w.out.take() {
            for c in out.queue {
                match c {
                    super::Chunk::Gap { topic, from, to } => {
                        if let Some(f) = gap(topic, from, to) {
                            outbound.extend_from_slice(&f);
                        }
                    }
                    c => outbound.extend_from_slice(c.bytes()),
                }
            }
        }
        let (pending, message, kind) = match self.held.take() {
            Some(h) => {
                let Partial {
                    pending,
                    message,
                    kind,
                } = h.partial;
                let kind = match kind {
                    None => 0,
                    Some(DataKind::Text) => 1,
                    Some(DataKind::Binary) => 2,
                };
                (pending, message, kind)
            }
            None => (Vec::new(), Vec::new(), 0),
        };
        SessionSnap {
            decoder: self.decoder.export(),
            idle_ticks: now.wrapping_sub(self.w.since),
            flags: self.w.flags & MOVES,
            pings: self.w.pings,
            pending,
            message,
            kind,
            outbound,
        }
    }

    /// The session `s` describes, open, at tick `now`. Err: a field is impossible.
    pub fn import(s: SessionSnap, now: u32) -> Result<Self, &'static str> {
        let decoder = Decoder::import(s.decoder).ok_or("decoder state")?;
        if s.flags & !MOVES != 0 {
            return Err("session flags");
        }
        let kind = match s.kind {
            0 => None,
            1 => Some(DataKind::Text),
            2 => Some(DataKind::Binary),
            _ => return Err("message kind"),
        };
        let held = (!s.pending.is_empty() || kind.is_some() || !s.message.is_empty()).then(|| {
            Box::new(Held {
                partial: Partial {
                    pending: s.pending,
                    message: s.message,
                    kind,
                },
                ..Held::default()
            })
        });
        let out = (!s.outbound.is_empty()).then(|| {
            let mut o = Box::<Outbound>::default();
            let bytes = s.outbound;
            o.write_owned(|v| *v = bytes);
            o
        });
        Ok(Self {
            decoder,
            held,
            w: Writer {
                out,
                // Its silence is counted from now: while it was being handed over its input
                // was not read (a pong may be waiting in the kernel), and holding that
                // against it closed 3% of a million moved connections for idleness the
                // moment they arrived. A dead peer is found one idle timeout later at most.
                since: now,
                phase: Phase::Open,
                flags: s.flags,
                pings: s.pings,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_survives_export_and_import_with_its_partial_input_and_queued_output() {
        let mut dec = Decoder::new(crate::ws::Role::Server);
        // A decoder mid-way through a masked text frame.
        let mut frame = [0x01u8, 0x85, 1, 2, 3, 4, b'h' ^ 1];
        let _ = dec.decode(&mut frame[..], 1 << 20);
        let snap = SessionSnap {
            decoder: dec.export(),
            idle_ticks: 40,
            flags: COUNTED | PING_DUE,
            pings: 3,
            pending: vec![0x80],
            message: b"first half".to_vec(),
            kind: 1,
            outbound: b"\x81\x02hi".to_vec(),
        };
        let mut s = Session::import(snap.clone(), 1000).expect("valid");
        assert_eq!(s.phase(), Phase::Open);
        assert!(s.movable() && s.counted());
        assert_eq!(s.queued(), 4);
        let back = s.export(1010, |_, _, _| None);
        assert_eq!(back.decoder, snap.decoder);
        assert_eq!(
            (back.flags, back.pings, back.kind),
            (snap.flags, snap.pings, snap.kind)
        );
        assert_eq!((back.pending, back.message), (snap.pending, snap.message));
        assert_eq!(back.outbound, snap.outbound);
        assert_eq!(back.idle_ticks, 10, "silence counts from the import");
    }

    #[test]
    fn impossible_states_are_refused() {
        let ok = SessionSnap::default();
        assert!(Session::import(ok.clone(), 0).is_ok());
        let bad_flags = SessionSnap {
            flags: POLL,
            ..ok.clone()
        };
        assert_eq!(Session::import(bad_flags, 0).err(), Some("session flags"));
        let bad_kind = SessionSnap {
            kind: 3,
            ..ok.clone()
        };
        assert_eq!(Session::import(bad_kind, 0).err(), Some("message kind"));
        let mut d = [0u8; 16];
        d[15] = 9;
        let bad_decoder = SessionSnap { decoder: d, ..ok };
        assert_eq!(Session::import(bad_decoder, 0).err(), Some("decoder state"));
    }
}
