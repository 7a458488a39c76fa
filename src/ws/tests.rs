//! Unit tests for every rule of the protocol core, and property tests of the codec.

use proptest::prelude::*;

use super::assembler::{Assembler, Message};
use super::frame::{encode_close, encode_frame, encode_header, MAX_HEADER_LEN};
use super::handshake::{
    parse_request, write_accept, write_error, write_rejection, HeadScanner, Limits, Rejection,
};
use super::*;

const MAX: u32 = 1 << 20;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Owned copy of a message, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String, Option<Option<u16>>),
}

fn own(m: Message<'_>) -> Owned {
    match m {
        Message::Text(t) => Owned::Text(t.to_owned()),
        Message::Binary(b) => Owned::Binary(b.to_vec()),
        Message::Ping(b) => Owned::Ping(b.to_vec()),
        Message::Pong(b) => Owned::Pong(b.to_vec()),
        Message::Close(c, r, reply) => {
            Owned::Close(c.map(|c| c.0), r.to_owned(), reply.map(|x| x.map(|c| c.0)))
        }
    }
}

/// Feed `wire` to a server-side assembler in the given chunk sizes (cycled).
fn decode_chunked(wire: &[u8], chunks: &[usize], max: u32) -> (Vec<Owned>, Result<(), Error>) {
    let mut a = Assembler::new(Decoder::new(Role::Server));
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(rest.len());
        let n = n.clamp(1, rest.len());
        i += 1;
        let (now, later) = rest.split_at(n);
        rest = later;
        if let Err(e) = a.feed(now, max, |m| out.push(own(m))) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

fn decode(wire: &[u8]) -> (Vec<Owned>, Result<(), Error>) {
    decode_chunked(wire, &[], MAX)
}

fn client_frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(&mut v, fin, op, Some(KEY), payload);
    v
}

/// A masked frame header with raw first byte and payload length field, then the payload.
fn raw_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = client_frame(true, OpCode::Binary, payload);
    v[0] = b0;
    v
}

fn expect_err(wire: &[u8], e: Error) {
    let (_, r) = decode(wire);
    assert_eq!(r, Err(e));
}

// ---------------------------------------------------------------- frames: 1002 rules

#[test]
fn reserved_bits_fail_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        expect_err(&raw_frame(0x80 | rsv | 0x2, b"x"), Error::ReservedBitsSet);
    }
    assert_eq!(
        Error::ReservedBitsSet.close_code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
}

#[test]
fn reserved_opcodes_fail_1002() {
    for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        expect_err(&raw_frame(0x80 | op, b""), Error::ReservedOpcode);
    }
}

#[test]
fn control_frame_over_125_fails_before_payload_arrives() {
    let wire = client_frame(true, OpCode::Ping, &[0u8; 126]);
    // Only the first two bytes: the length field alone condemns it.
    let mut d = Decoder::new(Role::Server);
    assert_eq!(
        d.decode(&mut wire[..2].to_vec(), MAX),
        Err(Error::ControlFrameTooLong)
    );
    expect_err(&wire, Error::ControlFrameTooLong);
    // 125 is fine.
    let (msgs, r) = decode(&client_frame(true, OpCode::Ping, &[7u8; 125]));
    assert_eq!(r, Ok(()));
    assert_eq!(msgs, vec![Owned::Ping(vec![7u8; 125])]);
}

#[test]
fn fragmented_control_frame_fails_1002() {
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        expect_err(&client_frame(false, op, b""), Error::FragmentedControlFrame);
    }
}

#[test]
fn unmasked_client_frame_fails_1002() {
    let mut v = Vec::new();
    encode_frame(&mut v, true, OpCode::Text, None, b"hi");
    expect_err(&v, Error::UnmaskedClientFrame);
}

#[test]
fn masked_server_frame_fails_on_the_client() {
    let mut d = Decoder::new(Role::Client);
    let mut v = client_frame(true, OpCode::Text, b"hi");
    assert_eq!(d.decode(&mut v, MAX), Err(Error::MaskedServerFrame));
}

#[test]
fn client_decodes_unmasked_server_frames() {
    let mut a = Assembler::new(Decoder::new(Role::Client));
    let mut v = Vec::new();
    encode_frame(&mut v, true, OpCode::Text, None, "héllo".as_bytes());
    let mut got = Vec::new();
    a.feed(&v, MAX, |m| got.push(own(m))).unwrap();
    assert_eq!(got, vec![Owned::Text("héllo".into())]);
}

