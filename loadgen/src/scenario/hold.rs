//! `hold`: ramp to N connections, hold them for a duration answering pings, close cleanly.
//! Its connections need nothing beyond what the engine does for every connection.

use serde_json::json;

use crate::cli::HoldArgs;
use crate::counters::{keyed_report, C};
use crate::report::{hist_json, proc_cpu_seconds, settled_cpu};
use crate::run::{
    self, failures_line, hard_timeout, launch, merge, pct_line, per_item, server_cpu,
    server_wakeups,
};
use crate::scenario::Mode;

/// Run it; true when every connection was established and held to the end.
pub fn run(a: HoldArgs) -> Result<bool, String> {
    let c = &a.c;
    let duration = c.duration.unwrap_or(10.0);
    let hard = hard_timeout(c, duration);
    let (cpu0, wake0) = (server_cpu(c.server_pid), server_wakeups(c.server_pid));
    let self0 = proc_cpu_seconds(std::process::id());
    let mut run = launch(c, Mode::Hold)?;
    let ramp = run.ramp(c.connections, hard);
    let (cpu_ramp, wake_ramp) = (server_cpu(c.server_pid), server_wakeups(c.server_pid));
    let self_ramp = proc_cpu_seconds(std::process::id());
    let peak = run.peak_rate(0.0);
    if let Some(r) = ramp {
        while run.t() - r < duration && run.live(hard) {
            run.step("hold");
        }
    }
    let held = run.totals().signed(C::Open);
    // The teardown: every held connection closes (Close, echo, TCP close). The server's
    // CPU is read once its last closes are done: when it is back at rest ([`settle`]).
    let (cpu_hold, wake_hold) = (server_cpu(c.server_pid), server_wakeups(c.server_pid));
    let self_hold = proc_cpu_seconds(std::process::id());
    let (out, common) = run.finish()?;
    let self_closed = proc_cpu_seconds(std::process::id());
    let cpu_closed = settled_cpu(c.server_pid);
    let wake_closed = server_wakeups(c.server_pid);
    let held_n = held.max(0) as u64;
    let cpu_per_close = per_item(cpu_hold, cpu_closed, held_n, 1e6);
    let s = &out.counts;
    let established = s.get(C::Established);
    let cpu_per_upgrade = per_item(cpu0, cpu_ramp, established, 1e6);
    // Connections established and then lost (reset, closed by the server, a long poll
    // whose next request failed) are no failure to connect: they are said apart, and a run
    // that lost any did not hold what it was asked to.
    let lost = (established as i64 - held).max(0);
    let lost_line = match lost {
        0 => String::new(),
        n => format!(" ({n} lost after being established: see closes/statuses)"),
    };
    let report = merge(
        common,
        json!({
            "scenario": "hold",
            "connections_wanted": c.connections,
            "held_at_end": held,
            "lost_after_established": lost,
            "ramp_seconds": ramp,
            "peak_upgrades_per_s": peak,
            "server_cpu_us_per_upgrade": cpu_per_upgrade,
            "server_cpu_us_per_close": cpu_per_close,
            "server_cpu_seconds_ramp": cpu0.zip(cpu_ramp).map(|(a, b)| b - a),
            "loadgen_cpu_seconds_ramp": self0.zip(self_ramp).map(|(a, b)| b - a),
            // What the client looked like: its own CPU per connection, and how often the
            // server slept and was woken per connection (batched arrivals wake it less).
            "loadgen_cpu_us_per_upgrade": per_item(self0, self_ramp, established, 1e6),
            "loadgen_cpu_us_per_close": per_item(self_hold, self_closed, held_n, 1e6),
            "server_wakeups_per_upgrade": per_item(wake0, wake_ramp, established, 1.0),
            "server_wakeups_per_close": per_item(wake_hold, wake_closed, held_n, 1.0),
        }),
    );
    holdfast::say!(
        "\nhold: {established} of {} established, {held} held at the end{lost_line}; failures: {}\n\
         connect+upgrade latency: {}\n\
         ramp {:.1} s, peak {:.0} upgrades/s{}{}; closes/statuses {:?}",
        c.connections,
        failures_line(s),
        pct_line(&hist_json(&out.connect_us, 1.0), "µs"),
        ramp.unwrap_or(f64::NAN),
        peak,
        cpu_per_upgrade.map_or(String::new(), |v| format!(
            ", server {v:.1} CPU-µs per upgrade"
        )),
        cpu_per_close.map_or(String::new(), |v| format!(", {v:.1} per close")),
        keyed_report(&out.keyed)
    );
    run::write_json(c.json.as_deref(), &report)?;
    Ok(established as usize == c.connections && lost == 0)
}
