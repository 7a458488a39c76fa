//! A worker's side of identity: the checks an upgrade request passes (Origin, token, the
//! channels its query asks for, the per-user cap), who each authenticated connection is,
//! token refresh, and the expiry sweep.
//!
//! With authentication off nothing is stored per connection; with it on, each connection
//! has an [`Identity`] here (its user, expiry and grants) and an entry in the expiry index.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::auth::{self, Auth, AuthError, Grants, Identity, Origins};
use crate::metrics::Limit;
use crate::session::Answer;
use crate::slabmap::SlabMap;
use crate::ws::handshake::{Rejection, Request};

/// The process's edge policy, shared by every worker.
#[derive(Debug)]
pub struct Edge {
    /// Token verification and the per-user cap.
    pub auth: Auth,
    /// The Origin allowlist.
    pub origins: Origins,
    /// `/` and `/echo` are offered.
    pub echo: bool,
    /// `/ws` is offered.
    pub pubsub: bool,
}

impl Edge {
    /// No authentication, any Origin, every endpoint (today's defaults; tests).
    pub fn open() -> Self {
        Self {
            auth: Auth::new(&auth::AuthConfig::default()).expect("no keys is valid"),
            origins: Origins::Any,
            echo: true,
            pubsub: true,
        }
    }
}

/// Token verifications one connection may ask for over its socket (refreshes and
/// subscription tokens) per [`VERIFY_WINDOW`] seconds: a signature check costs up to ~60 µs
/// of the worker (ES256), so a client sending control messages full of tokens must not be
/// able to keep its worker busy.
pub const MAX_VERIFICATIONS: u16 = 16;
/// The window of [`MAX_VERIFICATIONS`], seconds.
pub const VERIFY_WINDOW: u64 = 10;
const VERIFY_LIMIT: &str =
    "token_rate_limited: at most 16 token verifications per connection per 10 s";

/// What one connection may do, for the pub/sub side: its grants, or a subscription token
/// for a channel they do not cover.
#[derive(Debug)]
pub struct ConnPermits<'a> {
    side: &'a mut IdentitySide,
    idx: u32,
    metrics: &'a crate::metrics::WorkerMetrics,
}

impl<'a> ConnPermits<'a> {
    /// Connection `idx`'s permits.
    pub fn new(side: &'a mut IdentitySide, idx: u32, ctx: &crate::session::Ctx<'a>) -> Self {
        Self {
            side,
            idx,
            metrics: ctx.metrics,
        }
    }
}

impl crate::services::pubsub::Permits for ConnPermits<'_> {
    fn subscribe(&mut self, topic: &str, token: Option<&str>) -> Result<(), String> {
        let Some(grants) = self.side.grants(self.idx) else {
            return Ok(()); // authentication off
        };
        if grants.may_subscribe(topic) {
            return Ok(());
        }
        let Some(token) = token else {
            return Err(format!("forbidden: no grant to subscribe to {topic}"));
        };
        let now = auth::unix_now();
        if !self.side.may_verify(self.idx, now) {
            return Err(VERIFY_LIMIT.into());
        }
        let user = self.side.get(self.idx).and_then(|id| id.user.as_deref());
        self.side
            .edge
            .auth
            .verify_channel(token, topic, user, now)
            .map_err(|e| {
                self.metrics.auth_failures[e.index()].inc();
                format!("forbidden: subscription token refused: {}", e.reason())
            })
    }

    fn publish(&mut self, topic: &str) -> bool {
        self.side
            .grants(self.idx)
            .is_none_or(|g| g.may_publish(topic))
    }
}

/// One worker's identities.
#[derive(Debug)]
pub struct IdentitySide {
    /// The shared policy.
    pub edge: Arc<Edge>,
    /// Each authenticated connection's identity, by slab index (slab indices are dense, so a
    /// table beats a hash map: 48 B a slot instead of ~120 B an entry).
    ids: Vec<Option<Identity>>,
    held: usize,
    expiries: BTreeSet<(u64, u32)>,
    /// One copy of each distinct grant set held by this worker's connections.
    interned: std::collections::HashSet<Grants>,
    /// Verifications asked for over the socket: (window start, count), per connection that
    /// asked in its current window.
    spent: SlabMap<(u64, u16)>,
    nothing: Grants,
    /// Each user's connections on this worker (for messages to a user and kicks).
    by_user: HashMap<Arc<str>, Vec<u32>>,
}

