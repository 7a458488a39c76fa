//! Presence: who is subscribed to a presence topic (one whose name starts with
//! `--presence-prefix`), as members — one per subscribed connection — with cheap counts
//! (connections, unique users). The memory engine keeps the [`Table`] here; with a broker
//! the same members live in Redis (`hf:{T}:p`, refreshed by their node every third of
//! `--presence-ttl`, so a node that dies without a goodbye drops out within the TTL).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

/// One subscribed connection of a presence topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The node that holds it.
    pub node: Arc<str>,
    /// Its connection id on that node (hex).
    pub conn: String,
    /// Its user, when it authenticated with one.
    pub user: Option<Arc<str>>,
    /// What the client said about itself (`client=` on the upgrade), if anything.
    pub client: Option<Arc<str>>,
    /// When it joined (Unix seconds).
    pub since: u64,
}

impl Member {
    /// Its key: `node/conn`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.node, self.conn)
    }

    /// Its record in the broker (the user is kept apart, for the unique-user count).
    pub fn info(&self) -> String {
        serde_json::json!({"node": self.node, "conn": self.conn, "client": self.client,
            "since": self.since})
        .to_string()
    }

    /// A member from its record in the broker: `user\ninfo`.
    pub fn from_record(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let (user, info) = text.split_once('\n')?;
        let v: serde_json::Value = serde_json::from_str(info).ok()?;
        Some(Self {
            node: v["node"].as_str()?.into(),
            conn: v["conn"].as_str()?.to_string(),
            user: Some(user).filter(|u| !u.is_empty()).map(Into::into),
            client: v["client"].as_str().map(Into::into),
            since: v["since"].as_u64().unwrap_or(0),
        })
    }
}

/// A topic's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceReport {
    /// Subscribed connections.
    pub connections: u64,
    /// Distinct users among them.
    pub users: u64,
    /// The members, when asked for.
    pub members: Vec<Member>,
}

/// The memory engine's members, per topic.
#[derive(Debug, Default)]
pub struct Table {
    topics: HashMap<Arc<str>, HashMap<String, Member>>,
}

impl Table {
    /// Add `m` to `topic`; true if it was not there.
    pub fn join(&mut self, topic: &Arc<str>, m: Member) -> bool {
        self.topics
            .entry(topic.clone())
            .or_default()
            .insert(m.key(), m)
            .is_none()
    }

    /// Remove member `key` from `topic`; true if it was there.
    pub fn leave(&mut self, topic: &str, key: &str) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        let gone = t.remove(key).is_some();
        if t.is_empty() {
            self.topics.remove(topic);
        }
        gone
    }

    /// Who is on `topic`.
    pub fn report(&self, topic: &str, list: bool) -> PresenceReport {
        let members: Vec<&Member> = self
            .topics
            .get(topic)
            .map_or(Vec::new(), |t| t.values().collect());
        report(members.into_iter().cloned().collect(), list)
    }
}

/// A report from members, counted.
pub fn report(mut members: Vec<Member>, list: bool) -> PresenceReport {
    let users: HashSet<&str> = members.iter().filter_map(|m| m.user.as_deref()).collect();
    let (connections, users) = (members.len() as u64, users.len() as u64);
    members.sort_by(|a, b| (&a.node, &a.conn).cmp(&(&b.node, &b.conn)));
    if !list {
        members.clear();
    }
    PresenceReport {
        connections,
        users,
        members,
    }
}

/// The frame telling subscribers of `topic` that `m` joined or left.
pub fn event_frame(topic: &str, m: &Member, join: bool) -> Arc<[u8]> {
    let body = serde_json::json!({"type": "presence", "topic": topic,
        "event": if join { "join" } else { "leave" }, "member": m})
    .to_string();
    text_frame(&body)
}

/// A presence event from another node (`p <frame>` on the topic's member channel), checked
/// as everything from the broker is, since anyone who can publish there can send one: one
/// whole unmasked text frame of at most `max` bytes, whose JSON is a presence event for this
/// `topic` with a member of the shape [`event_frame`] writes. The frame that goes on is
/// built here from the parsed member, never the bytes received: those went to every
/// subscriber's socket as they were, so a neighbour could send clients a Close frame,
/// a broken header, or (to an event stream) a raw CR that a browser takes for a line end.
pub fn event_from_broker(topic: &str, frame: &[u8], max: usize) -> Option<Arc<[u8]>> {
    #[derive(serde::Deserialize)]
    struct Event {
        r#type: String,
        topic: String,
        event: String,
        member: Incoming,
    }
    #[derive(serde::Deserialize)]
    struct Incoming {
        node: String,
        conn: String,
        user: Option<String>,
        client: Option<String>,
        since: u64,
    }
    if frame.len() > max {
        return None;
    }
    let payload = whole_text_frame(frame)?;
    let e: Event = serde_json::from_slice(payload).ok()?;
    let join = match e.event.as_str() {
        "join" => true,
        "leave" => false,
        _ => return None,
    };
    if e.r#type != "presence" || e.topic != topic {
        return None;
    }
    let m = Member {
        node: e.member.node.into(),
        conn: e.member.conn,
        user: e.member.user.map(Into::into),
        client: e.member.client.map(Into::into),
        since: e.member.since,
    };
    Some(event_frame(topic, &m, join))
}

