//! `echo`: C connections exchanging B-byte messages stamped with their intended send time.
//! Closed loop (the next message after each reply) or open loop (on a schedule, so latency
//! includes the time a message waited: no coordinated omission).

use std::time::{Duration, Instant};

use holdfast::ws::frame::encode_frame;
use holdfast::ws::OpCode;
use serde_json::json;

use super::{Mode, Work};
use crate::cli::EchoArgs;
use crate::counters::{C, MEASURE, STEADY};
use crate::engine::{Engine, Phase, MASK, MAX_QUEUED};
use crate::report::{hist_json, proc_cpu_seconds};
use crate::run::{self, failures_line, hard_timeout, launch, merge, pct_line, server_cpu};

/// Echo's engine-side state.
#[derive(Debug)]
pub struct EchoWork {
    /// A whole masked message with a zero stamp, copied and stamped per send.
    template: Vec<u8>,
    size: usize,
    /// Open loop: messages per second from this engine.
    rate: Option<f64>,
    /// Open loop: start of the schedule and messages scheduled so far.
    schedule: Option<(Instant, u64)>,
    /// Open loop: open connections (index, generation), taken in turn.
    rr: Vec<(u32, u32)>,
    rr_pos: usize,
    /// Closed loop: round trips have started (each open connection has one message in
    /// flight; a connection that opens later starts its own).
    started: bool,
}

impl EchoWork {
    /// State for `size`-byte messages, closed loop or at `rate`.
    pub fn new(size: usize, rate: Option<f64>) -> Self {
        let mut template = Vec::with_capacity(size + 14);
        encode_frame(
            &mut template,
            true,
            OpCode::Binary,
            Some(MASK),
            &vec![0u8; size],
        );
        Self {
            template,
            size,
            rate,
            schedule: None,
            rr: Vec::new(),
            rr_pos: 0,
            started: false,
        }
    }
}

impl Engine {
    fn echo(&mut self) -> &mut EchoWork {
        match &mut self.work {
            Work::Echo(w) => w,
            _ => unreachable!("echo hooks run only in echo mode"),
        }
    }

    pub(crate) fn echo_on_open(&mut self, idx: u32) {
        let generation = self.conns[idx as usize].socket.generation();
        let w = self.echo();
        if w.rate.is_some() {
            w.rr.push((idx, generation));
        } else if w.started {
            let now = self.now_ns();
            self.send_echo(idx, now);
        }
    }

    /// The run moved on: the closed loop starts a round trip on every open connection, once
    /// (the run moves on more than once: from the ramp to steady, then to measuring, and a
    /// second start would put two messages in flight on every connection); the open loop
    /// starts its schedule.
    pub(crate) fn echo_start(&mut self) {
        match self.echo().rate {
            None => {
                if std::mem::replace(&mut self.echo().started, true) {
                    return;
                }
                for idx in self.open_conns() {
                    let now = self.now_ns();
                    self.send_echo(idx, now);
                }
            }
            Some(_) => {
                let w = self.echo();
                if w.schedule.is_none() {
                    w.schedule = Some((Instant::now(), 0));
                }
            }
        }
    }

    fn send_echo(&mut self, idx: u32, stamp: u64) {
        let Work::Echo(w) = &self.work else { return };
        let c = &mut self.conns[idx as usize];
        if c.phase != Phase::Open {
            return;
        }
        if c.queued.len() + w.template.len() > MAX_QUEUED {
            self.counts.inc(C::EchoSkipped);
            return;
        }
        let at = c.queued.len();
        c.queued.extend_from_slice(&w.template);
        let payload = at + w.template.len() - w.size;
        for (i, b) in stamp.to_le_bytes().iter().enumerate() {
            c.queued[payload + i] = b ^ MASK[i % 4];
        }
        self.counts.inc(C::EchoSent);
        self.flush(idx);
    }