/// A refusal of the upgrade, and the token error behind it when there is one.
pub type Refusal = (Answer, Option<AuthError>);

fn refuse(limit: Limit, rejection: Rejection, body: String) -> Answer {
    Answer::Refuse(limit, rejection, body)
}

impl IdentitySide {
    /// A worker's side of `edge`.
    pub fn new(edge: Arc<Edge>) -> Self {
        Self {
            edge,
            ids: Vec::new(),
            held: 0,
            expiries: BTreeSet::new(),
            interned: std::collections::HashSet::new(),
            spent: SlabMap::default(),
            nothing: Grants::none(),
            by_user: HashMap::new(),
        }
    }

    fn get(&self, idx: u32) -> Option<&Identity> {
        self.ids.get(idx as usize).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, idx: u32) -> Option<&mut Identity> {
        self.ids.get_mut(idx as usize).and_then(Option::as_mut)
    }

    /// Whether connection `idx` may have one more token verified now (and count it).
    fn may_verify(&mut self, idx: u32, now: u64) -> bool {
        let e = self.spent.entry(idx).or_insert((now, 0));
        if now.saturating_sub(e.0) >= VERIFY_WINDOW {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1 <= MAX_VERIFICATIONS
    }

    /// Share the worker's copy of `g` (or make it the copy).
    fn intern(&mut self, g: &mut Grants) {
        match self.interned.get(g) {
            Some(copy) => g.share(copy),
            None => {
                self.interned.insert(g.clone());
            }
        }
    }

    /// `g` is no longer held by a connection: drop the worker's copy once it is the last.
    fn unintern(&mut self, g: Grants) {
        // Holders: the interned copy and `g` itself.
        if g.holders() <= 2 {
            self.interned.remove(&g);
        }
    }

    /// Check an upgrade request for `topics` (the channels its query subscribes to) as of
    /// `now` (Unix seconds): its Origin, its token, the grants those channels need, and the
    /// per-user cap (counted here; undo with [`IdentitySide::release_user`] if the upgrade is
    /// refused later).
    pub fn check(
        &self,
        req: &Request<'_>,
        topics: &[String],
        now: u64,
    ) -> Result<Identity, Refusal> {
        let edge = &self.edge;
        if !edge.origins.allows(req.origin) {
            let body = format!(
                "origin_not_allowed: {} is not in --allowed-origins",
                req.origin.unwrap_or("")
            );
            return Err((refuse(Limit::Origin, Rejection::Forbidden, body), None));
        }
        let id = edge
            .auth
            .admit(auth::request_token(req), now)
            .map_err(|e| {
                let answer = refuse(Limit::Unauthorized, Rejection::Unauthorized, e.reason());
                (answer, Some(e))
            })?;
        if let Some(t) = topics.iter().find(|t| !id.grants.may_subscribe(t)) {
            let body = format!("forbidden: no grant to subscribe to {t}");
            return Err((refuse(Limit::Forbidden, Rejection::Forbidden, body), None));
        }
        if let Some(u) = &id.user {
            if !edge.auth.join_user(u) {
                let body = format!(
                    "user_connection_cap: at most {} connections per user",
                    edge.auth.max_per_user()
                );
                let answer = refuse(
                    Limit::UserCap,
                    Rejection::TooManyRequests {
                        retry_after: Some(5),
                    },
                    body,
                );
                return Err((answer, None));
            }
        }
        Ok(id)
    }

    /// The upgrade that [`IdentitySide::check`] passed was refused after all (a limit).
    pub fn release_user(&self, id: &Identity) {
        if let Some(u) = &id.user {
            self.edge.auth.leave_user(u);
        }
    }

    /// Connection `idx` is open as `id`.
    pub fn open(&mut self, idx: u32, mut id: Identity) {
        if !self.edge.auth.enabled() {
            return; // nothing to remember: every connection may do everything
        }
        self.intern(&mut id.grants);
        if let Some(exp) = id.exp {
            self.expiries.insert((exp, idx));
        }
        if let Some(u) = &id.user {
            self.by_user.entry(u.clone()).or_default().push(idx);
        }
        let i = idx as usize;
        if self.ids.len() <= i {
            self.ids.resize_with(i + 1, || None);
        }
        if self.ids[i].replace(id).is_none() {
            self.held += 1;
        }
    }

    /// What connection `idx` may do (None: authentication is off, everything).
    pub fn grants(&self, idx: u32) -> Option<&Grants> {
        if !self.edge.auth.enabled() {
            return None;
        }
        // An authenticated connection always has an entry; a missing one may do nothing.
        Some(self.get(idx).map_or(&self.nothing, |id| &id.grants))
    }

    /// Connection `idx` presents a new token: on success its grants and expiry are the new
    /// token's (which must name the same user), and the new expiry is returned.
    pub fn refresh(&mut self, idx: u32, token: &str, now: u64) -> Result<u64, AuthError> {
        if !self.edge.auth.enabled() {
            return Err(AuthError::Malformed("authentication is off".into()));
        }
        if !self.may_verify(idx, now) {
            return Err(AuthError::Malformed(VERIFY_LIMIT.into()));
        }
        let mut new = self.edge.auth.verify(token, now)?;
        let Some(cur) = self.get(idx) else {
            return Err(AuthError::Missing);
        };
        if new.user != cur.user {
            return Err(AuthError::OtherUser);
        }
        if let Some(old) = cur.exp {
            self.expiries.remove(&(old, idx));
        }
        let exp = new.exp.unwrap_or(u64::MAX);
        self.expiries.insert((exp, idx));
        self.intern(&mut new.grants);
        if let Some(cur) = self.get_mut(idx) {
            let old = std::mem::replace(cur, new);
            self.unintern(old.grants);
        }
        Ok(exp)
    }

    /// Connection `idx` is gone.
    pub fn leave(&mut self, idx: u32) {
        self.spent.remove(&idx);
        let id = self.ids.get_mut(idx as usize).and_then(Option::take);
        if let Some(id) = id {
            self.held -= 1;
            if let Some(exp) = id.exp {
                self.expiries.remove(&(exp, idx));
            }
            if let Some(u) = &id.user {
                if let Some(list) = self.by_user.get_mut(u) {
                    list.retain(|&i| i != idx);
                    if list.is_empty() {
                        self.by_user.remove(u);
                    }
                }
            }
            self.release_user(&id);
            self.unintern(id.grants);
        }
    }

    /// Connections whose token has expired as of `now`: taken out of the expiry index (they
    /// are closed by the caller) and appended to `out`.
    pub fn expired(&mut self, now: u64, out: &mut Vec<u32>) {
        while let Some(&(exp, idx)) = self.expiries.first() {
            if exp > now {
                break;
            }
            self.expiries.pop_first();
            out.push(idx);
        }
    }

    /// Connection `idx`'s identity, when it has one.
    pub fn identity(&self, idx: u32) -> Option<&Identity> {
        self.get(idx)
    }

    /// The user connection `idx` authenticated as.
    pub fn user(&self, idx: u32) -> Option<Arc<str>> {
        self.get(idx).and_then(|id| id.user.clone())
    }

    /// This worker's connections of `user`.
    pub fn conns_of(&self, user: &str) -> &[u32] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }

