//! Identity and authorization at the edge: signed connection tokens (JWT) checked at the
//! handshake, the channels a connection may subscribe to and publish on, the Origin
//! allowlist and the per-user connection cap.
//!
//! # Tokens
//! A JWT signed with HMAC (`--auth-hmac-secret-file`: HS256/384/512) or a public key
//! (`--auth-public-key-file`, PEM, repeatable for rotation: RSA → RS*/PS*, EC → ES256/384,
//! Ed25519 → EdDSA). Claims:
//! ```json
//! {"sub": "alice", "exp": 1767225600, "nbf": 1767222000, "aud": "holdfast",
//!  "channels": {"subscribe": ["news.*", "user.alice"], "publish": ["chat.*"]}}
//! ```
//! `exp` is required and enforced for the connection's whole life (it is closed with
//! [`TOKEN_EXPIRED`] unless it refreshes first); `nbf`, `aud` (with `--auth-audience`)
//! and `iss` (with `--auth-issuer`) are checked when present or configured. A channel
//! pattern is a name, `prefix*`, or `*`.
//!
//! # Anonymous connections
//! With `--auth-anonymous PATTERNS`, a connection without a token is admitted and may
//! subscribe to those patterns only, and publish nowhere (public feeds, benchmarks). Without
//! any key configured, authentication is off: every connection may do everything.

pub mod origin;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub use origin::Origins;

/// Close code for a connection whose token expired without a refresh (4000–4999: private
/// use; 4401 mirrors HTTP 401).
pub const TOKEN_EXPIRED: u16 = 4401;

/// The close code of a connection whose user was disconnected by the operator
/// (`POST /users/disconnect`, on any node): do not reconnect with the same token.
pub const DISCONNECTED: u16 = 4403;

/// The subprotocol a browser offers beside its token (`holdfast.bearer.<token>`); the
/// server selects it so the browser accepts the upgrade.
pub const PROTOCOL: &str = "holdfast.v1";
/// The prefix of the subprotocol that carries a token.
pub const BEARER_PROTOCOL: &str = "holdfast.bearer.";

/// Whether channel pattern `pattern` (a name, a `prefix*`, or `*`) matches `name`, without
/// parsing it into a [`Pattern`] (grants are checked straight from their text).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A channel pattern: a name, a `prefix*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Exactly this name.
    Exact(Box<str>),
    /// Names that start with this (`*` alone is the empty prefix).
    Prefix(Box<str>),
}

impl Pattern {
    /// Parse `news.*`, `user.alice` or `*`.
    pub fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(p) => Self::Prefix(p.into()),
            None => Self::Exact(s.into()),
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(e) => &**e == name,
            Self::Prefix(p) => name.starts_with(&**p),
        }
    }
}

/// Parse a comma-separated pattern list (empty entries ignored).
pub fn patterns(list: &str) -> Vec<Pattern> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Pattern::parse)
        .collect()
}

/// What a connection may do: its subscribe and publish patterns in one shared string
/// (`s<TAB>news.*`, `p<TAB>chat.*`, one per line), so an identity costs one pointer for its
/// grants, and connections with the same grants share one copy (see
/// `services::identity`, which interns them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grants {
    text: Arc<str>,
}

impl Grants {
    /// Grants from subscribe and publish pattern lists (`name`, `prefix*`, `*`).
    pub fn new<'a>(
        subscribe: impl IntoIterator<Item = &'a str>,
        publish: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut text = String::new();
        for (kind, list) in [
            ("s", subscribe.into_iter().collect::<Vec<_>>()),
            ("p", publish.into_iter().collect()),
        ] {
            for p in list {
                if p.contains('\n') {
                    continue; // a pattern cannot name a topic with a line break anyway
                }
                text.push_str(kind);
                text.push('\t');
                text.push_str(p);
                text.push('\n');
            }
        }
        Self { text: text.into() }
    }

    /// Everything (authentication off).
    pub fn all() -> Self {
        Self::new(["*"], ["*"])
    }

    /// Nothing.
    pub fn none() -> Self {
        Self::new([], [])
    }

    fn allows(&self, kind: &str, name: &str) -> bool {
        self.text.lines().any(|l| {
            l.split_once('\t')
                .is_some_and(|(k, p)| k == kind && pattern_matches(p, name))
        })
    }

    /// Whether it may subscribe to `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.allows("s", topic)
    }

    /// Whether it may publish on `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.allows("p", topic)
    }

    /// The same grants sharing `other`'s copy (when equal).
    pub fn share(&mut self, other: &Self) {
        if self.text == other.text {
            self.text = other.text.clone();
        }
    }

    /// Its text form (one `s|p <TAB> pattern` per line), for handing a connection over.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Grants from [`Grants::text`].
    pub fn from_text(text: &str) -> Self {
        Self { text: text.into() }
    }

    /// Holders of this copy.
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.text)
    }
}

