//! The transport ladder side by side: what an idle subscriber costs and what fan-out costs
//! on each rung — WebSocket (`/ws`), server-sent events (`/sse`) and long-poll (`/poll`) —
//! each run on a fresh holdfast, the same load generator speaking each protocol.

use serde_json::{json, Value};

use super::procs::Kind;
use super::sections::{density_at, fanout_step};
use super::Plan;

/// The rungs, as (server kind, its subscription path with one topic).
const RUNGS: [(Kind, &str); 3] = [
    (Kind::Holdfast, "/ws?topics=idle"),
    (Kind::HoldfastSse, "/sse?topics=idle"),
    (Kind::HoldfastPoll, "/poll?topics=idle"),
];

/// Density (bytes per idle subscriber of one topic) and fan-out (deliveries per
/// server-CPU-second, latency) per rung.
pub(super) fn transports(plan: &Plan) -> Result<Value, String> {
    if plan.url.is_some() {
        return Ok(json!({"skipped": "--url: the transports section starts its own servers"}));
    }
    let mut density = Vec::new();
    for (kind, path) in RUNGS {
        eprintln!(
            "transports: density {} × {}",
            kind.name(),
            plan.transport_density
        );
        let mut v = density_at(plan, kind, plan.transport_density, path)?;
        v["path"] = path.into();
        density.push(v);
    }
    let mut fanout = Vec::new();
    for &(subs, topics, rate) in &plan.transport_fanout {
        for (kind, _) in RUNGS {
            fanout.push(fanout_step(
                plan,
                kind,
                None,
                &super::sections::Place::Own,
                super::sections::Via::Admin,
                (subs, topics, rate),
            )?);
        }
        // At the largest rate: the long-poll rung's figures checked by an independent
        // client, and the rung again with a new connection per poll (clients behind a proxy
        // that does not keep connections; every poll before keep-alive).
        if topics == 1 && plan.transport_fanout.last() == Some(&(subs, topics, rate)) {
            fanout.push(super::sections::poll_client_step(plan, subs, rate)?);
            fanout.push(super::sections::fanout_step_with(
                plan,
                super::sections::FanoutServer {
                    kind: Kind::HoldfastPoll,
                    workers: None,
                    flags: None,
                },
                &super::sections::Place::Own,
                super::sections::Via::Admin,
                (subs, topics, rate),
                Some("per-poll"),
            )?);
        }
    }
    Ok(json!({"density": density, "fanout": fanout}))
}
