//! What to connect to and from: the URL, the upgrade request sent on every connection, the
//! accept key expected back, and the source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use std::sync::Arc;

use holdfast::ws::client;

/// The key every connection sends: valid base64 of 16 bytes. The server must not rely on keys
/// being unique, and one key lets every connection share one request buffer.
pub const KEY: &str = "aG9sZGZhc3QtbG9hZGdlbg==";

/// A parsed target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// wss://: the TLS configuration and the name the certificate must carry.
    pub tls: Option<TlsTarget>,
    /// The full HTTP upgrade request (shared by every connection's send).
    pub request: Arc<[u8]>,
    /// `Sec-WebSocket-Accept` the server must answer with.
    pub accept: [u8; 28],
    /// An event stream (`http://…/sse?…`): a plain GET answered 200 `text/event-stream`,
    /// then events, instead of an upgrade and frames.
    pub sse: bool,
    /// Long-poll (`http://…/poll?…`): each answer is JSON with a `Content-Length`, and the
    /// client polls again at once from the answer's cursor — on the same connection when
    /// the answer keeps it (`Connection: keep-alive`), else on a new one.
    pub poll: bool,
}

impl Target {
    /// Long-poll: when `reconnect`, every poll asks for its connection to close after the
    /// answer (`Connection: close`), so each poll is a new connection.
    pub fn reconnecting_polls(mut self, reconnect: bool) -> Self {
        if self.poll && reconnect {
            let r = &self.request[..];
            let mut v = r[..r.len() - 2].to_vec();
            v.extend_from_slice(b"Connection: close\r\n\r\n");
            self.request = v.into();
        }
        self
    }

    /// The request of a poll from `cursor` (the target's request with `&cursor=` added).
    pub fn poll_request(&self, cursor: &str) -> Vec<u8> {
        let r = &self.request[..];
        let at = r
            .windows(11)
            .position(|w| w == b" HTTP/1.1\r\n")
            .unwrap_or(0);
        let mut v = Vec::with_capacity(r.len() + cursor.len() + 8);
        v.extend_from_slice(&r[..at]);
        v.extend_from_slice(if r[..at].contains(&b'?') {
            b"&cursor="
        } else {
            b"?cursor="
        });
        v.extend_from_slice(cursor.as_bytes());
        v.extend_from_slice(&r[at..]);
        v
    }
}

/// TLS for one target.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// Shared by every connection (and the session-ticket pool with them): `fresh` for
    /// first connections, `returning` for reconnects.
    pub configs: holdfast::tls::ClientConfigs,
    /// The host of the URL: what the certificate must name (and the SNI sent).
    pub name: holdfast::tls::config::ServerName<'static>,
}

/// Parse `ws://host:port/path?query` or `wss://…` (which needs `tls`, the client
/// configuration).
pub fn parse_url(url: &str, tls: Option<&holdfast::tls::ClientConfigs>) -> Result<Target, String> {
    let mut sse = false;
    let mut poll = false;
    let (secure, rest) = match url.split_once("://") {
        Some(("ws", rest)) => (false, rest),
        Some(("wss", rest)) => (true, rest),
        Some(("http", rest)) if rest.contains("/sse") => {
            sse = true;
            (false, rest)
        }
        Some(("http", rest)) if rest.contains("/poll") => {
            poll = true;
            (false, rest)
        }
        Some((scheme, _)) => {
            return Err(format!(
                "{url}: unsupported scheme `{scheme}://`; use ws://HOST:PORT/PATH, wss://, \
                 http://HOST:PORT/sse for server-sent events or http://HOST:PORT/poll for \
                 long-poll"
            ))
        }
        None => {
            return Err(format!(
                "{url}: the scheme is missing; write ws://{url}{}",
                if url.contains('/') { "" } else { "/echo" }
            ))
        }
    };
    if secure && tls.is_none() {
        return Err(format!("{url}: wss:// needs a TLS configuration"));
    }
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport.contains(':') {
        hostport.to_string()
    } else if secure {
        format!("{hostport}:443")
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: {with_port} has no address"))?;
    let req = client::request(hostport, path, KEY, &[("User-Agent", "holdfast-loadgen")]);
    let tls = match (secure, tls) {
        (false, _) => None,
        (true, None) => return Err(format!("{url}: wss:// needs a TLS configuration")),
        (true, Some(config)) => Some(TlsTarget {
            configs: config.clone(),
            name: holdfast::tls::config::server_name_of(hostport)?,
        }),
    };
    let request: Arc<[u8]> = if poll {
        format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: holdfast-loadgen\r\n\r\n")
            .into_bytes()
            .into()
    } else if sse {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: text/event-stream\r\n\
             User-Agent: holdfast-loadgen\r\n\r\n"
        )
        .into_bytes()
        .into()
    } else {
        req.bytes.into()
    };
    Ok(Target {
        addr,
        tls,
        request,
        accept: req.accept,
        sse,
        poll,
    })
}

