//! `storm`: hold N, then every client loses its connection at once (the loadgen cuts them,
//! the server drains, or something external restarts it) and reconnects with exponential
//! backoff and full jitter; reports the time to full recovery.

use std::cmp::Reverse;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Mode;
use crate::cli::{Cause, StormArgs};
use crate::counters::{keyed_report, Counts, C, CUT, STEADY};
use crate::engine::{Engine, Phase};
use crate::report::{hist_json, proc_cpu_seconds};
use crate::run::{
    self, failures_line, hard_timeout, launch, merge, pct_line, server_cpu, server_wakeups,
};

/// Reconnect policy: delay for attempt k is `min(cap, base · 2^k)`, drawn uniformly from
/// `[0, that)` with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay ceiling.
    pub base: Duration,
    /// Largest delay ceiling.
    pub cap: Duration,
    /// Attempts per lost connection before giving up.
    pub max_attempts: u32,
    /// Full jitter (false: every client waits exactly the ceiling — the thundering herd).
    pub jitter: bool,
    /// Use the server's `reconnect_after_ms` hint (holdfast's drain close reason) as the
    /// first delay when present.
    pub honor_hint: bool,
}

impl Backoff {
    /// The delay before attempt `attempt` (0 = the first reconnect), given a random value.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        if !self.jitter {
            return ceiling;
        }
        let nanos = ceiling.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random % nanos)
    }
}

impl Engine {
    /// A connection ended: past the ramp, a lost open connection or a failed attempt
    /// schedules the next attempt (or gives up).
    pub(crate) fn storm_on_lost(
        &mut self,
        policy: Backoff,
        was: Phase,
        target: u16,
        attempt: Option<u16>,
        hint: u32,
    ) {
        if self.phase < STEADY || self.stopping() {
            return;
        }
        let next = if was == Phase::Open {
            self.counts.inc(C::Lost);
            self.counts.inc(C::Awaiting);
            let now = self.now_ns();
            self.counts.record(C::FirstLossNs, now);
            Some(0u32)
        } else {
            attempt.map(|a| u32::from(a) + 1)
        };
        match next {
            Some(a) if a < policy.max_attempts => {
                let r = self.rng.next_u64();
                let delay = if a == 0 && hint > 0 && policy.honor_hint {
                    Duration::from_millis(u64::from(hint))
                } else {
                    policy.delay(a, r)
                };
                let _ = self.out.delay_us.record(delay.as_micros().max(1) as u64);
                // A failed attempt tries the next target (a client's endpoint list).
                let n = self.spec.targets.len() as u16;
                let t = if a == 0 { target } else { (target + 1) % n };
                self.reconnects
                    .push(Reverse((Instant::now() + delay, a as u16, t)));
            }
            Some(_) => {
                self.counts.inc(C::GaveUp);
                self.counts.dec(C::Awaiting);
            }
            None => {}
        }
    }
}

