//! The Origin allowlist (`--allowed-origins`): which web pages may open connections.
//!
//! A browser sends `Origin` with every WebSocket, EventSource and cross-site request; a
//! page on another site that opens a connection to Holdfast rides on the user's cookies and
//! network position unless the server checks it. Non-browser clients send no Origin and are
//! not affected (they are not the confused deputy this guards against).

/// Which origins may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Any (the default: no check).
    Any,
    /// Only these: `https://app.example.com`, `https://*.example.com` (any subdomain),
    /// `http://localhost:3000`; compared without regard to case.
    List(Vec<String>),
}

impl Origins {
    /// Parse `*` or a comma-separated list. An entry that is not `scheme://host[:port]`
    /// is an error (a path or a trailing slash would never match a browser's Origin).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" || s.is_empty() {
            return Ok(Self::Any);
        }
        let mut list = Vec::new();
        for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .ok_or_else(|| format!("origin `{o}` must start with https:// or http://"))?;
            if rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "origin `{o}` must be scheme://host[:port], without a path or trailing slash"
                ));
            }
            list.push(o.to_ascii_lowercase());
        }
        Ok(Self::List(list))
    }

    /// Whether a request with this Origin header (None: no header) may connect.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let (Self::List(list), Some(origin)) = (self, origin) else {
            return true;
        };
        let origin = origin.to_ascii_lowercase();
        list.iter()
            .any(|allowed| match allowed.split_once("://*.") {
                Some((scheme, domain)) => origin
                    .strip_prefix(scheme)
                    .and_then(|r| r.strip_prefix("://"))
                    .and_then(|host| host.strip_suffix(domain))
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => *allowed == origin,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_origins_match_and_nothing_else_does() {
        let o = Origins::parse("https://app.example.com, https://*.example.org").unwrap();
        assert!(o.allows(None), "non-browser clients send no Origin");
        assert!(o.allows(Some("https://app.example.com")));
        assert!(o.allows(Some("HTTPS://APP.example.com")));
        assert!(o.allows(Some("https://a.example.org")));
        assert!(o.allows(Some("https://a.b.example.org")));
        assert!(
            !o.allows(Some("https://example.org")),
            "the apex is not a subdomain"
        );
        assert!(!o.allows(Some("https://evilexample.org")));
        assert!(!o.allows(Some("http://app.example.com")), "scheme matters");
        assert!(
            !o.allows(Some("https://app.example.com:8443")),
            "port matters"
        );
        assert!(!o.allows(Some("https://app.example.com.evil.net")));
        assert!(!o.allows(Some("null")));
        assert_eq!(Origins::parse("*").unwrap(), Origins::Any);
        assert!(Origins::parse("app.example.com").is_err());
        assert!(Origins::parse("https://app.example.com/").is_err());
    }
}
