//! The services' side of the hand-over: what a connection is above its session (identity,
//! pub/sub membership and positions, admission counts) written out when it leaves for the
//! new process, and taken up again there.

use std::net::IpAddr;
use std::sync::Arc;

use super::Services;
use crate::auth::{Grants, Identity};
use crate::handover::format::{IdentitySnap, PubsubSnap, SubSnap};
use crate::metrics::WorkerMetrics;
use crate::session::{Ctx, Writer};

impl Services {
    /// Whether connection `idx`'s service state can be written out now: not a long poll
    /// or a call, and no subscription still waiting for the backplane.
    pub fn movable_conn(&self, idx: u32) -> bool {
        !self.pubsub.local.is_poll(idx) && !self.pubsub.local.waiting(idx)
    }

    /// Connection `idx`'s identity and pub/sub state for the new process; it is released
    /// here as a close would release it (counts, subscriptions, the user's tally), but its
    /// socket is not closed.
    pub fn export_conn(
        &mut self,
        idx: u32,
        counted: bool,
        metrics: &WorkerMetrics,
    ) -> (Option<IdentitySnap>, Option<PubsubSnap>) {
        let identity = self.identity.identity(idx).map(|id| IdentitySnap {
            user: id.user.as_deref().map(str::to_owned),
            exp: id.exp,
            grants: id.grants.text().to_owned(),
        });
        let local = &self.pubsub.local;
        let pubsub = local.is_member(idx).then(|| PubsubSnap {
            client: local.client(idx).map(str::to_owned),
            stream: local.is_stream(idx),
            subs: local
                .positions(idx)
                .into_iter()
                .map(|(topic, epoch, after)| SubSnap {
                    topic: topic.into(),
                    epoch,
                    after,
                })
                .collect(),
        });
        crate::session::Services::on_release(self, idx, counted, metrics);
        (identity, pubsub)
    }

    /// A connection handed over from the previous process is in entry `idx` now: take up
    /// its identity and subscriptions (replaying what was numbered after its positions).
    #[allow(clippy::too_many_arguments)]
    pub fn adopt_conn(
        &mut self,
        idx: u32,
        peer: Option<IpAddr>,
        counted: bool,
        identity: Option<IdentitySnap>,
        pubsub: Option<PubsubSnap>,
        w: &mut Writer,
        ctx: &Ctx<'_>,
    ) {
        self.admission.adopt(idx, peer, counted);
        if let Some(id) = identity {
            let user: Option<Arc<str>> = id.user.map(Into::into);
            if let Some(u) = &user {
                // Counted against the per-user cap as it was in the old process.
                let _ = self.identity.edge.auth.join_user(u);
                self.pubsub.spec.backplane.user_opened(u);
            }
            self.identity.open(
                idx,
                Identity {
                    user,
                    exp: id.exp,
                    grants: Grants::from_text(&id.grants),
                },
            );
        }
        if let Some(p) = pubsub {
            self.pubsub.join(idx);
            if p.stream {
                self.pubsub.local.set_stream(idx);
            }
            if let Some(c) = p.client {
                self.pubsub.local.set_client(idx, c.into());
            }
            let user = self.identity.user(idx);
            let subs = p
                .subs
                .into_iter()
                .map(|s| (s.topic, s.epoch, s.after))
                .collect();
            self.pubsub.adopt(idx, w, ctx, subs, user);
        }
    }
}
