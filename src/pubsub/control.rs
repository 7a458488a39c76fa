//! The control protocol: JSON text frames from clients, and subscription at the handshake
//! (`/ws?topics=a,b&resume=a:41`).
//!
//! ```text
//! {"op":"subscribe","topics":["a","b"],"resume":{"a":{"seq":41,"epoch":"9c0d…"}}}
//! {"op":"subscribe","topics":["a"],"resume":{"a":41}}     resume: last sequence seen
//! {"op":"unsubscribe","topics":["a"]}
//! {"op":"publish","topic":"a","data":"text"}               only when client publishing is on
//! ```
//! Replies: `{"type":"subscribed","topic":T,"seq":N,"epoch":E}` (N: newest sequence number;
//! live messages follow it; with `"recovered":bool` when resuming),
//! `{"type":"error","reason":R}`. A message may carry `"id"` (an integer up to 2^53 − 1, or
//! a string of 1 to 64 bytes); every reply to it carries the same `"id"`.

use super::replay::{format_epoch, parse_epoch, Position};
use super::topic::{validate_topic, TopicError, TopicLimits};

/// A parsed control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Subscribe; `resume` pairs a topic with the last sequence number the client saw.
    Subscribe {
        /// Topics, validated, without duplicates.
        topics: Vec<String>,
        /// Resume points.
        resume: Vec<(String, Position)>,
        /// Subscription tokens for channels the connection token does not grant
        /// (`"tokens": {"topic": "<jwt>"}`; control messages only).
        tokens: Vec<(String, String)>,
    },
    /// Unsubscribe.
    Unsubscribe {
        /// Topics, validated.
        topics: Vec<String>,
    },
    /// Publish a text message.
    Publish {
        /// Topic, validated.
        topic: String,
        /// The message.
        data: String,
    },
    /// Replace the connection's token before it expires.
    Refresh {
        /// The new token.
        token: String,
    },
}

/// A client's name for one control message (`"id"`), carried by every reply to it: a
/// client with several requests outstanding (a publish waiting for the broker while a
/// subscribe is refused) tells which reply answers which. An integer up to 2^53 − 1 (what a
/// JavaScript number holds exactly) or a string of 1 to [`RequestId::MAX_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(serde_json::Value);

impl RequestId {
    /// The longest string id, in bytes.
    pub const MAX_LEN: usize = 64;
    /// The largest integer id: 2^53 − 1.
    pub const MAX_INT: u64 = (1 << 53) - 1;

    /// The id a message gave, if it is one.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let ok = match v {
            serde_json::Value::Number(n) => n.as_u64().is_some_and(|n| n <= Self::MAX_INT),
            serde_json::Value::String(s) => (1..=Self::MAX_LEN).contains(&s.len()),
            _ => false,
        };
        ok.then(|| Self(v.clone()))
    }

    /// An integer id.
    pub fn int(n: u64) -> Option<Self> {
        Self::from_json(&n.into())
    }

    /// The id as JSON.
    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }
}

/// A parsed control message with the id it gave ([`parse_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The message's `"id"`, when it gave a valid one that is not named twice (a refusal
    /// carries it too, unless the refusal is about the id).
    pub id: Option<RequestId>,
    /// The message, or why it was refused.
    pub control: Result<Control, ControlError>,
}