    /// Authenticated connections held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side() -> IdentitySide {
        let auth = Auth::new(&auth::AuthConfig {
            hmac_secret: Some(vec![1; 32]),
            ..auth::AuthConfig::default()
        })
        .unwrap();
        IdentitySide::new(Arc::new(Edge {
            auth,
            ..Edge::open()
        }))
    }

    fn id(user: &str, sub: &[&str]) -> Identity {
        Identity {
            user: Some(user.into()),
            exp: Some(100),
            grants: Grants::new(sub.iter().copied(), []),
        }
    }

    #[test]
    fn equal_grants_share_one_copy_until_the_last_holder_leaves() {
        let mut s = side();
        s.open(1, id("a", &["news.*"]));
        s.open(2, id("b", &["news.*"]));
        s.open(3, id("c", &["user.c"]));
        assert_eq!(s.interned.len(), 2);
        assert_eq!(
            s.get(1).unwrap().grants.holders(),
            3,
            "two connections and the copy"
        );
        assert!(s.grants(2).unwrap().may_subscribe("news.x"));
        assert!(!s.grants(3).unwrap().may_subscribe("news.x"));
        assert!(
            !s.grants(99).unwrap().may_subscribe("news.x"),
            "unknown: nothing"
        );
        s.leave(1);
        assert_eq!(s.interned.len(), 2);
        s.leave(2);
        s.leave(3);
        assert!(s.interned.is_empty() && s.is_empty());
        let mut out = Vec::new();
        s.expired(1_000, &mut out);
        assert!(
            out.is_empty(),
            "left connections leave the expiry index too"
        );
    }
}
