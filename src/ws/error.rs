//! One error type for everything a peer can get wrong, named after the rule it broke.
//!
//! Every variant maps to exactly one reaction: either an HTTP status (the opening handshake
//! failed, the connection never became a WebSocket) or a close code (the connection is a
//! WebSocket and is failed with a Close frame carrying that code). [`Error::reason`] is a
//! stable snake_case label for logs and metrics.

use core::fmt;

use super::close::CloseCode;

/// What the caller must do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Answer the opening handshake with this HTTP status and close the TCP connection.
    Http(u16),
    /// Fail the WebSocket connection: send a Close frame with this code, read nothing more.
    Close(CloseCode),
}

/// A violation of RFC 6455 (or of a configured limit) by the peer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    // ---- opening handshake: limits (431 / 414) ----
    /// The request line is longer than `Limits::max_line` (414).
    RequestLineTooLong,
    /// A header line is longer than `Limits::max_line` (431).
    HeaderLineTooLong,
    /// More header fields than `Limits::max_headers` (431).
    TooManyHeaders,
    /// The request head is larger than `Limits::max_head_bytes` (431).
    HeadTooLarge,

    // ---- opening handshake: not HTTP at all (400, answered on the first bytes) ----
    /// The first bytes cannot begin an HTTP request line (a method token and a space).
    NotHttp,
    /// The first byte is a TLS handshake record (a ClientHello sent to the plain port).
    TlsOnPlainPort,

    // ---- opening handshake: malformed HTTP (400 / 505) ----
    /// The request line is not `METHOD SP target SP HTTP/x.y`.
    MalformedRequestLine,
    /// A header line has no colon, an empty or non-token name, or a bare CR/LF.
    MalformedHeader,
    /// The request is not HTTP/1.1 (RFC 6455 §4.1 requires 1.1 or later of HTTP/1) (505).
    UnsupportedHttpVersion,
    /// The method is not GET (§4.2.1 item 1) (405).
    MethodNotGet,
    /// The request target is not an origin-form path starting with `/`.
    InvalidRequestTarget,
    /// No Host header (§4.2.1 item 2).
    MissingHost,
    /// A header that must appear once appears twice (Host, Sec-WebSocket-Key, -Version).
    DuplicateHeader,
    /// `Upgrade` does not list the `websocket` token (§4.2.1 item 3).
    MissingUpgradeWebsocket,
    /// `Connection` does not list the `Upgrade` token (§4.2.1 item 4).
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key` header (§4.2.1 item 5).
    MissingKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes (§4.2.1 item 5).
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing or not 13 (§4.2.1 item 6, §4.4) (426).
    UnsupportedWebSocketVersion,
    /// The request carries a body where none is allowed: Content-Length > 0 on an upgrade
    /// or on any method but POST.
    RequestBodyNotAllowed,
    /// The request has a `Transfer-Encoding` (a chunked body): only `Content-Length` bodies
    /// are read, since a length two parsers could read two ways is how requests are smuggled.
    TransferEncodingNotAllowed,
    /// `Content-Length` is not plain digits (a sign, a list, spaces inside) or is absurd
    /// (above 1 GiB).
    InvalidContentLength,

    // ---- frames: protocol errors (1002) ----
    /// RSV1..3 set with no extension negotiated (§5.2).
    ReservedBitsSet,
    /// Opcode 0x3..0x7 or 0xB..0xF (§5.2).
    ReservedOpcode,
    /// A control frame with a payload over 125 bytes (§5.5).
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5).
    FragmentedControlFrame,
    /// A client-to-server frame without a mask (§5.1).
    UnmaskedClientFrame,
    /// A server-to-client frame with a mask (§5.1).
    MaskedServerFrame,
    /// A continuation frame with no fragmented message in progress (§5.4).
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is in progress (§5.4).
    ExpectedContinuation,
    /// The payload length is not in its minimal encoding, or its 64-bit form has the top bit
    /// set (§5.2).
    NonMinimalLength,
    /// A Close frame with a 1-byte payload (§5.5.1).
    CloseFrameOneByte,
    /// A Close frame with a code that may not be sent on the wire (§7.4).
    InvalidCloseCode,

    // ---- frames: other close codes ----
    /// Text (or a close reason) that is not UTF-8 (§8.1) (1007).
    InvalidUtf8,
    /// A message over the configured maximum size, decided from the frame header (1009).
    MessageTooBig,
}

impl Error {
    /// The reaction this error calls for.
    pub const fn reaction(self) -> Reaction {
        use Error::*;
        match self {
            RequestLineTooLong => Reaction::Http(414),
            HeaderLineTooLong | TooManyHeaders | HeadTooLarge => Reaction::Http(431),
            UnsupportedHttpVersion => Reaction::Http(505),
            MethodNotGet => Reaction::Http(405),
            UnsupportedWebSocketVersion => Reaction::Http(426),
            NotHttp
            | TlsOnPlainPort
            | MalformedRequestLine
            | MalformedHeader
            | InvalidRequestTarget
            | MissingHost
            | DuplicateHeader
            | MissingUpgradeWebsocket
            | MissingConnectionUpgrade
            | MissingKey
            | InvalidKey
            | RequestBodyNotAllowed
            | TransferEncodingNotAllowed
            | InvalidContentLength => Reaction::Http(400),
            ReservedBitsSet
            | ReservedOpcode
            | ControlFrameTooLong
            | FragmentedControlFrame
            | UnmaskedClientFrame
            | MaskedServerFrame
            | UnexpectedContinuation
            | ExpectedContinuation
            | NonMinimalLength
            | CloseFrameOneByte
            | InvalidCloseCode => Reaction::Close(CloseCode::PROTOCOL_ERROR),
            InvalidUtf8 => Reaction::Close(CloseCode::INVALID_PAYLOAD),
            MessageTooBig => Reaction::Close(CloseCode::MESSAGE_TOO_BIG),
        }
    }

    /// The HTTP status, if this is a handshake error.
    pub const fn http_status(self) -> Option<u16> {
        match self.reaction() {
            Reaction::Http(s) => Some(s),
            Reaction::Close(_) => None,
        }
    }

    /// The close code, if this is a frame-level error.
    pub const fn close_code(self) -> Option<CloseCode> {
        match self.reaction() {
            Reaction::Close(c) => Some(c),
            Reaction::Http(_) => None,
        }
    }

    /// A stable snake_case label, used as the `reason` label in metrics and logs.
    pub const fn reason(self) -> &'static str {
        use Error::*;
        match self {
            RequestLineTooLong => "request_line_too_long",
            HeaderLineTooLong => "header_line_too_long",
            TooManyHeaders => "too_many_headers",
            HeadTooLarge => "head_too_large",
            NotHttp => "not_http",
            TlsOnPlainPort => "tls_on_plain_port",
            MalformedRequestLine => "malformed_request_line",
            MalformedHeader => "malformed_header",
            UnsupportedHttpVersion => "unsupported_http_version",
            MethodNotGet => "method_not_get",
            InvalidRequestTarget => "invalid_request_target",
            MissingHost => "missing_host",
            DuplicateHeader => "duplicate_header",
            MissingUpgradeWebsocket => "missing_upgrade_websocket",
            MissingConnectionUpgrade => "missing_connection_upgrade",
            MissingKey => "missing_key",
            InvalidKey => "invalid_key",
            UnsupportedWebSocketVersion => "unsupported_websocket_version",
            RequestBodyNotAllowed => "request_body_not_allowed",
            TransferEncodingNotAllowed => "transfer_encoding_not_allowed",
            InvalidContentLength => "invalid_content_length",
            ReservedBitsSet => "reserved_bits_set",
            ReservedOpcode => "reserved_opcode",
            ControlFrameTooLong => "control_frame_too_long",
            FragmentedControlFrame => "fragmented_control_frame",
            UnmaskedClientFrame => "unmasked_client_frame",
            MaskedServerFrame => "masked_server_frame",
            UnexpectedContinuation => "unexpected_continuation",
            ExpectedContinuation => "expected_continuation",
            NonMinimalLength => "non_minimal_length",
            CloseFrameOneByte => "close_frame_one_byte",
            InvalidCloseCode => "invalid_close_code",
            InvalidUtf8 => "invalid_utf8",
            MessageTooBig => "message_too_big",
        }
    }

    /// Every variant, for documentation tests and metric pre-registration.
    pub const ALL: [Self; 34] = {
        use Error::*;
        [
            RequestLineTooLong,
            HeaderLineTooLong,
            TooManyHeaders,
            HeadTooLarge,
            NotHttp,
            TlsOnPlainPort,
            MalformedRequestLine,
            MalformedHeader,
            UnsupportedHttpVersion,
            MethodNotGet,
            InvalidRequestTarget,
            MissingHost,
            DuplicateHeader,
            MissingUpgradeWebsocket,
            MissingConnectionUpgrade,
            MissingKey,
            InvalidKey,
            UnsupportedWebSocketVersion,
            RequestBodyNotAllowed,
            TransferEncodingNotAllowed,
            InvalidContentLength,
            ReservedBitsSet,
            ReservedOpcode,
            ControlFrameTooLong,
            FragmentedControlFrame,
            UnmaskedClientFrame,
            MaskedServerFrame,
            UnexpectedContinuation,
            ExpectedContinuation,
            NonMinimalLength,
            CloseFrameOneByte,
            InvalidCloseCode,
            InvalidUtf8,
            MessageTooBig,
        ]
    };
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reaction() {
            Reaction::Http(s) => write!(f, "{} (HTTP {s})", self.reason()),
            Reaction::Close(c) => write!(f, "{} (close {})", self.reason(), c.0),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_one_reaction_and_a_unique_reason() {
        let mut seen = std::collections::HashSet::new();
        for e in Error::ALL {
            assert!(seen.insert(e.reason()), "duplicate reason {}", e.reason());
            assert!(e.http_status().is_some() != e.close_code().is_some());
        }
    }
}