/// Why a control message was refused (sent back as `{"type":"error","reason":...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// Not a JSON object; with the parser's words when the text is not JSON at all (where
    /// it stopped and why: they never quote the client's text back).
    NotJson(Option<String>),
    /// `op` missing or not one of subscribe / unsubscribe / publish.
    UnknownOp,
    /// A field is missing or of the wrong type.
    BadField(&'static str),
    /// A topic list with no topic in it (a subscribe or unsubscribe of nothing would have
    /// no reply at all).
    EmptyList(&'static str),
    /// A field named twice (`op`, `topics`, …), or a topic named twice in `resume` or
    /// `tokens`: JSON leaves which one counts to the reader, so the message is refused
    /// rather than read one way here and another by whatever else reads it.
    Duplicate(String),
    /// `resume` or `tokens` named a topic the message does not subscribe to (a control
    /// message's resume point or token serves only the topics it lists, so one for another
    /// topic is a mistake that would otherwise pass unseen: no replay, no grant).
    NotListed(&'static str, String),
    /// A topic name broke a rule, or too many topics.
    Topic(TopicError),
}

impl ControlError {
    /// The reason sent to the client.
    pub fn reason(&self) -> String {
        match self {
            Self::NotJson(None) => "control_not_a_json_object".into(),
            Self::NotJson(Some(why)) => format!("control_not_a_json_object ({why})"),
            Self::UnknownOp => "unknown_op (subscribe, unsubscribe, publish, refresh)".into(),
            Self::BadField("id") => format!(
                "bad_field id (an integer up to {} or a string of 1 to {} bytes)",
                RequestId::MAX_INT,
                RequestId::MAX_LEN
            ),
            Self::BadField(f) => format!("bad_field {f}"),
            Self::EmptyList(f) => format!("bad_field {f} (empty: name at least one topic)"),
            Self::Duplicate(f) => format!("duplicate_field {f}"),
            Self::NotListed(f, t) => format!("bad_field {f}.{t} (not in topics)"),
            Self::Topic(e) => e.reason(),
        }
    }
}

/// The fields a control message may carry; each may appear once. `id` is checked first: a
/// refusal for another repeated field can still carry it.
const FIELDS: [&str; 8] = [
    "id", "op", "topics", "resume", "tokens", "topic", "data", "token",
];

/// A JSON object's members in the order sent, repeats kept (`serde_json::Value` keeps the
/// last of a repeated name, which hides the repeat).
struct Members<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Members<'a>, M::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    out.push((k, m.next_value()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Refuse a control message that names one of its fields twice, or one topic twice in
/// `resume` or `tokens`. `text` is already known to be a JSON object.
fn refuse_repeats(text: &str, limits: &TopicLimits) -> Result<(), ControlError> {
    let Ok(top) = serde_json::from_str::<Members<'_>>(text) else {
        return Err(ControlError::NotJson(None));
    };
    for f in FIELDS {
        let mut named = top.0.iter().filter(|(k, _)| k == f);
        let first = named.next();
        if named.next().is_some() {
            return Err(ControlError::Duplicate(f.into()));
        }
        let (Some((_, raw)), "resume" | "tokens") = (first, f) else {
            continue;
        };
        // Not an object, too many topics, a bad name: the field's own check says so.
        let Ok(inner) = serde_json::from_str::<Members<'_>>(raw.get()) else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        for (t, _) in &inner.0 {
            if !seen.insert(t.as_str()) {
                // Checked as a topic before it is quoted back.
                validate_topic(t, limits).map_err(ControlError::Topic)?;
                return Err(ControlError::Duplicate(format!("{f}.{t}")));
            }
        }
    }
    Ok(())
}

/// The parser's words for text that is not JSON (syntax, or the text ended early); None
/// for JSON of another shape, whose message could quote the client's text.
fn not_json(e: &serde_json::Error) -> ControlError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => ControlError::NotJson(Some(e.to_string())),
        Category::Data | Category::Io => ControlError::NotJson(None),
    }
}

fn too_many(limits: &TopicLimits) -> ControlError {
    ControlError::Topic(TopicError::TooManyTopics {
        max: limits.max_per_connection,
    })
}

/// Add `t` to `out` unless it is there already (in O(1): `seen` mirrors `out`); fails as
/// soon as the list passes the per-connection limit, so a long list costs no more than
/// the limit (a list of 80,000 names once held a worker for 5 s with a linear scan each).
fn add_topic(
    out: &mut Vec<String>,
    seen: &mut std::collections::HashSet<String>,
    t: &str,
    limits: &TopicLimits,
) -> Result<(), ControlError> {
    validate_topic(t, limits).map_err(ControlError::Topic)?;
    if seen.insert(t.to_string()) {
        if out.len() == limits.max_per_connection {
            return Err(too_many(limits));
        }
        out.push(t.to_string());
    }
    Ok(())
}

