//! Slow-consumer policy per topic: what happens when a subscriber's outbound queue would
//! cross the per-connection cap.

use std::fmt;
use std::str::FromStr;

/// What to do with a subscriber that cannot keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Drop its oldest undelivered messages of the topic and queue a `gap` frame naming
    /// them, so the client can resume; the connection stays.
    Drop,
    /// Close it with 1008.
    Close,
}

impl FromStr for SlowPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "close" => Ok(Self::Close),
            _ => Err(format!(
                "unknown slow-consumer policy {s:?} (drop or close)"
            )),
        }
    }
}

impl fmt::Display for SlowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Drop => "drop",
            Self::Close => "close",
        })
    }
}

/// The default policy and per-topic overrides: `name=policy` (exact) or `prefix*=policy`;
/// an exact rule wins over prefixes, a longer prefix over a shorter one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTable {
    default: SlowPolicy,
    rules: Vec<(String, bool, SlowPolicy)>,
}

impl PolicyTable {
    /// Parse `rules` (comma-separated `pattern=policy`; empty for none).
    pub fn parse(default: SlowPolicy, rules: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for rule in rules.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (pat, pol) = rule
                .split_once('=')
                .ok_or_else(|| format!("topic policy {rule:?}: expected pattern=drop|close"))?;
            let pol: SlowPolicy = pol.trim().parse()?;
            let pat = pat.trim();
            let (name, prefix) = match pat.strip_suffix('*') {
                Some(p) => (p, true),
                None => (pat, false),
            };
            if name.is_empty() && !prefix {
                return Err(format!("topic policy {rule:?}: empty pattern"));
            }
            out.push((name.to_string(), prefix, pol));
        }
        Ok(Self {
            default,
            rules: out,
        })
    }

    /// The policy for `topic`.
    pub fn for_topic(&self, topic: &str) -> SlowPolicy {
        if let Some((_, _, p)) = self.rules.iter().find(|(n, pre, _)| !pre && n == topic) {
            return *p;
        }
        self.rules
            .iter()
            .filter(|(n, pre, _)| *pre && topic.starts_with(n.as_str()))
            .max_by_key(|(n, _, _)| n.len())
            .map_or(self.default, |(_, _, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let t = PolicyTable::parse(
            SlowPolicy::Drop,
            "prices.*=close, prices.fx.*=drop,chat=close",
        )
        .unwrap();
        assert_eq!(t.for_topic("news"), SlowPolicy::Drop);
        assert_eq!(t.for_topic("chat"), SlowPolicy::Close);
        assert_eq!(t.for_topic("chat2"), SlowPolicy::Drop);
        assert_eq!(t.for_topic("prices.eq"), SlowPolicy::Close);
        assert_eq!(t.for_topic("prices.fx.eur"), SlowPolicy::Drop);
        assert!(PolicyTable::parse(SlowPolicy::Drop, "a=maybe")
            .unwrap_err()
            .contains("drop or close"));
        assert!(PolicyTable::parse(SlowPolicy::Drop, "a").is_err());
        assert_eq!(
            PolicyTable::parse(SlowPolicy::Close, "")
                .unwrap()
                .for_topic("x"),
            SlowPolicy::Close
        );
    }
}
