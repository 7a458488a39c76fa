//! Close codes (RFC 6455 §7.4) and the closing-handshake state machine (§5.5.1, §7.1).

/// A WebSocket close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: endpoint going away.
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: data of a type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1007: payload inconsistent with the message type (non-UTF-8 text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation (used for slow consumers and abuse).
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: message too big.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: unexpected server condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: service restart (graceful drain).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: Self = Self(1013);

    /// Whether this code may appear in a Close frame received from the peer.
    ///
    /// 0–999 are unused, 1004 is reserved, 1005/1006/1015 are for local reporting only and
    /// 1016–2999 are unassigned (reserved for the RFC and its extensions); 1012–1014 are
    /// registered with IANA; 3000–4999 belong to libraries and applications.
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Where a connection is in the closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum CloseState {
    /// No Close frame sent or received.
    #[default]
    Open,
    /// We sent a Close and wait for the peer's; incoming data is still decoded and may be
    /// delivered or ignored by the caller.
    Sent,
    /// We received a Close and replied (the reply was handed to the caller): read no more.
    Received,
    /// Both Close frames have crossed; the TCP connection may be closed.
    Closed,
}

impl CloseState {
    /// We are about to send a Close frame. Returns false if one was already sent (never send
    /// two).
    pub fn on_send(&mut self) -> bool {
        match *self {
            Self::Open => {
                *self = Self::Sent;
                true
            }
            Self::Sent | Self::Received | Self::Closed => false,
        }
    }

    /// A Close frame arrived with this code (None for an empty payload). Returns the code to
    /// echo in our reply, `Some(None)` for an empty reply, or `None` when no reply is due
    /// because we sent our Close first.
    pub fn on_receive(&mut self, code: Option<CloseCode>) -> Option<Option<CloseCode>> {
        match *self {
            Self::Open => {
                *self = Self::Received;
                Some(code)
            }
            Self::Sent => {
                *self = Self::Closed;
                None
            }
            Self::Received | Self::Closed => None,
        }
    }

    /// True once a Close has been received: the decoder reads no more data.
    pub const fn peer_closed(self) -> bool {
        matches!(self, Self::Received | Self::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_matches_rfc_7_4() {
        for c in 0..=999 {
            assert!(!CloseCode(c).is_valid_on_wire(), "{c}");
        }
        for c in [1004, 1005, 1006, 1015] {
            assert!(!CloseCode(c).is_valid_on_wire(), "{c}");
        }
        for c in 1016..=2999 {
            assert!(!CloseCode(c).is_valid_on_wire(), "{c}");
        }
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(CloseCode(c).is_valid_on_wire(), "{c}");
        }
        assert!(CloseCode(3000).is_valid_on_wire());
        assert!(CloseCode(4999).is_valid_on_wire());
        assert!(!CloseCode(5000).is_valid_on_wire());
        assert!(!CloseCode(u16::MAX).is_valid_on_wire());
    }

    #[test]
    fn peer_initiated_close_is_echoed_once() {
        let mut s = CloseState::Open;
        assert_eq!(
            s.on_receive(Some(CloseCode(4001))),
            Some(Some(CloseCode(4001)))
        );
        assert!(s.peer_closed());
        assert!(!s.on_send(), "the reply was already handed out");
        assert_eq!(s.on_receive(Some(CloseCode::NORMAL)), None);
    }

    #[test]
    fn empty_close_gets_empty_reply() {
        let mut s = CloseState::Open;
        assert_eq!(s.on_receive(None), Some(None));
    }

    #[test]
    fn locally_initiated_close_completes_on_reply() {
        let mut s = CloseState::Open;
        assert!(s.on_send());
        assert!(!s.on_send());
        assert!(!s.peer_closed());
        assert_eq!(s.on_receive(Some(CloseCode::NORMAL)), None);
        assert_eq!(s, CloseState::Closed);
    }
}