/// The message's `topics`, validated, in order without repeats, and the same as a set.
fn topics_of(
    v: &serde_json::Value,
    limits: &TopicLimits,
) -> Result<(Vec<String>, std::collections::HashSet<String>), ControlError> {
    let list = v["topics"]
        .as_array()
        .ok_or(ControlError::BadField("topics"))?;
    if list.is_empty() {
        return Err(ControlError::EmptyList("topics"));
    }
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in list {
        let t = t.as_str().ok_or(ControlError::BadField("topics"))?;
        add_topic(&mut out, &mut seen, t, limits)?;
    }
    Ok((out, seen))
}

/// Refuse a `resume` or `tokens` entry for a topic the message does not subscribe to. `t`
/// is already validated (it is quoted back).
fn listed(
    topics: &std::collections::HashSet<String>,
    field: &'static str,
    t: &str,
) -> Result<(), ControlError> {
    if topics.contains(t) {
        Ok(())
    } else {
        Err(ControlError::NotListed(field, t.to_string()))
    }
}

/// A resume point in JSON: the last sequence number seen, or `{"seq":N,"epoch":"E"}`.
fn position_of(v: &serde_json::Value) -> Result<Position, ControlError> {
    let bad = ControlError::BadField("resume");
    if let Some(seq) = v.as_u64() {
        return Ok(Position::at(seq));
    }
    let seq = v["seq"].as_u64().ok_or(bad.clone())?;
    let epoch = match v.get("epoch") {
        None => None,
        Some(e) => Some(e.as_str().and_then(parse_epoch).ok_or(bad)?),
    };
    Ok(Position { seq, epoch })
}

/// Parse one control text frame.
pub fn parse_control(text: &str, limits: &TopicLimits) -> Result<Control, ControlError> {
    parse_request(text, limits).control
}

/// Parse one control text frame, with the id its replies carry.
pub fn parse_request(text: &str, limits: &TopicLimits) -> Request {
    let unnamed = |e| Request {
        id: None,
        control: Err(e),
    };
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return unnamed(not_json(&e)),
    };
    if !v.is_object() {
        return unnamed(ControlError::NotJson(None));
    }
    let given = v.get("id");
    let id = given.and_then(RequestId::from_json);
    let control = match refuse_repeats(text, limits) {
        Err(ControlError::Duplicate(f)) if f == "id" => return unnamed(ControlError::Duplicate(f)),
        Err(e) => Err(e),
        Ok(()) if given.is_some() && id.is_none() => Err(ControlError::BadField("id")),
        Ok(()) => control_of(&v, limits),
    };
    Request { id, control }
}

/// The control message `v` (a JSON object whose fields are each named once).
fn control_of(v: &serde_json::Value, limits: &TopicLimits) -> Result<Control, ControlError> {
    match v["op"].as_str() {
        Some("subscribe") => {
            let (topics, listed_set) = topics_of(v, limits)?;
            let mut resume = Vec::new();
            if let Some(r) = v.get("resume") {
                let r = r.as_object().ok_or(ControlError::BadField("resume"))?;
                if r.len() > limits.max_per_connection {
                    return Err(too_many(limits));
                }
                for (t, at) in r {
                    validate_topic(t, limits).map_err(ControlError::Topic)?;
                    listed(&listed_set, "resume", t)?;
                    resume.push((t.clone(), position_of(at)?));
                }
            }
            let mut tokens = Vec::new();
            if let Some(m) = v.get("tokens") {
                let m = m.as_object().ok_or(ControlError::BadField("tokens"))?;
                if m.len() > limits.max_per_connection {
                    return Err(too_many(limits));
                }
                for (t, jwt) in m {
                    validate_topic(t, limits).map_err(ControlError::Topic)?;
                    listed(&listed_set, "tokens", t)?;
                    let jwt = jwt.as_str().ok_or(ControlError::BadField("tokens"))?;
                    tokens.push((t.clone(), jwt.to_owned()));
                }
            }
            Ok(Control::Subscribe {
                topics,
                resume,
                tokens,
            })
        }
        Some("unsubscribe") => Ok(Control::Unsubscribe {
            topics: topics_of(v, limits)?.0,
        }),
        Some("publish") => {
            let topic = v["topic"].as_str().ok_or(ControlError::BadField("topic"))?;
            validate_topic(topic, limits).map_err(ControlError::Topic)?;
            let data = v["data"].as_str().ok_or(ControlError::BadField("data"))?;
            Ok(Control::Publish {
                topic: topic.into(),
                data: data.into(),
            })
        }
        Some("refresh") => {
            let token = v["token"].as_str().ok_or(ControlError::BadField("token"))?;
            Ok(Control::Refresh {
                token: token.into(),
            })
        }
        _ => Err(ControlError::UnknownOp),
    }
}