    /// A whole echoed message: check it is ours, record the round trip, and (closed loop)
    /// send the next.
    pub(crate) fn echo_on_message(&mut self, idx: u32, msg: &[u8]) {
        self.counts.inc(C::Messages);
        let now = self.now_ns();
        let (size, rate) = {
            let w = self.echo();
            (w.size, w.rate)
        };
        let stamp = msg
            .get(..8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
        match stamp {
            Some(stamp) if msg.len() == size && stamp <= now => {
                if self.phase == MEASURE && stamp >= self.measure_from {
                    // The histogram is the count of measured round trips.
                    let _ = self.out.rtt_ns.record((now - stamp).max(1));
                }
            }
            _ => self.counts.inc(C::EchoMismatch),
        }
        if rate.is_none() && !self.stopping() {
            self.send_echo(idx, now);
        }
    }

    /// Open loop: send every message whose intended time has come, stamped with that time.
    pub(crate) fn echo_pace(&mut self, now: Instant) -> Option<Duration> {
        let epoch = self.spec.control.epoch;
        let w = self.echo();
        let rate = w.rate?;
        let (t0, mut sent) = w.schedule?;
        // Message k is intended at t0 + k / rate: due are those whose time has come (k = 0
        // at t0 itself). Counting only whole intervals passed sent each one an interval
        // late, and its round trip then included that interval (20 ms at 50 messages/s).
        let due = ((now - t0).as_secs_f64() * rate) as u64 + 1;
        // Bounded per tick; a schedule that falls further behind shows up as latency.
        let mut budget = 100_000;
        while sent < due && budget > 0 {
            budget -= 1;
            let intended = t0 + Duration::from_secs_f64(sent as f64 / rate);
            let stamp = (intended - epoch).as_nanos() as u64;
            sent += 1;
            let Some(idx) = self.next_open() else {
                self.counts.inc(C::EchoSkipped);
                continue;
            };
            self.send_echo(idx, stamp);
        }
        self.echo().schedule = Some((t0, sent));
        let next = t0 + Duration::from_secs_f64(sent as f64 / rate);
        Some(
            next.saturating_duration_since(now)
                .max(Duration::from_micros(200)),
        )
    }

    fn next_open(&mut self) -> Option<u32> {
        let Work::Echo(w) = &mut self.work else {
            return None;
        };
        while !w.rr.is_empty() {
            if w.rr_pos >= w.rr.len() {
                w.rr_pos = 0;
            }
            let (idx, generation) = w.rr[w.rr_pos];
            if self
                .conns
                .get(idx as usize)
                .is_some_and(|c| c.socket.generation() == generation && c.phase == Phase::Open)
            {
                w.rr_pos += 1;
                return Some(idx);
            }
            w.rr.swap_remove(w.rr_pos);
        }
        None
    }
}

/// Run it; true when round trips were measured with no failure and no mismatch.
pub fn run(a: EchoArgs) -> Result<bool, String> {
    let c = &a.c;
    let duration = c.duration.unwrap_or(10.0);
    let hard = hard_timeout(c, duration + a.warmup);
    let mut run = launch(
        c,
        Mode::Echo {
            size: a.size,
            rate: a.message_rate,
        },
    )?;
    let ramp = run.ramp(c.connections, hard);
    run.control.set_phase(STEADY);
    let (cpu0, self0) = run.start_measuring(a.warmup, hard, c.server_pid);
    let sent0 = run.totals().get(C::EchoSent);
    let t0 = run.t();
    while run.t() - t0 < duration && run.live(hard) {
        run.step("measure");
    }
    let elapsed = run.t() - t0;
    // Recording stops here (engines see it at their next tick; the histogram, not the
    // counter, is the exact count).
    run.control.set_phase(STEADY);
    let totals = run.totals();
    let sent = totals.get(C::EchoSent) - sent0;
    let (cpu1, self1) = (
        server_cpu(c.server_pid),
        proc_cpu_seconds(std::process::id()),
    );
    let open = totals.signed(C::Open);
    let (out, common) = run.finish()?;
    let s = &out.counts;
    let server_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let self_cpu_s = self0.zip(self1).map(|(a, b)| b - a);
    let rtt = hist_json(&out.rtt_ns, 1000.0);
    let echoed = out.rtt_ns.len();
    let rate = echoed as f64 / elapsed.max(1e-9);
    let report = merge(
        common,
        json!({
            "scenario": "echo",
            "loop": if a.message_rate.is_some() { "open" } else { "closed" },
            "connections_wanted": c.connections,
            "open_during_measurement": open,
            "ramp_seconds": ramp,
            "message_bytes": a.size,
            "target_messages_per_s": a.message_rate,
            "measure_seconds": elapsed,
            "messages_sent": sent,
            "round_trips": echoed,
            "messages_per_s": rate,
            "rtt_us": rtt,
            "echo_mismatch": s.get(C::EchoMismatch),
            "sends_skipped_backlog": s.get(C::EchoSkipped),
            "server_cpu_seconds": server_cpu_s,
            "messages_per_server_cpu_s": server_cpu_s.map(|v| echoed as f64 / v.max(1e-9)),
            "loadgen_cpu_seconds": self_cpu_s,
        }),
    );
    holdfast::say!(
        "\necho ({} loop, {} connections, {} B): {echoed} round trips in {elapsed:.1} s = {rate:.0} msgs/s\n\
         rtt: {}\n\
         sent {sent}, mismatched {}, skipped (backlog) {}; failures: {}{}; loadgen CPU {:.2} s",
        if a.message_rate.is_some() { "open" } else { "closed" },
        c.connections,
        a.size,
        pct_line(&rtt, "µs"),
        s.get(C::EchoMismatch),
        s.get(C::EchoSkipped),
        failures_line(s),
        server_cpu_s.map_or(String::new(), |v| format!(
            "; server CPU {v:.2} s = {:.0} msgs per server-CPU-s",
            echoed as f64 / v.max(1e-9)
        )),
        self_cpu_s.unwrap_or(f64::NAN),
    );
    run::write_json(c.json.as_deref(), &report)?;
    Ok(s.failed() == 0 && echoed > 0 && s.get(C::EchoMismatch) == 0)
}
