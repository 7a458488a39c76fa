//! Delivery frames: each published message is encoded once into a complete server frame
//! (unmasked, so the same bytes go to every recipient) and shared by reference.
//!
//! - Text payload → Text frame: `{"type":"message","topic":T,"seq":N,"data":"…"}`.
//! - Binary payload → Binary frame: `[topic length: u8][topic][seq: u64 big-endian][payload]`.
//! - A gap → Text frame: `{"type":"gap","topic":T,"from":A,"to":B}`: messages A..=B of T
//!   are gone (the replay window no longer holds them, or a slow consumer's queue dropped
//!   them); the client continues after B.

use std::sync::Arc;

use crate::ws::frame::encode_frame;
use crate::ws::OpCode;

/// A message's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// UTF-8 text.
    Text(&'a str),
    /// Bytes.
    Binary(&'a [u8]),
}

/// The whole frame delivering `payload` as message `seq` of `topic` (a validated name).
pub fn encode_delivery(topic: &str, seq: u64, payload: Payload<'_>) -> Arc<[u8]> {
    let mut frame = Vec::new();
    match payload {
        Payload::Text(text) => {
            let body = serde_json::json!({
                "type": "message", "topic": topic, "seq": seq, "data": text,
            })
            .to_string();
            encode_frame(&mut frame, true, OpCode::Text, None, body.as_bytes());
        }
        Payload::Binary(bytes) => {
            let mut body = Vec::with_capacity(1 + topic.len() + 8 + bytes.len());
            body.push(topic.len().min(255) as u8);
            body.extend_from_slice(&topic.as_bytes()[..topic.len().min(255)]);
            body.extend_from_slice(&seq.to_be_bytes());
            body.extend_from_slice(bytes);
            encode_frame(&mut frame, true, OpCode::Binary, None, &body);
        }
    }
    frame.into()
}

/// An upper bound of the size of the frame [`encode_delivery`] makes for `payload`, exact
/// up to the sequence number's digits: text is counted as JSON escapes it (a control
/// character becomes six bytes), so queues and limits see the bytes that will really be
/// sent.
pub fn delivery_len_bound(topic: &str, payload: &Payload<'_>) -> usize {
    let body = match payload {
        Payload::Text(t) => {
            let escaped: usize = t
                .bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                    0x00..=0x1f => 6,
                    _ => 1,
                })
                .sum();
            // {"data":"","seq":,"topic":"","type":"message"} is 46 bytes; seq ≤ 20 digits.
            46 + topic.len() + 20 + escaped
        }
        Payload::Binary(b) => 1 + topic.len().min(255) + 8 + b.len(),
    };
    body + 10 // the largest server frame header
}

/// A message to one user (not numbered: it belongs to no topic). Text:
/// `{"type":"direct","data":"…"}`; binary: the binary delivery layout with an empty topic
/// and sequence number 0.
pub fn encode_direct(_user: &str, binary: bool, data: &[u8]) -> Arc<[u8]> {
    let mut frame = Vec::new();
    if binary {
        let mut body = Vec::with_capacity(9 + data.len());
        body.push(0);
        body.extend_from_slice(&0u64.to_be_bytes());
        body.extend_from_slice(data);
        encode_frame(&mut frame, true, OpCode::Binary, None, &body);
    } else {
        let text = String::from_utf8_lossy(data);
        let body = serde_json::json!({"type": "direct", "data": text}).to_string();
        encode_frame(&mut frame, true, OpCode::Text, None, body.as_bytes());
    }
    frame.into()
}

/// The frame telling a client that messages `from..=to` of `topic` are gone.
pub fn encode_gap(topic: &str, from: u64, to: u64) -> Arc<[u8]> {
    let body =
        serde_json::json!({"type": "gap", "topic": topic, "from": from, "to": to}).to_string();
    let mut frame = Vec::new();
    encode_frame(&mut frame, true, OpCode::Text, None, body.as_bytes());
    frame.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_bound_holds_for_escaped_text_and_binary() {
        let nasty: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\é𝄞x".chars())
            .collect();
        for (topic, p) in [
            ("t", Payload::Text("plain")),
            ("chat:1", Payload::Text(&nasty)),
            ("b", Payload::Binary(&[1, 2, 3])),
        ] {
            let real = encode_delivery(topic, u64::MAX, p).len();
            let bound = delivery_len_bound(topic, &p);
            assert!(real <= bound && bound <= real + 20, "{real} vs {bound}");
        }
        // 200 KB of control characters is 1.2 MB on the wire, and the bound says so.
        let ctl = "\u{1}".repeat(200_000);
        assert!(delivery_len_bound("t", &Payload::Text(&ctl)) >= 1_200_000);
    }
    use crate::ws::{Decoder, Event, Role};

    fn decode(frame: &[u8]) -> (bool, Vec<u8>) {
        let mut buf = frame.to_vec();
        let mut d = Decoder::new(Role::Client);
        let step = d.decode(&mut buf, u32::MAX).unwrap();
        match step.event {
            Some(Event::Data {
                kind, range, last, ..
            }) => {
                assert!(last);
                (
                    matches!(kind, crate::ws::DataKind::Text),
                    buf[range].to_vec(),
                )
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn text_deliveries_are_json_and_binary_ones_carry_topic_and_seq() {
        let (text, body) = decode(&encode_delivery("chat", 7, Payload::Text("hi \"you\"")));
        assert!(text);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["topic"], "chat");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["data"], "hi \"you\"");

        let (text, body) = decode(&encode_delivery("t", 1 << 40, Payload::Binary(&[0, 255])));
        assert!(!text);
        assert_eq!(body[0], 1);
        assert_eq!(&body[1..2], b"t");
        assert_eq!(u64::from_be_bytes(body[2..10].try_into().unwrap()), 1 << 40);
        assert_eq!(&body[10..], &[0, 255]);

        let (_, body) = decode(&encode_gap("chat", 3, 9));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["from"].as_u64(), v["to"].as_u64()),
            (Some("gap"), Some(3), Some(9))
        );
    }
}