/// Parse source addresses: `a.b.c.d`, `a.b.c.d-a.b.c.e` ranges, comma-separated.
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("bad address {a:?} in {part:?}"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("bad address {b:?} in {part:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1 << 20 {
                return Err(format!("bad range {part:?}"));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(part.parse().map_err(|_| format!("bad address {part:?}"))?);
        }
    }
    if out.is_empty() {
        return Err("no source addresses".into());
    }
    Ok(out)
}

/// The default sources: 127.0.0.2–127.0.0.254 for a loopback target (≈ 253 × 32k ports),
/// else the kernel's choice (0.0.0.0).
pub fn default_sources(target: &SocketAddr) -> Vec<IpAddr> {
    if target.ip().is_loopback() && target.is_ipv4() {
        (2..=254u8)
            .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d)))
            .collect()
    } else if target.is_ipv4() {
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
    } else {
        vec![IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_scheme_says_so() {
        let e = parse_url("127.0.0.1:8080", None).unwrap_err();
        assert!(
            e.contains("scheme is missing") && e.contains("ws://127.0.0.1:8080/echo"),
            "{e}"
        );
        assert!(parse_url("http://x:1/", None)
            .unwrap_err()
            .contains("unsupported scheme `http://`"));
        assert!(parse_url("wss://x:1/", None)
            .unwrap_err()
            .contains("needs a TLS configuration"));
        let cfg = holdfast::tls::client_configs(&holdfast::tls::Trust::Insecure, true).unwrap();
        let t = parse_url("wss://localhost/echo", Some(&cfg)).unwrap();
        assert_eq!(t.addr.port(), 443);
        assert_eq!(
            t.tls.unwrap().name,
            holdfast::tls::config::server_name("localhost").unwrap()
        );
    }

    #[test]
    fn urls_and_sources() {
        let t = parse_url("ws://127.0.0.1:8080/echo?x=1", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        let req = String::from_utf8(t.request.to_vec()).unwrap();
        assert!(req.starts_with("GET /echo?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(parse_url("wss://x", None).is_err());
        let p = parse_url("http://127.0.0.1:1/poll?topics=a", None).unwrap();
        assert!(p.poll && !p.sse);
        let r = p.poll_request("a:3@00ff");
        assert!(
            r.starts_with(b"GET /poll?topics=a&cursor=a:3@00ff HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")
        );
        assert!(
            !r.windows(10).any(|w| w == b"Connection"),
            "kept by default"
        );
        let once = p.reconnecting_polls(true).poll_request("a:3@00ff");
        assert!(
            once.ends_with(b"\r\nConnection: close\r\n\r\n") && once.starts_with(b"GET /poll?"),
            "{}",
            String::from_utf8_lossy(&once)
        );
        assert_eq!(
            parse_sources("127.0.0.2-127.0.0.4,10.0.0.1").unwrap().len(),
            4
        );
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert_eq!(default_sources(&"127.0.0.1:1".parse().unwrap()).len(), 253);
    }
}