/// Who a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub` (None: anonymous, or a token without one).
    pub user: Option<Arc<str>>,
    /// When the token expires (Unix seconds; None: anonymous).
    pub exp: Option<u64>,
    /// What it may do.
    pub grants: Grants,
}

/// Why a token was refused (401, or an error reply to a refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token where one is required.
    Missing,
    /// Past its `exp`.
    Expired,
    /// Before its `nbf`.
    NotYetValid,
    /// The signature does not verify with any configured key.
    BadSignature,
    /// `aud` is not the configured audience.
    WrongAudience,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// The header's `alg` matches no configured key.
    WrongAlgorithm,
    /// Not a JWT, or the claims are not the expected shape (`exp` missing, say).
    Malformed(String),
    /// A refresh named another user.
    OtherUser,
}

impl AuthError {
    /// Every label, in [`AuthError::index`] order.
    pub const LABELS: [&'static str; 9] = [
        "token_missing",
        "token_expired",
        "token_not_yet_valid",
        "token_bad_signature",
        "token_wrong_audience",
        "token_wrong_issuer",
        "token_wrong_algorithm",
        "token_malformed",
        "token_other_user",
    ];

    /// Its position in [`AuthError::LABELS`].
    pub fn index(&self) -> usize {
        Self::LABELS
            .iter()
            .position(|l| *l == self.label())
            .unwrap_or(0)
    }