/// `POST /drain` to a holdfast admin address.
fn post_drain(admin: &str) -> Result<String, String> {
    let addr = admin.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("admin {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST /drain HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("admin {addr}: {e}"))?;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let status = body.lines().next().unwrap_or("").to_string();
    if !status.split(' ').nth(1).is_some_and(|c| c.starts_with('2')) {
        return Err(format!("admin {addr}: POST /drain answered {status:?}"));
    }
    Ok(status)
}

/// Run it; true when every lost connection came back (or gave up) within the duration.
pub fn run(a: StormArgs) -> Result<bool, String> {
    let c = &a.c;
    let duration = c.duration.unwrap_or(60.0);
    let hard = hard_timeout(c, duration + a.hold);
    if a.cause == Cause::Drain && a.admin.is_none() {
        return Err("--cause drain needs --admin host:port".into());
    }
    let policy = Backoff {
        base: Duration::from_millis(a.base_ms),
        cap: Duration::from_millis(a.cap_ms),
        max_attempts: a.max_attempts,
        jitter: !a.no_jitter,
        honor_hint: !a.ignore_hint,
    };
    let mut run = launch(c, Mode::Storm(policy))?;
    let ramp = run.ramp(c.connections, hard);
    run.control.set_phase(STEADY);
    let hold_end = run.t() + a.hold;
    while run.t() < hold_end && run.live(hard) {
        run.step("hold");
    }
    let before = run.totals().signed(C::Open).max(0) as u64;
    let event_t = run.t();
    let cpu_event = server_cpu(c.server_pid);
    let wake_event = server_wakeups(c.server_pid);
    let self_event = proc_cpu_seconds(std::process::id());
    let go = run.live(hard);
    match a.cause {
        _ if !go => {}
        Cause::Cut => run.control.set_phase(CUT),
        Cause::Drain => {
            post_drain(a.admin.as_deref().unwrap_or_default())?;
        }
        Cause::External => {
            let msg = "waiting for the server to drop the connections";
            match &run.progress {
                Some(p) => p.println(msg),
                None => holdfast::say!("{msg}"),
            }
        }
    }
    let recovered = |s: &Counts| {
        s.get(C::Lost) >= before
            && s.signed(C::Awaiting) == 0
            && s.signed(C::Open).max(0) as u64 + s.get(C::GaveUp) >= before
    };
    let mut ok = false;
    while run.t() - event_t < duration && run.live(hard) {
        run.step("storm");
        if before > 0 && recovered(&run.totals()) {
            ok = true;
            break;
        }
    }
    // The server's CPU from the event to recovery: tearing the lost connections down and
    // setting the new ones up (idle waiting between backoffs costs it next to nothing).
    let cpu_storm = cpu_event.zip(server_cpu(c.server_pid)).map(|(a, b)| b - a);
    let wake_storm = wake_event
        .zip(server_wakeups(c.server_pid))
        .map(|(a, b)| b - a);
    let self_storm = self_event
        .zip(proc_cpu_seconds(std::process::id()))
        .map(|(a, b)| b - a);
    let peak = run.peak_rate(event_t);
    let open_after = run.totals().signed(C::Open);
    let (out, common) = run.finish()?;
    let s = &out.counts;
    let first = s.get(C::FirstLossNs);
    let last = s.get(C::LastReconnectNs);
    let recovery = (ok && first != u64::MAX).then(|| last.saturating_sub(first) as f64 / 1e9);
    let delays = hist_json(&out.delay_us, 1000.0);
    let report = merge(
        common,
        json!({
            "scenario": "storm",
            "cause": format!("{:?}", a.cause).to_lowercase(),
            "backoff": {"base_ms": a.base_ms, "cap_ms": a.cap_ms, "max_attempts": a.max_attempts,
                        "jitter": !a.no_jitter, "honor_hint": !a.ignore_hint},
            "connections_wanted": c.connections,
            "ramp_seconds": ramp,
            "held_before_event": before,
            "lost": s.get(C::Lost),
            "reconnected": s.get(C::Reconnected),
            "reconnect_attempts": s.get(C::Attempts),
            "gave_up": s.get(C::GaveUp),
            "open_at_end": open_after,
            "recovered": ok,
            "recovery_seconds": recovery,
            "peak_connects_per_s_after_event": peak,
            "server_cpu_seconds_storm": cpu_storm,
            "server_cpu_us_per_reconnect": cpu_storm
                .filter(|_| ok && s.get(C::Reconnected) > 0)
                .map(|v| v * 1e6 / s.get(C::Reconnected) as f64),
            "reconnect_delay_ms": delays,
            // What the client looked like over the same span: its own CPU, and how often
            // the server slept and was woken per reconnect.
            "loadgen_cpu_seconds_storm": self_storm,
            "server_wakeups_per_reconnect": wake_storm
                .filter(|_| ok && s.get(C::Reconnected) > 0)
                .map(|v| v / s.get(C::Reconnected) as f64),
        }),
    );
    holdfast::say!(
        "\nstorm ({:?}, jitter {}): held {before}, lost {}, reconnected {} in {} attempts, gave up {}\n\
         {}; peak {peak:.0} connects/s; failures: {}\n\
         reconnect delays: {}\n\
         closes/statuses {:?}",
        a.cause,
        !a.no_jitter,
        s.get(C::Lost),
        s.get(C::Reconnected),
        s.get(C::Attempts),
        s.get(C::GaveUp),
        match recovery {
            Some(r) => format!("full recovery {r:.2} s after the first loss"),
            None => format!("NOT recovered within {duration} s"),
        },
        failures_line(s),
        pct_line(&delays, "ms"),
        keyed_report(&out.keyed),
    );
    run::write_json(c.json.as_deref(), &report)?;
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceiling_doubles_to_the_cap_and_jitter_stays_below_it() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 10,
            jitter: false,
            honor_hint: false,
        };
        let got: Vec<u128> = (0..7).map(|a| b.delay(a, 0).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 2000, 2000]);
        let j = Backoff { jitter: true, ..b };
        for (a, r) in [(0, u64::MAX), (3, 12345), (30, 999_999_999_999)] {
            assert!(j.delay(a, r) < b.delay(a, 0));
        }
        assert_ne!(j.delay(2, 1), j.delay(2, 2));
    }
}