/// Subscriptions requested in the handshake's query string:
/// `topics=a,b&resume=a:41@9c0d…,b:7` (the epoch after `@` is optional)
/// (other parameters are ignored). Returns `Control::Subscribe` (empty when none).
pub fn parse_query(query: &str, limits: &TopicLimits) -> Result<Control, ControlError> {
    let mut topics: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut resume = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "topics" => {
                for t in v.split(',').filter(|t| !t.is_empty()) {
                    add_topic(&mut topics, &mut seen, t, limits)?;
                }
            }
            "resume" => {
                for item in v.split(',').filter(|t| !t.is_empty()) {
                    if resume.len() == limits.max_per_connection {
                        return Err(too_many(limits));
                    }
                    // `topic:seq` or `topic:seq@epoch`.
                    let bad = || ControlError::BadField("resume");
                    let (t, at) = item.rsplit_once(':').ok_or_else(bad)?;
                    validate_topic(t, limits).map_err(ControlError::Topic)?;
                    let (seq, epoch) = match at.split_once('@') {
                        Some((n, e)) => (n, Some(parse_epoch(e).ok_or_else(bad)?)),
                        None => (at, None),
                    };
                    let seq = seq.parse().map_err(|_| bad())?;
                    resume.push((t.to_string(), Position { seq, epoch }));
                }
            }
            _ => {}
        }
    }
    Ok(Control::Subscribe {
        topics,
        resume,
        tokens: Vec::new(),
    })
}