#[test]
fn continuation_without_a_message_fails_1002() {
    expect_err(
        &client_frame(true, OpCode::Continuation, b"x"),
        Error::UnexpectedContinuation,
    );
}

#[test]
fn new_data_frame_inside_a_fragmented_message_fails_1002() {
    let mut wire = client_frame(false, OpCode::Text, b"a");
    wire.extend(client_frame(true, OpCode::Binary, b"b"));
    expect_err(&wire, Error::ExpectedContinuation);
}

#[test]
fn non_minimal_lengths_fail_1002() {
    // 16-bit form carrying 5.
    let mut v = vec![0x82, 0x80 | 126, 0, 5];
    v.extend(KEY);
    v.extend([0u8; 5]);
    expect_err(&v, Error::NonMinimalLength);
    // 64-bit form carrying 65535.
    let mut v = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    v.extend(KEY);
    expect_err(&v, Error::NonMinimalLength);
    // 64-bit form with the top bit set.
    let mut v = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 1, 0, 0];
    v.extend(KEY);
    expect_err(&v, Error::NonMinimalLength);
}

#[test]
fn control_frames_may_interleave_a_fragmented_message() {
    let mut wire = client_frame(false, OpCode::Text, b"hel");
    wire.extend(client_frame(true, OpCode::Ping, b"p"));
    wire.extend(client_frame(false, OpCode::Continuation, b"lo "));
    wire.extend(client_frame(true, OpCode::Pong, b"q"));
    wire.extend(client_frame(true, OpCode::Continuation, b"world"));
    let (msgs, r) = decode(&wire);
    assert_eq!(r, Ok(()));
    assert_eq!(
        msgs,
        vec![
            Owned::Ping(b"p".to_vec()),
            Owned::Pong(b"q".to_vec()),
            Owned::Text("hello world".into())
        ]
    );
}

#[test]
fn empty_messages_and_empty_fragments() {
    let mut wire = client_frame(true, OpCode::Text, b"");
    wire.extend(client_frame(false, OpCode::Binary, b""));
    wire.extend(client_frame(false, OpCode::Continuation, b""));
    wire.extend(client_frame(true, OpCode::Continuation, b""));
    let (msgs, r) = decode(&wire);
    assert_eq!(r, Ok(()));
    assert_eq!(
        msgs,
        vec![Owned::Text(String::new()), Owned::Binary(vec![])]
    );
}

// ---------------------------------------------------------------- 1009