    /// The metric label and the first word of the reason.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::BadSignature => "token_bad_signature",
            Self::WrongAudience => "token_wrong_audience",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::WrongAlgorithm => "token_wrong_algorithm",
            Self::Malformed(_) => "token_malformed",
            Self::OtherUser => "token_other_user",
        }
    }

    /// What the client is told.
    pub fn reason(&self) -> String {
        match self {
            Self::Missing => "token_missing: send `Authorization: Bearer <jwt>`, the `token` \
                              query parameter, or the subprotocol `holdfast.bearer.<jwt>`"
                .into(),
            Self::Malformed(why) => format!("token_malformed: {why}"),
            Self::OtherUser => "token_other_user: the token must name the connection's sub".into(),
            e => e.label().into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    channels: ChannelClaims,
}

#[derive(Debug, Default, Deserialize)]
struct ChannelClaims {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

/// A verification key and the algorithms it verifies.
struct Key {
    key: DecodingKey,
    algorithms: &'static [Algorithm],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
const ED: &[Algorithm] = &[Algorithm::EdDSA];

/// The process's authentication settings, shared by every worker.
#[derive(Debug)]
pub struct Auth {
    keys: Vec<Key>,
    audience: Option<String>,
    issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: u64,
    /// What a connection without a token may do (None: it is refused).
    anonymous: Option<Grants>,
    /// Connections per user across the process (0: no cap).
    max_per_user: u32,
    users: Mutex<HashMap<Arc<str>, u32>>,
}

/// How [`Auth`] is configured.
#[derive(Debug, Default, Clone)]
pub struct AuthConfig {
    /// The HMAC secret's bytes.
    pub hmac_secret: Option<Vec<u8>>,
    /// PEM public keys.
    pub public_keys: Vec<Vec<u8>>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Clock skew allowed, seconds.
    pub leeway: u64,
    /// Patterns anonymous connections may subscribe to (None: no anonymous connections).
    pub anonymous: Option<String>,
    /// Connections per user (0: no cap).
    pub max_per_user: u32,
}

impl Auth {
    /// Build it; a PEM that holds no RSA, EC or Ed25519 public key is an error.
    pub fn new(cfg: &AuthConfig) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(s) = &cfg.hmac_secret {
            if s.len() < 32 {
                return Err(format!(
                    "the HMAC secret is {} bytes; use at least 32 random bytes",
                    s.len()
                ));
            }
            keys.push(Key {
                key: DecodingKey::from_secret(s),
                algorithms: HMAC,
            });
        }
        for (i, pem) in cfg.public_keys.iter().enumerate() {
            let key = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                Key {
                    key: k,
                    algorithms: RSA,
                }
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                Key {
                    key: k,
                    algorithms: EC,
                }
            } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
                Key {
                    key: k,
                    algorithms: ED,
                }
            } else {
                return Err(format!(
                    "public key {} is not a PEM RSA, EC (P-256/P-384) or Ed25519 public key",
                    i + 1
                ));
            };
            keys.push(key);
        }
        Ok(Self {
            keys,
            audience: cfg.audience.clone(),
            issuer: cfg.issuer.clone(),
            leeway: cfg.leeway,
            anonymous: cfg.anonymous.as_deref().map(|list| {
                Grants::new(list.split(',').map(str::trim).filter(|s| !s.is_empty()), [])
            }),
            max_per_user: cfg.max_per_user,
            users: Mutex::new(HashMap::new()),
        })
    }

    /// Whether tokens are checked at all (a key is configured).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verify `token` as of `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let claims = self.decode(token, now)?;
        self.identity(claims, now)
    }

    /// Verify a subscription token for `topic` presented by a connection of `user`: signed
    /// by a configured key, within its time, `"channel"` naming the topic, and `"sub"` the
    /// connection's user when both have one.
    pub fn verify_channel(
        &self,
        token: &str,
        topic: &str,
        user: Option<&str>,
        now: u64,
    ) -> Result<(), AuthError> {
        let claims = self.decode(token, now)?;
        let nbf = claims.get("nbf").and_then(serde_json::Value::as_u64);
        let exp = claims.get("exp").and_then(serde_json::Value::as_u64);
        if exp.is_none_or(|e| e.saturating_add(self.leeway) <= now) {
            return Err(AuthError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::NotYetValid);
        }
        if claims.get("channel").and_then(serde_json::Value::as_str) != Some(topic) {
            return Err(AuthError::Malformed(format!(
                "the `channel` claim must name {topic}"
            )));
        }
        let sub = claims.get("sub").and_then(serde_json::Value::as_str);
        if let (Some(sub), Some(user)) = (sub, user) {
            if sub != user {
                return Err(AuthError::OtherUser);
            }
        }
        Ok(())
    }

    /// Check the signature (and `aud`, `iss`, the presence of `exp`) of `token`; its claims.
    fn decode(&self, token: &str, _now: u64) -> Result<serde_json::Value, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let mut last = AuthError::WrongAlgorithm;
        for k in self
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&header.alg))
        {
            let mut v = Validation::new(header.alg);
            // Time is checked below against `now`, so tests and refreshes share one clock.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.required_spec_claims = ["exp".to_owned()].into();
            match &self.audience {
                Some(a) => {
                    v.set_audience(&[a]);
                    v.required_spec_claims.insert("aud".to_owned());
                }
                None => v.validate_aud = false,
            }
            if let Some(i) = &self.issuer {
                v.set_issuer(&[i]);
                v.required_spec_claims.insert("iss".to_owned());
            }
            match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::InvalidSignature => AuthError::BadSignature,
                        K::InvalidAudience => AuthError::WrongAudience,
                        K::InvalidIssuer => AuthError::WrongIssuer,
                        K::InvalidAlgorithm => AuthError::WrongAlgorithm,
                        K::MissingRequiredClaim(c) => {
                            AuthError::Malformed(format!("the `{c}` claim is required"))
                        }
                        _ => AuthError::Malformed(e.to_string()),
                    };
                    if last != AuthError::BadSignature {
                        return Err(last); // signed by this key; its claims are wrong
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: serde_json::Value, now: u64) -> Result<Identity, AuthError> {
        let nbf = claims.get("nbf").and_then(serde_json::Value::as_u64);
        let c: Claims =
            serde_json::from_value(claims).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if c.exp.saturating_add(self.leeway) <= now {
            return Err(AuthError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::NotYetValid);
        }
        Ok(Identity {
            user: c.sub.map(Arc::from),
            exp: Some(c.exp.saturating_add(self.leeway)),
            grants: Grants::new(
                c.channels.subscribe.iter().map(String::as_str),
                c.channels.publish.iter().map(String::as_str),
            ),
        })
    }

    /// Who a connection presenting `token` (or none) is, as of `now`.
    pub fn admit(&self, token: Option<&str>, now: u64) -> Result<Identity, AuthError> {
        if !self.enabled() {
            return Ok(Identity {
                user: None,
                exp: None,
                grants: Grants::all(),
            });
        }
        match (token, &self.anonymous) {
            (Some(t), _) => self.verify(t, now),
            (None, Some(anon)) => Ok(Identity {
                user: None,
                exp: None,
                grants: anon.clone(),
            }),
            (None, None) => Err(AuthError::Missing),
        }
    }

    /// Count a connection of `user`; false (and nothing counted) when the user is at the cap.
    pub fn join_user(&self, user: &Arc<str>) -> bool {
        if self.max_per_user == 0 {
            return true;
        }
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let n = users.entry(user.clone()).or_insert(0);
        if *n >= self.max_per_user {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection of `user` (counted by [`Auth::join_user`]) left.
    pub fn leave_user(&self, user: &Arc<str>) {
        if self.max_per_user == 0 {
            return;
        }
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    /// The per-user cap (0: none).
    pub fn max_per_user(&self) -> u32 {
        self.max_per_user
    }
}

/// The token a request carries: `Authorization: Bearer`, then the `token` query parameter,
/// then a `holdfast.bearer.<token>` subprotocol.
pub fn request_token<'a>(req: &crate::ws::handshake::Request<'a>) -> Option<&'a str> {
    req.auth_token("token").or_else(|| {
        req.offered_protocols()
            .find_map(|p| p.strip_prefix(BEARER_PROTOCOL))
            .filter(|t| !t.is_empty())
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