/// The payload of `frame` if it is exactly one final, unmasked text frame.
fn whole_text_frame(frame: &[u8]) -> Option<&[u8]> {
    let (&b0, &b1) = (frame.first()?, frame.get(1)?);
    if b0 != 0x81 || b1 & 0x80 != 0 {
        return None;
    }
    let (header, len) = match b1 & 0x7f {
        126 => (
            4,
            usize::from(u16::from_be_bytes(frame.get(2..4)?.try_into().ok()?)),
        ),
        127 => {
            let n = u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?);
            (10, usize::try_from(n).ok()?)
        }
        n => (2, usize::from(n)),
    };
    (frame.len().checked_sub(header)? == len).then(|| &frame[header..])
}

/// A presence report as JSON: `{"topic","connections","users","members"}`, listing at most
/// `max_members` (then `"truncated": true`; the counts stay exact).
pub fn report_json(topic: &str, r: &PresenceReport, max_members: usize) -> String {
    let mut v = serde_json::json!({
        "topic": topic,
        "connections": r.connections,
        "users": r.users,
        "members": r.members.iter().take(max_members).collect::<Vec<_>>(),
    });
    if r.members.len() > max_members {
        v["truncated"] = true.into();
    }
    v.to_string()
}

/// Members a presence answer on the data port lists at most (a client asks often; the
/// admin API lists them all).
pub const CLIENT_MAX_MEMBERS: usize = 1000;

/// A whole unmasked text frame carrying `text`.
pub fn text_frame(text: &str) -> Arc<[u8]> {
    let mut frame = Vec::new();
    let (op, fin) = (crate::ws::OpCode::Text, true);
    crate::ws::frame::encode_frame(&mut frame, fin, op, None, text.as_bytes());
    frame.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(node: &str, conn: &str, user: Option<&str>) -> Member {
        Member {
            node: node.into(),
            conn: conn.into(),
            user: user.map(Into::into),
            client: None,
            since: 1,
        }
    }

    #[test]
    fn a_presence_event_from_the_broker_is_rebuilt_from_its_parsed_member_or_dropped() {
        let t = "presence:room";
        let real = event_frame(t, &m("B", "1f", Some("bob")), true);
        assert_eq!(
            event_from_broker(t, &real, 1 << 20).as_deref(),
            Some(&real[..])
        );
        let leave = event_frame(t, &m("B", "1f", None), false);
        assert_eq!(
            event_from_broker(t, &leave, 1 << 20).as_deref(),
            Some(&leave[..])
        );
        // JSON whitespace may hold a raw line break; what goes on is compact.
        let spaced = text_frame(
            r#"{"type":"presence",
"topic":"presence:room","event":"join","member":{"node":"B","conn":"1","user":null,"client":null,"since":1}}"#,
        );
        let rebuilt = event_from_broker(t, &spaced, 1 << 20).unwrap();
        let payload = whole_text_frame(&rebuilt).unwrap();
        assert!(!payload.contains(&b'\r') && !payload.contains(&b'\n'));
        let mut masked = real.to_vec();
        masked[1] |= 0x80;
        let mut longer = real.to_vec();
        longer.push(b' ');
        for (what, bad) in [
            ("a close frame", vec![0x88, 0x00]),
            ("not a frame", b"garbage".to_vec()),
            ("masked", masked),
            ("a byte after the frame", longer),
            (
                "another topic",
                event_frame("presence:other", &m("B", "1", None), true).to_vec(),
            ),
            (
                "not presence",
                text_frame(r#"{"type":"message","topic":"presence:room"}"#).to_vec(),
            ),
            ("too large", real.to_vec()),
        ] {
            let max = if what == "too large" {
                real.len() - 1
            } else {
                1 << 20
            };
            assert_eq!(event_from_broker(t, &bad, max), None, "{what}");
        }
    }

    #[test]
    fn counts_connections_and_unique_users_and_records_round_trip() {
        let mut t = Table::default();
        let topic: Arc<str> = "presence:room".into();
        assert!(t.join(&topic, m("a", "1", Some("ann"))));
        assert!(t.join(&topic, m("b", "7", Some("ann"))));
        assert!(t.join(&topic, m("b", "8", None)));
        assert!(
            !t.join(&topic, m("b", "8", None)),
            "a refresh is not a join"
        );
        let r = t.report(&topic, true);
        assert_eq!((r.connections, r.users, r.members.len()), (3, 1, 3));
        assert!(t.report(&topic, false).members.is_empty());
        assert!(t.leave(&topic, "b/7"));
        assert!(!t.leave(&topic, "b/7"));
        let one = m("n1", "ff", Some("bob"));
        let rec = format!("bob\n{}", one.info());
        assert_eq!(Member::from_record(rec.as_bytes()), Some(one));
        assert_eq!(Member::from_record(b"no newline"), None);
    }
}
