//! Deploys side by side: N idle subscribers (and a fan-out stream checked message by
//! message) across a live upgrade of holdfast, then the same node restarted with a drain
//! while a second process takes the port — the reconnect storm the hand-over avoids.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::procs::{loadgen, track, Kind, Server};
use super::Plan;
use crate::proc::{meminfo, rss_bytes};

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// One admin request; (status, body).
fn admin(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let mut st = std::net::TcpStream::connect(addr).ok()?;
    st.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    st.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    st.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n")?.1.to_string()))
}

/// What the upgrade's watcher saw.
#[derive(Debug, Default, Clone)]
struct Watch {
    started: bool,
    status: Value,
    seconds: f64,
    new_pid: Option<u32>,
    peak_rss_old: u64,
    peak_rss_new: u64,
    peak_rss_sum: u64,
    rss_old_before: u64,
    rss_new_after: u64,
    slab_before: u64,
    slab_peak: u64,
    memfree_min: u64,
    gone_after: f64,
    adopted: u64,
}

/// Start the upgrade and follow it to its end, sampling memory every few milliseconds.
fn upgrade_and_watch(admin_addr: &str, old_pid: u32) -> Watch {
    let mut w = Watch {
        rss_old_before: rss_bytes(old_pid).unwrap_or(0),
        slab_before: meminfo("Slab").unwrap_or(0),
        memfree_min: u64::MAX,
        ..Watch::default()
    };
    let t0 = Instant::now();
    match admin(admin_addr, "POST", "/upgrade") {
        Some((202, _)) => w.started = true,
        other => {
            w.status = json!({"error": format!("POST /upgrade: {other:?}")});
            return w;
        }
    }
    let deadline = t0 + Duration::from_secs(900);
    while Instant::now() < deadline {
        let ro = rss_bytes(old_pid).unwrap_or(0);
        let rn = w.new_pid.and_then(rss_bytes).unwrap_or(0);
        w.peak_rss_old = w.peak_rss_old.max(ro);
        w.peak_rss_new = w.peak_rss_new.max(rn);
        w.peak_rss_sum = w.peak_rss_sum.max(ro + rn);
        w.slab_peak = w.slab_peak.max(meminfo("Slab").unwrap_or(0));
        w.memfree_min = w.memfree_min.min(meminfo("MemFree").unwrap_or(u64::MAX));
        if let Some((200, body)) = admin(admin_addr, "GET", "/upgrade") {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(p) = v["pid"].as_u64() {
                if w.new_pid.is_none() {
                    track(p as u32, true);
                }
                w.new_pid = Some(p as u32);
            }
            let state = v["state"].as_str().unwrap_or("").to_string();
            // Both processes answer on the admin port while the move runs (they share the
            // listener): only the old one's answers (not `idle`) are the upgrade's status.
            if state != "idle" {
                w.status = v;
            }
            if state == "failed" {
                break;
            }
        }
        if rss_bytes(old_pid).is_none() {
            w.gone_after = t0.elapsed().as_secs_f64();
            break; // the old process has left
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if w.gone_after == 0.0 {
        w.gone_after = t0.elapsed().as_secs_f64();
    }
    // From the request to the old process gone: everything moved, the old one has left.
    w.seconds = w.gone_after;
    std::thread::sleep(Duration::from_millis(500));
    // What the new process says it took over (its workers' counters).
    if let Some((200, m)) = admin(admin_addr, "GET", "/metrics") {
        w.adopted = m
            .lines()
            .filter(|l| l.starts_with("holdfast_handover_connections_adopted_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    w.rss_new_after = w.new_pid.and_then(rss_bytes).unwrap_or(0);
    w
}

/// The live upgrade: `n` idle subscribers held by one loadgen, 1,000 more taking a topic
/// at 20 msgs/s checked for loss by another, the upgrade started once both are steady.
fn upgrade_run(plan: &Plan, n: usize) -> Result<Value, String> {
    let server = Server::start(
        Kind::Holdfast,
        None,
        None,
        &[
            "--max-connections",
            &s(n * 2 + 10_000),
            "--upgrade-timeout",
            "900",
        ],
    )?;
    let admin_addr = server.admin.clone().ok_or("no admin address")?;
    let base = format!("ws://{}", server.addr);
    let old_pid = server.pid();
    let ramp = n as f64 / plan.ramp_rate;
    let hold = 20.0 + ramp + n as f64 / 20_000.0;
    let fan_subs = if plan.quick { 100 } else { 1_000 };
    // The message check: a fan-out run spanning the upgrade.
    let fan_args = vec![
        s("fanout"),
        s("--url"),
        format!("{base}/ws"),
        s("--connections"),
        s(fan_subs),
        s("--topics"),
        s(1),
        s("--publish-rate"),
        s(20),
        s("--admin"),
        admin_addr.clone(),
        s("--warmup"),
        s(1),
        s("--duration"),
        s(hold + 5.0),
        s("--rate"),
        s(5_000),
        s("--settle"),
        s(5),
    ];
    let fan = std::thread::spawn(move || loadgen(&fan_args, None, |_| {}));
    let hold_args = vec![
        s("hold"),
        s("--url"),
        format!("{base}/ws?topics=bench.idle"),
        s("--connections"),
        s(n),
        s("--rate"),
        s(plan.ramp_rate),
        s("--duration"),
        s(hold),
    ];
    let watch: Arc<Mutex<Option<Watch>>> = Arc::new(Mutex::new(None));
    let fired = Arc::new(AtomicBool::new(false));
    let mut watcher = None;
    let (v, met) = loadgen(&hold_args, None, |line| {
        // Once the ramp is over (the first steady line), start the upgrade.
        if line.trim_start().starts_with("hold t=") && !fired.swap(true, Ordering::SeqCst) {
            let (a, w) = (admin_addr.clone(), watch.clone());
            std::thread::sleep(Duration::from_secs(2));
            watcher = Some(std::thread::spawn(move || {
                let r = upgrade_and_watch(&a, old_pid);
                *w.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            }));
        }
    })?;
    if let Some(h) = watcher {
        let _ = h.join();
    }
    let (fv, fmet) = fan
        .join()
        .map_err(|_| "the fan-out loadgen thread panicked")??;
    let w = watch
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    drop(server);
    if let Some(p) = w.new_pid {
        let _ = holdfast::io::sys::kill(p, libc::SIGKILL);
        track(p, false);
    }
    let held = v["held_at_end"].as_u64().unwrap_or(0);
    Ok(json!({
        "connections": n,
        "upgrade_started": w.started,
        "upgrade_status": w.status,
        "upgrade_seconds": (w.seconds * 1000.0).round() / 1000.0,
        "move_seconds": w.status["elapsed_s"],
        "adopted_by_new_process": w.adopted,
        "connections_per_s": (w.adopted as f64 / w.seconds.max(1e-3)).round(),
        "held_before": n,
        "held_at_end": held,
        "connections_lost": (n as u64).saturating_sub(held),
        "hold_met": met,
        "hold_failures": v["failures"],
        "peak_rss_old_bytes": w.peak_rss_old,
        "peak_rss_new_bytes": w.peak_rss_new,
        "peak_rss_both_bytes": w.peak_rss_sum,
        "rss_old_before_bytes": w.rss_old_before,
        "rss_new_after_bytes": w.rss_new_after,
        "slab_growth_peak_bytes": w.slab_peak.saturating_sub(w.slab_before),
        "memfree_min_bytes": w.memfree_min,
        "fanout": {
            "subscribers": fan_subs,
            "met": fmet,
            "published": fv["published_during_measurement"],
            "deliveries": fv["deliveries_during_measurement"],
            "lost": fv["lost_in_stream"].as_u64().unwrap_or(0) + fv["lost_at_end"].as_u64().unwrap_or(0),
            // Skipped in a subscriber's stream without a gap notice: lost.
            "lost_in_stream": fv["lost_in_stream"],
            // Not yet received when the settle ended: behind, not dropped.
            "unreceived_at_end": fv["lost_at_end"],
            "duplicates": fv["duplicates"],
            "reordered": fv["reordered"],
            "gaps": fv["gaps"],
            "misnumbered": fv["misnumbered"],
            "publish_errors": fv["publish_errors"],
            "latency_us": fv["publish_to_delivery_us"],
            "failures": fv["failures"],
        },
    }))
}

/// The same node restarted with a drain: every client is closed (1012, with a reconnect
/// hint spread over the drain window) and reconnects to a second process that took the
/// port as the drain began.
fn drain_run(plan: &Plan, n: usize) -> Result<Value, String> {
    let window = if plan.quick { "2" } else { "10" };
    let a = Server::start(
        Kind::Holdfast,
        None,
        None,
        &[
            "--max-connections",
            &s(n * 2 + 10_000),
            "--drain-window",
            window,
        ],
    )?;
    let a_admin = a.admin.clone().ok_or("no admin address")?;
    let port = a.addr.clone();
    let mut b: Option<Server> = None;
    let mut b_error = None;
    let args = vec![
        s("storm"),
        s("--url"),
        format!("ws://{port}/ws?topics=bench.idle"),
        s("--connections"),
        s(n),
        s("--rate"),
        s(plan.ramp_rate),
        s("--cause"),
        s("drain"),
        s("--admin"),
        a_admin.clone(),
        s("--hold"),
        s(3),
        s("--duration"),
        s(if plan.quick { 30 } else { 120 }),
    ];
    let (v, met) = loadgen(&args, None, |_| {
        // The drain closed A's listener: start B on the same port (an operator's rolling
        // restart on one node), once.
        if b.is_none() && b_error.is_none() {
            if let Some((503, _)) = admin(&a_admin, "GET", "/readyz") {
                let extra = [
                    "--max-connections".to_string(),
                    s(n * 2 + 10_000),
                    "--share-port".into(),
                ];
                let listen = port.clone();
                match Server::start_at(Kind::Holdfast, &listen, &extra) {
                    Ok(sv) => b = Some(sv),
                    Err(e) => b_error = Some(e),
                }
            }
        }
    })?;
    drop(a);
    drop(b);
    Ok(json!({
        "connections": n,
        "drain_window_s": window.parse::<f64>().unwrap_or(0.0),
        "met": met,
        "second_process_error": b_error,
        "held_before_event": v["held_before_event"],
        "lost": v["lost"],
        "reconnected": v["reconnected"],
        "recovered": v["recovered"],
        "recovery_seconds": v["recovery_seconds"],
        "peak_connects_per_s_after_event": v["peak_connects_per_s_after_event"],
        "failures": v["failures"],
    }))
}

/// The section: the live upgrade and the drain restart at the same N.
pub(super) fn handover(plan: &Plan) -> Result<Value, String> {
    if plan.url.is_some() {
        return Ok(json!({"skipped": "--url: the hand-over section starts its own servers"}));
    }
    let n = plan.handover_connections;
    eprintln!("handover: live upgrade with {n} connections");
    let upgrade = upgrade_run(plan, n)?;
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("handover: drain restart with {n} connections");
    if std::env::var_os("HOLDFAST_BENCH_HANDOVER_SKIP_DRAIN").is_some() {
        return Ok(
            json!({"upgrade": upgrade, "drain_restart": {"skipped": "HOLDFAST_BENCH_HANDOVER_SKIP_DRAIN"}}),
        );
    }
    let drain = drain_run(plan, n)?;
    Ok(json!({"upgrade": upgrade, "drain_restart": drain}))
}
