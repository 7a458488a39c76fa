//! The systemd notification protocol (`sd_notify`): `READY=1` once the listeners and
//! workers are up, `STOPPING=1` when a drain starts, `STATUS=…` lines, and `WATCHDOG=1`
//! while every worker's tick counter moves, so a stuck worker is noticed by the supervisor.
//! A datagram to `$NOTIFY_SOCKET`; nothing happens when it is unset.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::WorkerMetrics;

/// Send one notification (several `KEY=value` lines) to `$NOTIFY_SOCKET`, if set.
pub fn notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket address.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify to {path:?} failed: {e}");
    }
}

/// The watchdog interval systemd asked for (`$WATCHDOG_USEC`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// A drain started (from a signal or the admin API): tell systemd at once (a drain with no
/// connection ends within a tick, before any periodic check would notice).
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}

/// Keep systemd's watchdog fed while every worker ticks.
pub fn spawn(workers: Vec<Arc<WorkerMetrics>>) {
    let watchdog = watchdog_interval();
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let every = watchdog.map_or(Duration::from_millis(500), |w| {
        (w / 2).min(Duration::from_millis(500))
    });
    let _ = std::thread::Builder::new()
        .name("holdfast-notify".into())
        .spawn(move || {
            let mut last: Vec<u64> = workers.iter().map(|w| w.ticks.get()).collect();
            let mut since_ping = Duration::ZERO;
            let Some(w) = watchdog else { return };
            loop {
                std::thread::sleep(every);
                since_ping += every;
                if since_ping < w / 2 {
                    continue;
                }
                let now: Vec<u64> = workers.iter().map(|w| w.ticks.get()).collect();
                // Feed the watchdog only while every worker's loop moves: a stuck worker
                // stops it, and systemd restarts the node.
                if now.iter().zip(&last).all(|(n, l)| n > l) {
                    notify("WATCHDOG=1");
                    since_ping = Duration::ZERO;
                } else {
                    tracing::warn!(
                        "a worker has not ticked for {since_ping:?}; withholding the watchdog"
                    );
                }
                last = now;
            }
        });
}