#[test]
fn oversize_message_fails_1009_from_the_header_alone() {
    let wire = client_frame(true, OpCode::Binary, &[0u8; 1000]);
    let mut d = Decoder::new(Role::Server);
    // Header (2 + 2 + 4 bytes) only: already refused.
    let mut head = wire[..8].to_vec();
    assert_eq!(d.decode(&mut head, 999), Err(Error::MessageTooBig));
    assert_eq!(
        Error::MessageTooBig.close_code(),
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
    // Exactly at the limit is fine.
    let (_, r) = decode_chunked(&wire, &[], 1000);
    assert_eq!(r, Ok(()));
}

#[test]
fn oversize_counts_all_fragments() {
    let mut wire = client_frame(false, OpCode::Binary, &[0u8; 600]);
    wire.extend(client_frame(true, OpCode::Continuation, &[0u8; 600]));
    let (msgs, r) = decode_chunked(&wire, &[], 1000);
    assert!(msgs.is_empty());
    assert_eq!(r, Err(Error::MessageTooBig));
}

// ---------------------------------------------------------------- 1007

#[test]
fn invalid_utf8_fails_1007_at_the_first_impossible_byte() {
    // The bad byte is in the first piece of a 1000-byte frame: we must fail before the rest.
    let mut payload = vec![b'a'; 1000];
    payload[10] = 0xFF;
    let wire = client_frame(true, OpCode::Text, &payload);
    let mut d = Decoder::new(Role::Server);
    let mut first = wire[..20].to_vec();
    assert_eq!(d.decode(&mut first, MAX), Err(Error::InvalidUtf8));
    assert_eq!(
        Error::InvalidUtf8.close_code(),
        Some(CloseCode::INVALID_PAYLOAD)
    );
}

#[test]
fn invalid_utf8_across_fragment_boundaries() {
    // "€" = E2 82 AC split across fragments: valid.
    let mut wire = client_frame(false, OpCode::Text, &[b'x', 0xE2]);
    wire.extend(client_frame(false, OpCode::Continuation, &[0x82]));
    wire.extend(client_frame(true, OpCode::Continuation, &[0xAC]));
    let (msgs, r) = decode(&wire);
    assert_eq!(r, Ok(()));
    assert_eq!(msgs, vec![Owned::Text("x€".into())]);
    // E2 then a non-continuation in the next fragment: fails on that fragment.
    let mut wire = client_frame(false, OpCode::Text, &[0xE2]);
    wire.extend(client_frame(true, OpCode::Continuation, b"A"));
    expect_err(&wire, Error::InvalidUtf8);
    // A message that ends mid-code-point.
    expect_err(
        &client_frame(true, OpCode::Text, &[0xE2, 0x82]),
        Error::InvalidUtf8,
    );
}

#[test]
fn binary_messages_are_not_validated() {
    let (msgs, r) = decode(&client_frame(true, OpCode::Binary, &[0xFF, 0xFE]));
    assert_eq!(r, Ok(()));
    assert_eq!(msgs, vec![Owned::Binary(vec![0xFF, 0xFE])]);
}

// ---------------------------------------------------------------- Close frames

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

#[test]
fn close_with_one_byte_payload_fails_1002() {
    expect_err(
        &client_frame(true, OpCode::Close, &[3]),
        Error::CloseFrameOneByte,
    );
}

#[test]
fn close_codes_that_may_not_be_received_fail_1002() {
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000] {
        let wire = client_frame(true, OpCode::Close, &close_payload(code, b""));
        expect_err(&wire, Error::InvalidCloseCode);
    }
}

#[test]
fn close_reason_must_be_utf8() {
    let wire = client_frame(true, OpCode::Close, &close_payload(1000, &[0xC0, 0xAF]));
    expect_err(&wire, Error::InvalidUtf8);
}

#[test]
fn close_is_echoed_then_nothing_more_is_read() {
    let mut wire = client_frame(
        true,
        OpCode::Close,
        &close_payload(4001, "bye ✓".as_bytes()),
    );
    wire.extend(client_frame(true, OpCode::Text, b"after close"));
    wire.extend([0xFF; 20]); // garbage that would be an error if read
    let (msgs, r) = decode(&wire);
    assert_eq!(r, Ok(()));
    assert_eq!(
        msgs,
        vec![Owned::Close(Some(4001), "bye ✓".into(), Some(Some(4001)))]
    );
}

#[test]
fn empty_close_gets_an_empty_reply_and_our_close_gets_none() {
    let (msgs, _) = decode(&client_frame(true, OpCode::Close, b""));
    assert_eq!(msgs, vec![Owned::Close(None, String::new(), Some(None))]);

    let mut a = Assembler::new(Decoder::new(Role::Server));
    assert!(a.decoder.close_state_mut().on_send());
    let mut got = Vec::new();
    let wire = client_frame(true, OpCode::Close, &close_payload(1000, b""));
    a.feed(&wire, MAX, |m| got.push(own(m))).unwrap();
    assert_eq!(got, vec![Owned::Close(Some(1000), String::new(), None)]);
    assert_eq!(a.decoder.close_state(), CloseState::Closed);
}

#[test]
fn encode_close_round_trips() {
    let mut v = Vec::new();
    encode_close(
        &mut v,
        Some(CloseCode::SERVICE_RESTART),
        "{\"retry_ms\":1200}",
        Some(KEY),
    );
    let (msgs, r) = decode(&v);
    assert_eq!(r, Ok(()));
    assert_eq!(
        msgs,
        vec![Owned::Close(
            Some(1012),
            "{\"retry_ms\":1200}".into(),
            Some(Some(1012))
        )]
    );
}

// ---------------------------------------------------------------- chunking

#[test]
fn header_split_at_every_byte() {
    let payload: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let wire = client_frame(true, OpCode::Binary, &payload);
    for first in 1..MAX_HEADER_LEN + 2 {
        let (msgs, r) = decode_chunked(&wire, &[first, 65536], MAX);
        assert_eq!(r, Ok(()));
        assert_eq!(
            msgs,
            vec![Owned::Binary(payload.clone())],
            "split at {first}"
        );
    }
}

