//! Pub/sub control messages and handshake queries — text any client sends — must never
//! panic, and whatever they accept keeps the limits: topic names within the length, no more
//! topics than allowed, no duplicates (in `resume` and `tokens` either), and a control
//! message names at least one topic, with resume points and tokens only for topics it names. Tokens in any shape must be refused or verified
//! without a panic.
#![no_main]

use holdfast::auth::{Auth, AuthConfig};
use holdfast::pubsub::{parse_query, parse_request, reply_error, Control, RequestId, TopicLimits};
use libfuzzer_sys::fuzz_target;

fn check(c: &Control, limits: &TopicLimits, control: bool) {
    let topics: Vec<&String> = match c {
        Control::Subscribe {
            topics,
            resume,
            tokens,
        } => {
            assert!(resume.len() <= limits.max_per_connection);
            assert!(tokens.len() <= limits.max_per_connection);
            if control {
                let mut named = std::collections::HashSet::new();
                assert!(resume.iter().all(|(t, _)| named.insert(t)), "{resume:?}");
                named.clear();
                assert!(tokens.iter().all(|(t, _)| named.insert(t)), "{tokens:?}");
                let listed = |t: &String| topics.contains(t);
                assert!(resume.iter().all(|(t, _)| listed(t)), "{resume:?}");
                assert!(tokens.iter().all(|(t, _)| listed(t)), "{tokens:?}");
            }
            topics.iter().collect()
        }
        Control::Unsubscribe { topics } => topics.iter().collect(),
        Control::Publish { topic, .. } => vec![topic],
        Control::Refresh { .. } => vec![],
    };
    assert!(topics.len() <= limits.max_per_connection);
    assert!(!control || matches!(c, Control::Refresh { .. }) || !topics.is_empty());
    let mut seen = std::collections::HashSet::new();
    for t in topics {
        assert!(!t.is_empty() && t.len() <= limits.max_len, "{t:?}");
        assert!(seen.insert(t), "duplicate {t:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let limits = TopicLimits {
        max_len: 1 + usize::from(sel % 32),
        max_per_connection: 1 + usize::from(sel / 32),
    };
    match sel % 3 {
        0 => {
            let r = parse_request(text, &limits);
            if let Ok(c) = &r.control {
                check(c, &limits, true);
            }
            if let Some(id) = &r.id {
                let v = id.as_json();
                match v {
                    serde_json::Value::Number(n) => {
                        assert!(n.as_u64().is_some_and(|n| n <= RequestId::MAX_INT), "{v}")
                    }
                    serde_json::Value::String(s) => {
                        assert!((1..=RequestId::MAX_LEN).contains(&s.len()), "{v}")
                    }
                    _ => panic!("id {v}"),
                }
                let back: serde_json::Value =
                    serde_json::from_str(&reply_error("x", Some(id))).unwrap();
                assert_eq!(&back["id"], v);
            }
        }
        1 => {
            if let Ok(c) = parse_query(text, &limits) {
                check(&c, &limits, false);
            }
        }
        _ => {
            let auth = Auth::new(&AuthConfig {
                hmac_secret: Some(vec![7; 32]),
                ..AuthConfig::default()
            })
            .unwrap();
            let _ = auth.verify(text, 1_800_000_000);
        }
    }
});
