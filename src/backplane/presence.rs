//! Presence: who is subscribed to a presence topic (one whose name starts with
//! `--presence-prefix`), as members — one per subscribed connection — with cheap counts
//! (connections, unique users). The memory engine keeps the [`Table`] here; with a broker
//! the same members live in Redis (`hf:{T}:p`, refreshed by their node every third of
//! `--presence-ttl`, so a node that dies without a goodbye drops out within the TTL).

use std::collections::HashMap;
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
    /// The members listed (when asked for: at most the number asked, sorted by node and
    /// connection).
    pub members: Vec<Member>,
    /// Whether members were asked for and some are not listed.
    pub truncated: bool,
}

impl PresenceReport {
    /// A report of `connections` and `users` listing `members` (at most `list` of them,
    /// sorted; 0: none).
    pub fn new(connections: u64, users: u64, mut members: Vec<Member>, list: usize) -> Self {
        members.sort_by(|a, b| (&a.node, &a.conn).cmp(&(&b.node, &b.conn)));
        members.truncate(list);
        Self {
            connections,
            users,
            truncated: list > 0 && (members.len() as u64) < connections,
            members,
        }
    }
}

/// One topic's members in the memory engine, with its users counted as they come and go,
/// so a query costs what it lists, not what the topic holds.
#[derive(Debug, Default)]
struct Members {
    by_key: HashMap<String, Member>,
    /// Connections per user.
    users: HashMap<Arc<str>, u32>,
}

impl Members {
    fn count(&mut self, user: Option<&Arc<str>>, up: bool) {
        let Some(u) = user else { return };
        if up {
            *self.users.entry(u.clone()).or_default() += 1;
        } else if let Some(n) = self.users.get_mut(u) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(u);
            }
        }
    }
}

/// The memory engine's members, per topic.
#[derive(Debug, Default)]
pub struct Table {
    topics: HashMap<Arc<str>, Members>,
}

impl Table {
    /// Add `m` to `topic`; true if it was not there.
    pub fn join(&mut self, topic: &Arc<str>, m: Member) -> bool {
        let t = self.topics.entry(topic.clone()).or_default();
        t.count(m.user.as_ref(), true);
        let old = t.by_key.insert(m.key(), m);
        if let Some(old) = &old {
            t.count(old.user.as_ref(), false);
        }
        old.is_none()
    }

    /// Remove member `key` from `topic`; true if it was there.
    pub fn leave(&mut self, topic: &str, key: &str) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        let gone = t.by_key.remove(key);
        if let Some(m) = &gone {
            t.count(m.user.as_ref(), false);
        }
        if t.by_key.is_empty() {
            self.topics.remove(topic);
        }
        gone.is_some()
    }

    /// Who is on `topic`, listing at most `list` members (which ones, when it has more, is
    /// the table's choice).
    pub fn report(&self, topic: &str, list: usize) -> PresenceReport {
        let Some(t) = self.topics.get(topic) else {
            return PresenceReport::new(0, 0, Vec::new(), list);
        };
        let members = t.by_key.values().take(list).cloned().collect();
        PresenceReport::new(t.by_key.len() as u64, t.users.len() as u64, members, list)
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

/// A presence report as JSON: `{"topic","connections","users","members"}`, with
/// `"truncated": true` when members were asked for and not all are listed (the counts stay
/// exact).
pub fn report_json(topic: &str, r: &PresenceReport) -> String {
    let mut v = serde_json::json!({
        "topic": topic,
        "connections": r.connections,
        "users": r.users,
        "members": r.members,
    });
    if r.truncated {
        v["truncated"] = true.into();
    }
    v.to_string()
}

/// Members a presence answer on the data port lists at most (a client asks often). A query
/// costs what it lists, at the broker and here, not what the topic holds: until the
/// sixty-first sitting every query fetched every member (`HGETALL`), and a client asking
/// about a topic of 200,000 kept its node's backplane thread for five seconds a time.
pub const CLIENT_MAX_MEMBERS: usize = 1000;

/// Members the admin API lists at most (the operator's tool; a reply of about 15 MB).
pub const ADMIN_MAX_MEMBERS: usize = 100_000;

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
        let r = t.report(&topic, 10);
        assert_eq!((r.connections, r.users, r.members.len()), (3, 1, 3));
        assert!(!r.truncated);
        let keys: Vec<String> = r.members.iter().map(Member::key).collect();
        assert_eq!(keys, ["a/1", "b/7", "b/8"], "sorted by node and connection");
        let counted = t.report(&topic, 0);
        assert!(counted.members.is_empty() && !counted.truncated);
        // Listing fewer than the topic holds says so; the counts stay exact.
        let two = t.report(&topic, 2);
        assert_eq!((two.connections, two.users, two.members.len()), (3, 1, 2));
        assert!(two.truncated && report_json("t", &two).contains(r#""truncated":true"#));
        // Users are counted as they come and go, through a refresh that names another user.
        assert!(!t.join(&topic, m("b", "8", Some("cat"))));
        assert_eq!(t.report(&topic, 0).users, 2);
        assert!(t.leave(&topic, "a/1"));
        assert_eq!(t.report(&topic, 0).users, 2, "ann is still on b/7");
        assert!(t.leave(&topic, "b/7"));
        assert!(!t.leave(&topic, "b/7"));
        assert_eq!(
            (t.report(&topic, 0).connections, t.report(&topic, 0).users),
            (1, 1)
        );
        assert!(t.leave(&topic, "b/8"));
        assert_eq!(t.report(&topic, 5), PresenceReport::new(0, 0, vec![], 5));
        let one = m("n1", "ff", Some("bob"));
        let rec = format!("bob\n{}", one.info());
        assert_eq!(Member::from_record(rec.as_bytes()), Some(one));
        assert_eq!(Member::from_record(b"no newline"), None);
    }
}