#[test]
fn contiguous_payload_is_handed_out_in_place() {
    let mut wire = client_frame(true, OpCode::Binary, b"abcdef");
    let mut d = Decoder::new(Role::Server);
    let step = d.decode(&mut wire, MAX).unwrap();
    assert_eq!(step.consumed, wire.len());
    let Some(Event::Data {
        range,
        first: true,
        last: true,
        ..
    }) = step.event
    else {
        panic!("{step:?}")
    };
    assert_eq!(&wire[range], b"abcdef");
}

#[test]
fn decoder_state_fits_its_budget() {
    assert!(core::mem::size_of::<Decoder>() <= 16);
    assert!(core::mem::size_of::<HeadScanner>() <= 12);
}

// ---------------------------------------------------------------- handshake

const RFC_REQUEST: &str = "GET /chat?topics=a,b&access_token=tok HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn with_headers(edit: impl Fn(&str) -> String) -> String {
    edit(RFC_REQUEST)
}

fn parse(s: &str) -> Result<(), Error> {
    parse_request(s.as_bytes()).map(|_| ())
}

#[test]
fn rfc_sample_handshake_is_accepted_with_the_rfc_accept_key() {
    let req = parse_request(RFC_REQUEST.as_bytes()).unwrap();
    assert_eq!(req.path, "/chat");
    assert_eq!(req.query, Some("topics=a,b&access_token=tok"));
    assert_eq!(req.host, "server.example.com");
    assert_eq!(req.origin, Some("http://example.com"));
    assert_eq!(
        req.offered_protocols().collect::<Vec<_>>(),
        ["chat", "superchat"]
    );
    assert_eq!(req.choose_protocol(&["superchat", "x"]), Some("superchat"));
    assert_eq!(req.choose_protocol(&["x"]), None);
    assert_eq!(req.query_param("topics"), Some("a,b"));
    assert_eq!(req.auth_token("access_token"), Some("tok"));
    assert_eq!(&req.accept_key(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let mut out = Vec::new();
    write_accept(&mut out, &req.accept_key(), Some("chat"));
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
    assert!(text.ends_with("\r\n\r\n"));
}

#[test]
fn bearer_header_wins_over_query_token() {
    let s = with_headers(|r| r.replace("Origin:", "Authorization: Bearer  hdr \r\nOrigin:"));
    let req = parse_request(s.as_bytes()).unwrap();
    assert_eq!(req.auth_token("access_token"), Some("hdr"));
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let s = RFC_REQUEST
        .replace("Upgrade: websocket", "uPgRaDe: WebSocket")
        .replace(
            "Connection: keep-alive, Upgrade",
            "CONNECTION: keep-alive,upgrade",
        )
        .replace("Sec-WebSocket-Key", "sec-websocket-key");
    assert_eq!(parse(&s), Ok(()));
}

#[test]
fn a_plain_request_may_be_http_1_0_and_an_upgrade_may_not() {
    use crate::ws::handshake::parse_plain;
    let head = |v: &str| format!("GET /poll?topics=a {v}\r\nHost: h\r\n\r\n");
    let r = head("HTTP/1.0");
    assert!(parse_plain(r.as_bytes()).unwrap().http10);
    let r = head("HTTP/1.1");
    assert!(!parse_plain(r.as_bytes()).unwrap().http10);
    for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2"] {
        let r = head(v);
        assert_eq!(
            parse_plain(r.as_bytes()).map(|_| ()),
            Err(Error::UnsupportedHttpVersion),
            "{v}"
        );
    }
    let up = RFC_REQUEST.replace("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost");
    assert_eq!(parse(&up), Err(Error::UnsupportedHttpVersion));
    // HTTP/1.0 predates Host: a plain 1.0 request may omit it, a 1.1 one may not.
    let r = parse_plain(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.host, "");
    assert_eq!(
        parse_plain(b"GET /healthz HTTP/1.1\r\n\r\n").map(|_| ()),
        Err(Error::MissingHost)
    );
    assert_eq!(
        parse_plain(b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n").map(|_| ()),
        Err(Error::DuplicateHeader)
    );
}

#[test]
fn each_missing_or_wrong_field_has_its_own_error_and_status() {
    let cases: &[(&str, &str, Error, u16)] = &[
        ("GET /chat", "POST /chat", Error::MethodNotGet, 405),
        (
            "HTTP/1.1\r\nHost",
            "HTTP/1.0\r\nHost",
            Error::UnsupportedHttpVersion,
            505,
        ),
        ("GET /chat?", "GET chat?", Error::InvalidRequestTarget, 400),
        ("Host: server.example.com\r\n", "", Error::MissingHost, 400),
        (
            "Upgrade: websocket\r\n",
            "Upgrade: h2c\r\n",
            Error::MissingUpgradeWebsocket,
            400,
        ),
        (
            "keep-alive, Upgrade",
            "keep-alive",
            Error::MissingConnectionUpgrade,
            400,
        ),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "",
            Error::MissingKey,
            400,
        ),
        (
            "dGhlIHNhbXBsZSBub25jZQ==",
            "dGhlIHNhbXBsZQ==",
            Error::InvalidKey,
            400,
        ),
        (
            "Version: 13",
            "Version: 8",
            Error::UnsupportedWebSocketVersion,
            426,
        ),
        (
            "Sec-WebSocket-Version: 13\r\n",
            "",
            Error::UnsupportedWebSocketVersion,
            426,
        ),
        (
            "Origin:",
            "Content-Length: 5\r\nOrigin:",
            Error::RequestBodyNotAllowed,
            400,
        ),
        (
            "Origin:",
            "Transfer-Encoding: chunked\r\nOrigin:",
            Error::TransferEncodingNotAllowed,
            400,
        ),
        (
            "Origin:",
            "Content-Length: +5\r\nOrigin:",
            Error::InvalidContentLength,
            400,
        ),
        (
            "Origin:",
            "Content-Length: 5, 5\r\nOrigin:",
            Error::InvalidContentLength,
            400,
        ),
        (
            "Origin:",
            "Content-Length: 99999999999\r\nOrigin:",
            Error::InvalidContentLength,
            400,
        ),
        (
            "Origin:",
            "Host: again\r\nOrigin:",
            Error::DuplicateHeader,
            400,
        ),
        (
            "Origin:",
            "Bad Name: x\r\nOrigin:",
            Error::MalformedHeader,
            400,
        ),
        ("Origin:", "NoColon\r\nOrigin:", Error::MalformedHeader, 400),
        (
            "Origin:",
            "X: a\u{1}b\r\nOrigin:",
            Error::MalformedHeader,
            400,
        ),
        ("GET /chat", "GET  /chat", Error::MalformedRequestLine, 400),
    ];
    for (from, to, err, status) in cases {
        let s = RFC_REQUEST.replacen(from, to, 1);
        assert_ne!(s, RFC_REQUEST, "{from:?} not found");
        assert_eq!(parse(&s), Err(*err), "{from:?} -> {to:?}");
        assert_eq!(err.http_status(), Some(*status));
    }
    // Content-Length: 0 is harmless.
    let s = RFC_REQUEST.replacen("Origin:", "Content-Length: 0\r\nOrigin:", 1);
    assert_eq!(parse(&s), Ok(()));
}

#[test]
fn bare_lf_line_endings_are_malformed() {
    let s = RFC_REQUEST.replace("\r\n", "\n");
    let mut sc = HeadScanner::new();
    let n = sc.scan(s.as_bytes(), &Limits::default()).unwrap().unwrap();
    assert!(parse_request(&s.as_bytes()[..n]).is_err());
}

#[test]
fn scanner_finds_the_head_in_any_number_of_pieces() {
    let mut owned = RFC_REQUEST.as_bytes().to_vec();
    owned.extend_from_slice(&[0x81, 0x85, b'e', b'x']); // a frame pipelined after the head
    let bytes = &owned[..];
    for piece in [1, 2, 3, 7, 64, 1000] {
        let mut sc = HeadScanner::new();
        let mut end = None;
        let mut got = 0;
        while end.is_none() {
            got = (got + piece).min(bytes.len());
            end = sc.scan(&bytes[..got], &Limits::default()).unwrap();
        }
        assert_eq!(end, Some(RFC_REQUEST.len()), "piece {piece}");
    }
}

#[test]
fn scanner_enforces_limits_before_the_line_ends() {
    let limits = Limits {
        max_head_bytes: 200,
        max_headers: 3,
        max_line: 50,
    };
    let long_target = format!("GET /{} HTTP/1.1", "a".repeat(60));
    let mut sc = HeadScanner::new();
    // No CRLF yet: the request line is already too long.
    assert_eq!(
        sc.scan(long_target.as_bytes(), &limits),
        Err(Error::RequestLineTooLong)
    );

    let mut sc = HeadScanner::new();
    let long_header = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(60));
    assert_eq!(
        sc.scan(long_header.as_bytes(), &limits),
        Err(Error::HeaderLineTooLong)
    );

    let mut sc = HeadScanner::new();
    let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
    assert_eq!(
        sc.scan(many.as_bytes(), &limits),
        Err(Error::TooManyHeaders)
    );

    let mut sc = HeadScanner::new();
    let big = format!(
        "GET / HTTP/1.1\r\n{}",
        "X: 0123456789012345678901234567890123\r\n".repeat(3)
    );
    let limits = Limits {
        max_headers: 100,
        max_head_bytes: 150,
        ..limits
    }; // head is 173 bytes
    let big = format!("{big}{}", "Y".repeat(40));
    assert_eq!(sc.scan(big.as_bytes(), &limits), Err(Error::HeadTooLarge));
    for e in [
        Error::TooManyHeaders,
        Error::HeadTooLarge,
        Error::HeaderLineTooLong,
    ] {
        assert_eq!(e.http_status(), Some(431));
    }
    assert_eq!(Error::RequestLineTooLong.http_status(), Some(414));
}