/// `{"type":"subscribed","topic":T,"seq":N,"epoch":E}`, with `"recovered":R` when the
/// client asked to resume, and the `"id"` of the message that asked.
///
/// Written directly, in the key order a `serde_json::Value` gives (sorted), rather than
/// through one: every WebSocket subscribe and every fresh poll makes one.
pub fn reply_subscribed(
    topic: &str,
    seq: u64,
    epoch: u64,
    recovered: Option<bool>,
    id: Option<&RequestId>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(80 + topic.len());
    let _ = write!(out, r#"{{"epoch":"{}","#, format_epoch(epoch));
    if let Some(id) = id {
        let _ = write!(out, r#""id":{},"#, id.as_json());
    }
    if let Some(r) = recovered {
        let _ = write!(out, r#""recovered":{r},"#);
    }
    let _ = write!(out, r#""seq":{seq},"topic":"#);
    push_json_str(&mut out, topic);
    out.push_str(r#","type":"subscribed"}"#);
    out
}

/// `s` as a JSON string, quoted and escaped (a validated topic name needs no escape, but
/// nothing here relies on that).
fn push_json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"type":"published","topic":T,"seq":N,"epoch":E}`: a client's publish was numbered N
/// in epoch E; with the publish's `"id"`.
pub fn reply_published(topic: &str, seq: u64, epoch: u64, id: Option<&RequestId>) -> String {
    let v = serde_json::json!({"type": "published", "topic": topic, "seq": seq,
        "epoch": super::format_epoch(epoch)});
    with_id(v, id)
}

/// `v` (a JSON object) with the `"id"` of the message it answers, as text.
pub fn with_id(mut v: serde_json::Value, id: Option<&RequestId>) -> String {
    if let (Some(id), Some(m)) = (id, v.as_object_mut()) {
        m.insert("id".into(), id.as_json().clone());
    }
    v.to_string()
}

/// `{"type":"reset","topic":T,"epoch":E,"seq":N}`: the topic's numbering started again
/// (its history was lost at the broker); live messages continue after N in epoch E.
pub fn reply_reset(topic: &str, epoch: u64, seq: u64) -> String {
    serde_json::json!({"type": "reset", "topic": topic, "epoch": super::format_epoch(epoch),
        "seq": seq})
    .to_string()
}

/// `{"type":"error","reason":R}` (R: e.g. [`ControlError::reason`]), with the `"id"` of
/// the message refused.
pub fn reply_error(reason: &str, id: Option<&RequestId>) -> String {
    with_id(serde_json::json!({"type": "error", "reason": reason}), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: TopicLimits = TopicLimits {
        max_len: 16,
        max_per_connection: 3,
    };

    #[test]
    fn a_huge_topic_list_is_refused_at_the_limit() {
        // 80,000 distinct names: refused as too many (the old code deduplicated all of them
        // with a linear scan each before checking the limit).
        let names: Vec<String> = (0..80_000).map(|i| format!("\"t{i}\"")).collect();
        let text = format!(r#"{{"op":"subscribe","topics":[{}]}}"#, names.join(","));
        assert_eq!(
            parse_control(&text, &L),
            Err(ControlError::Topic(TopicError::TooManyTopics { max: 3 }))
        );
        // Duplicates do not count twice; the limit counts distinct names.
        assert!(parse_control(r#"{"op":"subscribe","topics":["a","a","a","a","b"]}"#, &L).is_ok());
        let q: Vec<String> = (0..80_000).map(|i| format!("r{i}:1")).collect();
        assert!(parse_query(&format!("topics=a&resume={}", q.join(",")), &L).is_err());
    }

    #[test]
    fn control_messages_parse_or_say_why_not() {
        assert_eq!(
            parse_control(
                r#"{"op":"subscribe","topics":["a","b","a"],"resume":{"a":41}}"#,
                &L
            ),
            Ok(Control::Subscribe {
                topics: vec!["a".into(), "b".into()],
                resume: vec![("a".into(), Position::at(41))],
                tokens: vec![],
            })
        );
        assert_eq!(
            parse_control(
                r#"{"op":"subscribe","topics":["a"],"resume":{"a":{"seq":7,"epoch":"00ff"}}}"#,
                &L
            ),
            Ok(Control::Subscribe {
                topics: vec!["a".into()],
                resume: vec![(
                    "a".into(),
                    Position {
                        seq: 7,
                        epoch: Some(255)
                    }
                )],
                tokens: vec![],
            })
        );
        for bad in [
            r#"{"seq":7,"epoch":"xyz"}"#,
            r#"{"seq":7,"epoch":"00000000000000001"}"#,
            r#"{"seq":7,"epoch":5}"#,
            r#"{"epoch":"00"}"#,
            r#""7""#,
        ] {
            let text = format!(r#"{{"op":"subscribe","topics":["a"],"resume":{{"a":{bad}}}}}"#);
            assert_eq!(
                parse_control(&text, &L),
                Err(ControlError::BadField("resume")),
                "{bad}"
            );
        }
        assert_eq!(
            parse_control(r#"{"op":"unsubscribe","topics":["a"]}"#, &L),
            Ok(Control::Unsubscribe {
                topics: vec!["a".into()]
            })
        );
        assert_eq!(
            parse_control(r#"{"op":"publish","topic":"a","data":"hi"}"#, &L),
            Ok(Control::Publish {
                topic: "a".into(),
                data: "hi".into()
            })
        );
        assert_eq!(parse_control("[1]", &L), Err(ControlError::NotJson(None)));
        assert_eq!(
            parse_control("{", &L).map_err(|e| e.reason()),
            Err(
                "control_not_a_json_object (EOF while parsing an object at line 1 column 1)".into()
            )
        );
        assert_eq!(
            parse_control(r#"{"op":"dance"}"#, &L),
            Err(ControlError::UnknownOp)
        );
        assert_eq!(
            parse_control(r#"{"op":"subscribe","topics":"a"}"#, &L),
            Err(ControlError::BadField("topics"))
        );
        assert_eq!(
            parse_control(r#"{"op":"subscribe","topics":["a","b","c","d"]}"#, &L),
            Err(ControlError::Topic(TopicError::TooManyTopics { max: 3 }))
        );
        assert_eq!(
            parse_control(r#"{"op":"subscribe","topics":["a b"]}"#, &L),
            Err(ControlError::Topic(TopicError::BadByte { at: 1 }))
        );
        let e = reply_error(&ControlError::UnknownOp.reason(), None);
        assert!(e.contains("\"type\":\"error\"") && e.contains("unknown_op"));
        assert_eq!(
            reply_subscribed("a", 5, 0xabc, None, None),
            r#"{"epoch":"0000000000000abc","seq":5,"topic":"a","type":"subscribed"}"#
        );
        assert!(reply_subscribed("a", 5, 1, Some(false), None).contains(r#""recovered":false"#));
        // Written by hand, it reads as serde_json would have written it, whatever the name
        // and the id.
        let ids = [
            None,
            RequestId::int(RequestId::MAX_INT),
            RequestId::from_json(&"q\"\\\u{1}é".into()),
        ];
        for (topic, recovered) in [
            ("a.b:c/d", Some(true)),
            ("q\"\\\n\r\t\u{8}\u{c}\u{1}é", None),
        ] {
            for id in &ids {
                let mut v = serde_json::json!({
                    "type": "subscribed", "topic": topic, "seq": u64::MAX,
                    "epoch": format_epoch(u64::MAX),
                });
                if let Some(r) = recovered {
                    v["recovered"] = r.into();
                }
                if let Some(id) = id {
                    v["id"] = id.as_json().clone();
                }
                assert_eq!(
                    reply_subscribed(topic, u64::MAX, u64::MAX, recovered, id.as_ref()),
                    v.to_string()
                );
            }
        }
    }

    #[test]
    fn a_message_id_rides_on_the_request_and_its_refusals() {
        let id = |text: &str| parse_request(text, &L).id.map(|i| i.as_json().to_string());
        let ok = parse_request(r#"{"op":"publish","topic":"a","data":"x","id":7}"#, &L);
        assert_eq!(ok.id, RequestId::int(7));
        assert!(ok.control.is_ok());
        assert_eq!(
            id(r#"{"id":"p-1","op":"unsubscribe","topics":["a"]}"#),
            Some(r#""p-1""#.into())
        );
        // A refusal of the message itself still names it.
        for text in [
            r#"{"id":9,"op":"publish","topic":"a b","data":"x"}"#,
            r#"{"id":9,"op":"dance"}"#,
            r#"{"id":9,"op":"subscribe","topics":["a"],"topics":["b"]}"#,
        ] {
            let r = parse_request(text, &L);
            assert!(r.control.is_err(), "{text}");
            assert_eq!(r.id, RequestId::int(9), "{text}");
        }
        // An id that is not one is refused, and the refusal carries none.
        let long = "x".repeat(RequestId::MAX_LEN + 1);
        for bad in [
            "-1".to_string(),
            "1.5".into(),
            "9007199254740992".into(),
            r#""""#.into(),
            format!(r#""{long}""#),
            "null".into(),
            "[1]".into(),
            "{}".into(),
        ] {
            let text = format!(r#"{{"op":"unsubscribe","topics":["a"],"id":{bad}}}"#);
            let r = parse_request(&text, &L);
            assert_eq!(r.id, None, "{bad}");
            assert_eq!(
                r.control.map_err(|e| e.reason()),
                Err(
                    "bad_field id (an integer up to 9007199254740991 or a string of 1 to 64 \
                     bytes)"
                        .into()
                ),
                "{bad}"
            );
        }
        assert!(RequestId::from_json(&"x".repeat(RequestId::MAX_LEN).into()).is_some());
        // Two ids: which one a reply should carry is unknowable, so it carries none.
        let r = parse_request(r#"{"id":1,"id":2,"op":"unsubscribe","topics":["a"]}"#, &L);
        assert_eq!(r.id, None);
        assert_eq!(r.control, Err(ControlError::Duplicate("id".into())));
        // Replies carry it as given.
        let s = RequestId::from_json(&"r\"1".into());
        assert_eq!(
            reply_error("overloaded", s.as_ref()),
            r#"{"id":"r\"1","reason":"overloaded","type":"error"}"#
        );
        assert_eq!(
            reply_published("a", 3, 1, RequestId::int(0).as_ref()),
            r#"{"epoch":"0000000000000001","id":0,"seq":3,"topic":"a","type":"published"}"#
        );
        assert_eq!(reply_error("x", None), r#"{"reason":"x","type":"error"}"#);
    }

    #[test]
    fn a_field_named_twice_is_refused_not_read_one_way() {
        // serde_json's map would keep the last `op`: this would have been an unsubscribe.
        let twice = r#"{"op":"subscribe","op":"unsubscribe","topics":["a"]}"#;
        assert_eq!(
            parse_control(twice, &L),
            Err(ControlError::Duplicate("op".into()))
        );
        // An escaped name is the same name.
        let escaped = r#"{"op":"subscribe","topics":["a"],"topic\u0073":["b"]}"#;
        assert_eq!(
            parse_control(escaped, &L).map_err(|e| e.reason()),
            Err("duplicate_field topics".into())
        );
        for (text, field) in [
            (
                r#"{"op":"subscribe","topics":["a"],"resume":{"a":1,"a":9}}"#,
                "resume.a",
            ),
            (
                r#"{"op":"subscribe","topics":["a"],"tokens":{"a":"x","a":"y"}}"#,
                "tokens.a",
            ),
            (
                r#"{"op":"publish","topic":"a","data":"x","data":"y"}"#,
                "data",
            ),
        ] {
            assert_eq!(
                parse_control(text, &L),
                Err(ControlError::Duplicate(field.into())),
                "{text}"
            );
        }
        // A repeated name the protocol does not use is ignored, as any unknown field is.
        assert!(parse_control(r#"{"op":"unsubscribe","topics":["a"],"x":1,"x":2}"#, &L).is_ok());
        // A repeated name in `resume` is checked as a topic first: nothing unchecked is
        // quoted back.
        assert_eq!(
            parse_control(
                r#"{"op":"subscribe","topics":["a"],"resume":{"a b":1,"a b":2}}"#,
                &L
            ),
            Err(ControlError::Topic(TopicError::BadByte { at: 1 }))
        );
    }

    #[test]
    fn an_empty_topic_list_and_text_that_is_not_json_say_so() {
        for op in ["subscribe", "unsubscribe"] {
            let text = format!(r#"{{"op":"{op}","topics":[]}}"#);
            assert_eq!(
                parse_control(&text, &L).map_err(|e| e.reason()),
                Err("bad_field topics (empty: name at least one topic)".into())
            );
        }
        // Where the parser stopped, and why; never the client's own text.
        for (text, why) in [
            (r#"{"op":"subscribe","topics":["\ud800"]}"#, "hex escape"),
            (
                r#"{"op":"subscribe","topics":["a"]} x"#,
                "trailing characters",
            ),
            ("", "EOF while parsing a value"),
            (
                r#"{"op":"subscribe","topics":["a"],"resume":{"a":1e999}}"#,
                "number out of range",
            ),
        ] {
            let reason = parse_control(text, &L).unwrap_err().reason();
            assert!(
                reason.starts_with("control_not_a_json_object ("),
                "{reason}"
            );
            assert!(
                reason.contains(why) && reason.contains("column"),
                "{reason}"
            );
        }
        // JSON of another shape says only that.
        for text in ["null", "[]", r#""op""#] {
            assert_eq!(parse_control(text, &L), Err(ControlError::NotJson(None)));
        }
    }

    #[test]
    fn a_resume_point_or_token_for_a_topic_not_listed_is_refused() {
        for (text, reason) in [
            (
                r#"{"op":"subscribe","topics":["a"],"resume":{"b":4}}"#,
                "bad_field resume.b (not in topics)",
            ),
            (
                r#"{"op":"subscribe","topics":["a","b"],"resume":{"b":4,"c":{"seq":1}}}"#,
                "bad_field resume.c (not in topics)",
            ),
            (
                r#"{"op":"subscribe","topics":["vip"],"tokens":{"vpi":"a.b.c"}}"#,
                "bad_field tokens.vpi (not in topics)",
            ),
        ] {
            assert_eq!(
                parse_control(text, &L).map_err(|e| e.reason()),
                Err(reason.into())
            );
        }
        // A bad name is refused as a name before it could be quoted back.
        assert!(matches!(
            parse_control(
                r#"{"op":"subscribe","topics":["a"],"resume":{"a b":4}}"#,
                &L
            ),
            Err(ControlError::Topic(_))
        ));
        // Listed topics resume, and a handshake's cursor may still carry others (the SDK
        // sends every position it holds there).
        assert!(parse_control(
            r#"{"op":"subscribe","topics":["a","b"],"resume":{"b":4,"a":1}}"#,
            &L
        )
        .is_ok());
        assert_eq!(
            parse_query("topics=a&resume=a:1,b:4", &L).map(|c| match c {
                Control::Subscribe { resume, .. } => resume.len(),
                _ => 0,
            }),
            Ok(2)
        );
    }

    #[test]
    fn subscription_tokens_ride_on_a_subscribe() {
        let c = parse_control(
            r#"{"op":"subscribe","topics":["vip"],"tokens":{"vip":"a.b.c"}}"#,
            &L,
        );
        assert!(matches!(c, Ok(Control::Subscribe { ref tokens, .. })
            if tokens == &[("vip".to_string(), "a.b.c".to_string())]));
        for bad in [r#""x""#, r#"{"vip":7}"#] {
            let text = format!(r#"{{"op":"subscribe","topics":["vip"],"tokens":{bad}}}"#);
            assert_eq!(
                parse_control(&text, &L),
                Err(ControlError::BadField("tokens"))
            );
        }
    }

    #[test]
    fn handshake_query_subscribes_and_resumes() {
        assert_eq!(
            parse_query("x=1&topics=a,b&resume=a:41,b:3@0000000000000abc", &L),
            Ok(Control::Subscribe {
                topics: vec!["a".into(), "b".into()],
                resume: vec![
                    ("a".into(), Position::at(41)),
                    (
                        "b".into(),
                        Position {
                            seq: 3,
                            epoch: Some(0xabc)
                        }
                    )
                ],
                tokens: vec![],
            })
        );
        assert_eq!(
            parse_query("topics=a&resume=a:1@", &L),
            Err(ControlError::BadField("resume"))
        );
        assert_eq!(
            parse_query("", &L),
            Ok(Control::Subscribe {
                topics: vec![],
                resume: vec![],
                tokens: vec![],
            })
        );
        assert_eq!(
            parse_query("resume=a", &L),
            Err(ControlError::BadField("resume"))
        );
        assert_eq!(
            parse_query("topics=a,b,c,d", &L),
            Err(ControlError::Topic(TopicError::TooManyTopics { max: 3 }))
        );
    }
}