#[test]
fn a_line_exactly_at_the_limit_is_fine_even_when_split_before_its_lf() {
    let limits = Limits {
        max_head_bytes: 8192,
        max_headers: 32,
        max_line: 16,
    };
    let line = "GET /abcd HTTP/1"; // 16 bytes
    let mut sc = HeadScanner::new();
    assert_eq!(sc.scan(format!("{line}\r").as_bytes(), &limits), Ok(None));
}

#[test]
fn error_responses_carry_the_right_headers() {
    let mut out = Vec::new();
    write_error(&mut out, Error::UnsupportedWebSocketVersion);
    let t = String::from_utf8(out).unwrap();
    assert!(t.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{t}");
    assert!(t.contains("Sec-WebSocket-Version: 13\r\n"));

    let mut out = Vec::new();
    write_error(&mut out, Error::InvalidKey);
    let t = String::from_utf8(out).unwrap();
    assert!(t.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    assert!(t.ends_with("\r\n\r\ninvalid_key\n"));
    assert!(t.contains("Content-Length: 12\r\n"));

    let cases = [
        (Rejection::Forbidden, "403 Forbidden", None),
        (Rejection::NotFound, "404 Not Found", None),
        (
            Rejection::TooManyRequests {
                retry_after: Some(5),
            },
            "429 Too Many",
            Some(5),
        ),
        (
            Rejection::Unavailable { retry_after: 2 },
            "503 Service Unavailable",
            Some(2),
        ),
    ];
    for (rej, line, retry) in cases {
        let mut out = Vec::new();
        write_rejection(&mut out, rej, "nope");
        let t = String::from_utf8(out).unwrap();
        assert!(t.starts_with(&format!("HTTP/1.1 {line}")), "{t}");
        assert_eq!(t.contains("Retry-After:"), retry.is_some());
        if let Some(s) = retry {
            assert!(t.contains(&format!("Retry-After: {s}\r\n")));
        }
    }
}

// ---------------------------------------------------------------- properties

fn payload_strategy() -> impl Strategy<Value = (usize, bool)> {
    (
        prop::sample::select(vec![0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20]),
        any::<bool>(),
    )
}

/// Deterministic text of exactly `len` bytes with multi-byte code points in it.
fn text_of(len: usize, seed: u8) -> Vec<u8> {
    let mut s = String::with_capacity(len);
    let cycle = ["a", "é", "€", "𝄞", "z"];
    let mut i = seed as usize;
    while s.len() < len {
        let c = cycle[i % cycle.len()];
        if s.len() + c.len() > len {
            s.push('x');
        } else {
            s.push_str(c);
        }
        i += 1;
    }
    s.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn encode_split_decode_round_trips(
        (len, text) in payload_strategy(),
        masked in any::<bool>(),
        fragments in 1usize..5,
        cuts in prop::collection::vec(1usize..70_000, 1..8),
        seed in any::<u8>(),
    ) {
        let payload = if text { text_of(len, seed) } else { (0..len).map(|i| (i as u8) ^ seed).collect() };
        let op = if text { OpCode::Text } else { OpCode::Binary };
        let mask = masked.then_some([seed, 1, 2, 3]);
        // Split into fragments (text fragments may cut code points: that is allowed).
        let mut wire = Vec::new();
        let step = payload.len().div_ceil(fragments).max(1);
        let pieces: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(step).collect() };
        for (i, p) in pieces.iter().enumerate() {
            let opc = if i == 0 { op } else { OpCode::Continuation };
            encode_frame(&mut wire, i + 1 == pieces.len(), opc, mask, p);
        }
        let role = if masked { Role::Server } else { Role::Client };
        let mut a = Assembler::new(Decoder::new(role));
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            let (now, later) = rest.split_at(n);
            rest = later;
            a.feed(now, MAX, |m| got.push(own(m))).unwrap();
        }
        let want = if text { Owned::Text(String::from_utf8(payload).unwrap()) } else { Owned::Binary(payload) };
        prop_assert_eq!(got, vec![want]);
        prop_assert_eq!(a.pending_len(), 0);
    }

    #[test]
    fn header_round_trips_for_any_length(len in 0u64..(1 << 40), fin in any::<bool>(), masked in any::<bool>()) {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, fin, OpCode::Binary, masked.then_some(KEY), len);
        let mut d = Decoder::new(if masked { Role::Server } else { Role::Client });
        // A decoder given only the header consumes it and waits for payload (or, for an
        // empty payload, emits the empty message).
        let step = d.decode(&mut h[..n], u32::MAX);
        if len > u64::from(u32::MAX) {
            prop_assert_eq!(step, Err(Error::MessageTooBig));
        } else {
            let step = step.unwrap();
            prop_assert_eq!(step.consumed, n);
            prop_assert_eq!(step.event.is_some(), len == 0);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_progress(data in prop::collection::vec(any::<u8>(), 0..512), cut in 1usize..64) {
        let _ = decode_chunked(&data, &[cut], 4096);
        let mut sc = HeadScanner::new();
        if let Ok(Some(n)) = sc.scan(&data, &Limits::default()) {
            let _ = parse_request(&data[..n]);
        }
    }
}

#[test]
fn limit_errors_do_not_depend_on_chunking() {
    // Regression (found by fuzzing): a head breaking several limits reported a different
    // one depending on where reads split it.
    let limits = Limits {
        max_head_bytes: 40,
        max_headers: 2,
        max_line: 12,
    };
    let lines = [
        "GET / HTTP/1.1",
        "A: 1",
        "Bbbbbbbbbbbbbbb: 2",
        "C: 3",
        "D: 4444444444444",
    ];
    for mask in 0u32..32 {
        let mut head = String::new();
        for (i, l) in lines.iter().enumerate() {
            if mask & (1 << i) != 0 {
                head.push_str(l);
                head.push_str("\r\n");
            }
        }
        head.push_str("\r\n");
        let bytes = head.as_bytes();
        let whole = HeadScanner::new().scan(bytes, &limits);
        let mut sc = HeadScanner::new();
        let mut split = Ok(None);
        for end in 1..=bytes.len() {
            split = sc.scan(&bytes[..end], &limits);
            if !matches!(split, Ok(None)) {
                break;
            }
        }
        assert_eq!(whole, split, "{head:?}");
    }
}

#[test]
fn a_parameter_that_names_one_thing_is_found_when_repeated() {
    use crate::ws::handshake::repeated_param;
    let once = ["topic", "cursor"];
    assert_eq!(repeated_param("topic=a&cursor=1", &once), None);
    assert_eq!(repeated_param("topics=a&topics=b&x&x", &once), None);
    assert_eq!(repeated_param("topic=a&x=1&topic=b", &once), Some("topic"));
    assert_eq!(
        repeated_param("cursor&topic=a&cursor=", &once),
        Some("cursor")
    );
    assert_eq!(repeated_param("", &once), None);
}
