//! `fanout`: S subscribers over T topics of a holdfast pub/sub endpoint and a publisher at
//! rate P: every delivery's sequence number is checked (losses, duplicates, order, gaps)
//! and publish → delivery latency recorded from the stamp in its payload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::{Mode, Work};
use crate::cli::{FanoutArgs, PublishVia};
use crate::counters::{C, MEASURE, STEADY};
use crate::engine::{Engine, Phase};
use crate::publisher::{self, PublisherSpec, Via};
use crate::report::{hist_json, proc_cpu_seconds};
use crate::run::{self, failures_line, hard_timeout, launch, merge, pct_line, server_cpu};

/// Fanout's engine-side state.
#[derive(Debug)]
pub struct FanoutWork {
    /// Targets per topic (the URLs given): target `t` follows topic `t / per_topic`.
    pub per_topic: usize,
    /// The newest number published per topic (written by the publisher).
    pub last: Arc<[AtomicU64]>,
    /// The number the publisher was given for each message.
    pub numbering: Arc<crate::publisher::Numbering>,
}

/// What a subscriber received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Message `seq`, with the publisher's stamp (ns since the run's epoch) when it has one.
    Message {
        /// Sequence number.
        seq: u64,
        /// Publish stamp.
        stamp: Option<u64>,
    },
    /// The subscription's acknowledgement: live messages follow `seq`.
    Subscribed {
        /// Newest sequence number at subscription.
        seq: u64,
    },
    /// Messages `from..=to` are gone.
    Gap {
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// Anything else (errors, acks of other kinds).
    Other,
}

/// Read one whole delivery message: binary `[len][topic][seq BE][payload]` (the payload's
/// first 8 bytes are the stamp, little-endian) or a JSON text frame.
pub fn parse_delivery(binary: bool, msg: &[u8]) -> Parsed {
    if binary {
        let Some(&l) = msg.first() else {
            return Parsed::Other;
        };
        let l = usize::from(l);
        let Some(seq) = msg.get(1 + l..9 + l) else {
            return Parsed::Other;
        };
        let seq = u64::from_be_bytes(seq.try_into().unwrap_or([0; 8]));
        let stamp = msg
            .get(9 + l..17 + l)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
        return Parsed::Message { seq, stamp };
    }
    if let Some(p) = server_text_message(msg).or_else(|| quick_text_message(msg)) {
        return p;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(msg) else {
        return Parsed::Other;
    };
    let n = |k: &str| v[k].as_u64();
    match v["type"].as_str() {
        Some("message") => match n("seq") {
            Some(seq) => Parsed::Message {
                seq,
                // Text publishes carry the stamp as digits; binary ones reach an event
                // stream as base64 (the stamp is the payload's first 8 bytes).
                stamp: v["data"].as_str().and_then(|d| d.parse().ok()).or_else(|| {
                    let b = holdfast::ws::base64::decode(v["data_base64"].as_str()?.as_bytes())?;
                    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
                }),
            },
            None => Parsed::Other,
        },
        Some("subscribed") => n("seq").map_or(Parsed::Other, |seq| Parsed::Subscribed { seq }),
        Some("gap") => match (n("from"), n("to")) {
            (Some(from), Some(to)) => Parsed::Gap { from, to },
            _ => Parsed::Other,
        },
        _ => Parsed::Other,
    }
}

/// The common text delivery, a flat object such as
/// `{"data":"DIGITS","seq":N,"topic":"T","type":"message"}` (keys in any order), read in one
/// pass over its keys without building a JSON value. Building one per delivery
/// (allocations, a map) doubled the loadgen's CPU against text frames (7.1 vs 3.6 CPU-s for
/// 2.16M deliveries/s); then three searches for keys (one per key, from the start) were
/// still 36% of its CPU at 18k × 120/s client publishing (perf), CPU taken from the server
/// it shares the cores with. Walking the keys in order also cannot mistake a string's
/// contents for a key. A binary message's `data_base64` gives the stamp from its first 12
/// characters. Anything else (whitespace, nested values, escapes in a key or the data,
/// another type, data that is not plain digits) is left to the full parser: None.
fn quick_text_message(msg: &[u8]) -> Option<Parsed> {
    /// The end of the string whose first content byte is at `from` (the index of its
    /// closing quote), and whether it holds an escape.
    fn string_end(msg: &[u8], mut from: usize) -> Option<(usize, bool)> {
        let mut escaped = false;
        loop {
            let at = from
                + msg
                    .get(from..)?
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\')?;
            if msg[at] == b'"' {
                return Some((at, escaped));
            }
            escaped = true;
            from = at + 2;
        }
    }
    if msg.first() != Some(&b'{') {
        return None;
    }
    let (mut message, mut seq, mut stamp) = (false, None, None);
    let mut at = 1;
    loop {
        if msg.get(at) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_end(msg, at + 1)?;
        if escaped {
            return None;
        }
        let key = &msg[at + 1..end];
        if msg.get(end + 1) != Some(&b':') {
            return None;
        }
        at = end + 2;
        match *msg.get(at)? {
            b'"' => {
                let (end, escaped) = string_end(msg, at + 1)?;
                let value = &msg[at + 1..end];
                at = end + 1;
                match key {
                    b"type" => message = !escaped && value == b"message",
                    b"data" => {
                        if escaped || value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                            return None;
                        }
                        // Past u64 it is no stamp, as the full parser reads it.
                        stamp = number(value);
                    }
                    b"data_base64" => {
                        // The stamp is the payload's first 8 bytes: 12 characters.
                        let b = holdfast::ws::base64::decode(value.get(..12)?)?;
                        stamp = Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?));
                    }
                    _ => {}
                }
            }
            b'0'..=b'9' => {
                let digits = msg[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                if key == b"seq" {
                    seq = Some(number(&msg[at..at + digits])?);
                }
                at += digits;
            }
            _ => return None,
        }
        match msg.get(at)? {
            b',' => at += 1,
            b'}' if at + 1 == msg.len() => break,
            _ => return None,
        }
    }
    if !message {
        return None;
    }
    Some(Parsed::Message { seq: seq?, stamp })
}

/// The text delivery exactly as holdfast writes it, its keys in serde_json's order:
/// `{"data":"DIGITS","seq":N,"topic":"T","type":"message"}`, read by comparing its fixed
/// parts in place and converting its two numbers eight digits at a time. This is most of
/// what the loadgen reads when clients publish: in its profile at 18k × 240/s (4.3M text
/// deliveries/s) the key-walking [`quick_text_message`] was 24% of the loadgen's CPU, a
/// third of it the checked multiply per digit of the 16-digit stamp. Any other layout (key
/// order, an escape, a number past u64) is None and goes on to the readers that follow.
fn server_text_message(msg: &[u8]) -> Option<Parsed> {
    let rest = msg.strip_prefix(br#"{"data":""#)?;
    let (stamp, rest) = leading_number(rest)?;
    let rest = rest.strip_prefix(br#"","seq":"#)?;
    let (seq, rest) = leading_number(rest)?;
    let rest = rest.strip_prefix(br#","topic":""#)?;
    let close = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[close] != b'"' || &rest[close + 1..] != br#","type":"message"}"# {
        return None;
    }
    Some(Parsed::Message {
        seq,
        stamp: Some(stamp),
    })
}

/// The run of ASCII digits that `bytes` starts with, as a number, and what follows it; None
/// for no digits or a number past `u64::MAX`.
fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    // Eight bytes at a time while they are all digits (a 16-digit stamp is two steps),
    // then one at a time; 21 digits are past u64 whatever they are.
    let mut len = 0;
    while len < 16 {
        match bytes.get(len..).and_then(<[u8]>::first_chunk::<8>) {
            Some(&eight) if all_digits(u64::from_le_bytes(eight)) => len += 8,
            _ => break,
        }
    }
    while len < 21 && bytes.get(len).is_some_and(u8::is_ascii_digit) {
        len += 1;
    }
    if len == 0 {
        return None;
    }
    Some((number(&bytes[..len])?, &bytes[len..]))
}

/// Whether all eight bytes are ASCII digits: each byte's high nibble is 3, and adding 6
/// to it does not carry into that nibble (Lemire's test, without a branch per byte).
fn all_digits(eight: u64) -> bool {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    (eight & HIGH) | ((eight.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4)
        == 0x3333_3333_3333_3333
}

/// The value of at most 19 ASCII digits, eight at a time.
fn digits_value(digits: &[u8]) -> u64 {
    debug_assert!(digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit));
    let mut n = 0u64;
    let mut rest = digits;
    while let Some((eight, tail)) = rest.split_first_chunk::<8>() {
        n = n * 100_000_000 + eight_digits(u64::from_le_bytes(*eight));
        rest = tail;
    }
    rest.iter().fold(n, |n, &d| n * 10 + u64::from(d - b'0'))
}

/// Eight ASCII digits, loaded little-endian (the first digit in the lowest byte), as their
/// value: pairs, then quads, then the whole, each step one multiply (the SWAR method of
/// Lemire's "fast number parsing" work).
fn eight_digits(chunk: u64) -> u64 {
    let v = chunk - 0x3030_3030_3030_3030;
    let v = v.wrapping_mul(10 * 256 + 1) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 * 65_536 + 1) >> 16;
    (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(10_000 * (1 << 32) + 1) >> 32
}

/// Plain digits as a number; None past u64.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.len() <= 19 {
        return Some(digits_value(digits));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

impl Engine {
    /// A whole delivery: check its number against the connection's last one, and time it
    /// from its stamp.
    pub(crate) fn fanout_on_message(&mut self, idx: u32, binary: bool, msg: &[u8]) {
        let now = self.delivery_now_ns();
        let measuring = self.phase == MEASURE;
        let from = self.measure_from;
        let c = &mut self.conns[idx as usize];
        let numbering = match &self.work {
            Work::Fanout(w) => Some((usize::from(c.target) / w.per_topic.max(1), &w.numbering)),
            _ => None,
        };
        match parse_delivery(binary, msg) {
            Parsed::Subscribed { seq } => c.last_seq = seq,
            Parsed::Gap { from, to } => {
                self.counts.inc(C::FanoutGaps);
                self.counts
                    .add(C::FanoutGapMessages, to.saturating_sub(from) + 1);
                if from > c.last_seq + 1 {
                    self.counts.add(C::FanoutLost, from - c.last_seq - 1);
                }
                c.last_seq = c.last_seq.max(to);
            }
            Parsed::Message { seq, stamp } => {
                self.counts.inc(C::Messages);
                if seq == c.last_seq {
                    self.counts.inc(C::FanoutDuplicates);
                } else if seq < c.last_seq {
                    self.counts.inc(C::FanoutReordered);
                } else {
                    if seq > c.last_seq + 1 {
                        self.counts.add(C::FanoutLost, seq - c.last_seq - 1);
                    }
                    c.last_seq = seq;
                }
                if let (Some(stamp), Some((topic, n))) = (stamp, numbering) {
                    match n.check(topic, seq, stamp) {
                        Some(true) => self.counts.inc(C::FanoutChecked),
                        Some(false) => self.counts.inc(C::FanoutMisnumbered),
                        None => {}
                    }
                }
                if let Some(stamp) = stamp {
                    if measuring && stamp <= now && stamp >= from {
                        let _ = self.out.rtt_ns.record((now - stamp).max(1));
                    }
                }
            }
            Parsed::Other => {}
        }
    }

    /// At the end: messages published on each connection's topic that it never got.
    pub(crate) fn fanout_tail(&mut self) {
        let Work::Fanout(w) = &self.work else { return };
        let mut lost = 0;
        for (_, c) in self.conns.iter().filter(|(_, c)| c.phase == Phase::Open) {
            let topic = usize::from(c.target) / w.per_topic.max(1);
            let newest = w.last.get(topic).map_or(0, |a| a.load(Ordering::Relaxed));
            lost += newest.saturating_sub(c.last_seq);
        }
        self.counts.add(C::FanoutTailLost, lost);
    }
}

/// Run it; true when nothing was lost, duplicated, reordered or refused.
pub fn run(a: FanoutArgs) -> Result<bool, String> {
    let duration = a.c.duration.unwrap_or(10.0);
    let hard = hard_timeout(&a.c, duration + a.warmup + a.settle);
    if a.topics == 0 || a.topics > 65_535 / a.c.urls.len().max(1) {
        return Err("--topics must be between 1 and 65535 / number of URLs".into());
    }
    if a.size < 8 || !a.publish_rate.is_finite() || a.publish_rate <= 0.0 {
        return Err("--size must be at least 8 and --publish-rate positive".into());
    }
    let via = match a.publish_via {
        PublishVia::Admin | PublishVia::AdminText => Via::Admin(
            a.admin
                .clone()
                .ok_or("--publish-via admin needs --admin host:port")?,
        ),
        PublishVia::Ws => Via::Ws(a.c.urls[0].clone()),
    };
    let topics: Vec<String> = (0..a.topics)
        .map(|k| format!("{}{k}", a.topic_prefix))
        .collect();
    // Targets topic by topic: target t subscribes to topic t / urls.
    let mut c = a.c.clone();
    c.urls = topics
        .iter()
        .flat_map(|t| {
            a.c.urls.iter().map(move |u| {
                let sep = if u.contains('?') { '&' } else { '?' };
                format!("{u}{sep}topics={t}")
            })
        })
        .collect();
    let last: Arc<[std::sync::atomic::AtomicU64]> =
        (0..a.topics).map(|_| Default::default()).collect();
    let numbering = Arc::new(publisher::Numbering::new(a.topics));
    let mut run = launch(
        &c,
        Mode::Fanout {
            per_topic: a.c.urls.len(),
            last: last.clone(),
            numbering: numbering.clone(),
        },
    )?;
    run.urls = a.c.urls.clone();
    let ramp = run.ramp(c.connections, hard);
    // Subscriptions are acknowledged right behind the 101; give the last ones a moment.
    let settle_subs = run.t() + 0.5;
    while run.t() < settle_subs && run.live(hard) {
        run.step("subscribe");
    }
    run.control.set_phase(STEADY);
    let spec = PublisherSpec {
        via,
        topics: topics.clone(),
        rate: a.publish_rate,
        size: a.size,
        text: a.publish_via == PublishVia::AdminText,
    };
    let pub_stop = Arc::new(AtomicBool::new(false));
    let out_pub = Arc::new(publisher::Published {
        sent: Default::default(),
        errors: Default::default(),
        last,
        numbering,
    });
    let publisher = {
        let (ctl, stop, o) = (run.control.clone(), pub_stop.clone(), out_pub.clone());
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || publisher::publish(&spec, &ctl, &stop, &o))
            .map_err(|e| e.to_string())?
    };
    let (cpu0, self0) = run.start_measuring(a.warmup, hard, c.server_pid);
    // Deliveries, bytes and reads so far: the window's figures are differences.
    let reading =
        |t: &crate::counters::Counts| (t.get(C::Messages), t.get(C::BytesIn), t.get(C::Reads));
    let (totals0, sent0) = (run.totals(), out_pub.sent.load(Ordering::Relaxed));
    let (msgs0, bytes0, reads0) = reading(&totals0);
    // How far behind this client read, beside the latency it reports (each server once).
    let servers: std::collections::BTreeSet<_> =
        a.c.urls
            .iter()
            .filter_map(|u| crate::target::parse_url(u, None).ok())
            .map(|t| t.addr)
            .collect();
    let unread = crate::unread::Sampler::start(servers.into_iter().collect());
    let t0 = run.t();
    while run.t() - t0 < duration && run.live(hard) && !publisher.is_finished() {
        run.step("measure");
    }
    let elapsed = run.t() - t0;
    let (totals1, sent1) = (run.totals(), out_pub.sent.load(Ordering::Relaxed));
    let (msgs1, bytes1, reads1) = reading(&totals1);
    let unread = unread.stop();
    let (cpu1, self1) = (
        server_cpu(c.server_pid),
        proc_cpu_seconds(std::process::id()),
    );
    pub_stop.store(true, Ordering::Relaxed);
    let pub_result = publisher
        .join()
        .map_err(|_| "the publisher panicked".to_string())?;
    // Let deliveries in flight arrive: until the count stops moving (bounded).
    let settle_end = run.t() + a.settle;
    let mut seen = (run.totals().get(C::Messages), run.t());
    while run.t() < settle_end && run.live(hard) {
        run.step("settle");
        let m = run.totals().get(C::Messages);
        if m != seen.0 {
            seen = (m, run.t());
        } else if run.t() - seen.1 >= 0.5 {
            break;
        }
    }
    run.control.set_phase(STEADY);
    let open = run.totals().signed(C::Open);
    let (out, common) = run.finish()?;
    let s = &out.counts;
    let server_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let self_cpu_s = self0.zip(self1).map(|(a, b)| b - a);
    let lat = hist_json(&out.rtt_ns, 1000.0);
    let deliveries = msgs1 - msgs0;
    // How the server batched: a read takes what its sends left in the socket, one send's
    // worth while this client keeps up (client unread near 0), more when it fell behind.
    let reads = reads1 - reads0;
    let per_read = (reads > 0).then(|| deliveries as f64 / reads as f64);
    let rate = deliveries as f64 / elapsed.max(1e-9);
    let load = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let (checked, misnumbered) = (s.get(C::FanoutChecked), s.get(C::FanoutMisnumbered));
    let (lost, tail, dups, reord, gaps, gapm) = (
        s.get(C::FanoutLost),
        s.get(C::FanoutTailLost),
        s.get(C::FanoutDuplicates),
        s.get(C::FanoutReordered),
        s.get(C::FanoutGaps),
        s.get(C::FanoutGapMessages),
    );
    let publish_errors = load(&out_pub.errors);
    let report = merge(
        common,
        json!({
            "scenario": "fanout",
            "subscribers_wanted": c.connections,
            "subscribers_open": open,
            "topics": a.topics,
            "publish_via": format!("{:?}", a.publish_via).to_lowercase(),
            "publish_rate_target": a.publish_rate,
            "payload_bytes": a.size,
            "ramp_seconds": ramp,
            "measure_seconds": elapsed,
            "published_total": load(&out_pub.sent),
            "published_during_measurement": sent1 - sent0,
            "publish_errors": publish_errors,
            "publisher_error": pub_result.as_ref().err(),
            "deliveries_during_measurement": deliveries,
            "deliveries_per_s": rate,
            "deliveries_timed": out.rtt_ns.len(),
            "publish_to_delivery_us": lat,
            "lost_in_stream": lost,
            "lost_at_end": tail,
            "duplicates": dups,
            "reordered": reord,
            "gaps": gaps,
            "gap_messages": gapm,
            "numbers_checked": checked,
            "misnumbered": misnumbered,
            "server_cpu_seconds": server_cpu_s,
            "deliveries_per_server_cpu_s": server_cpu_s.map(|v| deliveries as f64 / v.max(1e-9)),
            "loadgen_cpu_seconds": self_cpu_s,
            "client_reads": reads,
            "deliveries_per_read": per_read,
            // Bytes delivered to this client and not yet read, every 3 s of the window:
            // its own part of the latency (`unread`).
            "client_unread": crate::unread::summary(&unread, (bytes1 - bytes0) as f64 / elapsed.max(1e-9)),
        }),
    );
    holdfast::say!(
        "
fanout ({} subscribers, {} topics, {} msgs/s via {:?}): {deliveries} deliveries in {elapsed:.1} s = {rate:.0}/s
         publish→delivery: {}
         {reads} reads{}
         lost {lost} in stream + {tail} at the end, duplicates {dups}, reordered {reord}, gaps {gaps} ({gapm} msgs);\n         numbering: {checked} deliveries checked against the publisher's answer, {misnumbered} misnumbered;\n         publish errors {publish_errors}; failures: {}{}",
        c.connections,
        a.topics,
        a.publish_rate,
        a.publish_via,
        pct_line(&lat, "µs"),
        per_read.map_or(String::new(), |v| format!(" = {v:.1} deliveries per read")),
        failures_line(s),
        server_cpu_s.map_or(String::new(), |v| format!(
            "; server CPU {v:.2} s = {:.0} deliveries per server-CPU-s",
            deliveries as f64 / v.max(1e-9)
        )),
    );
    if let Err(e) = &pub_result {
        eprintln!("publisher: {e}");
    }
    run::write_json(c.json.as_deref(), &report)?;
    Ok(pub_result.is_ok()
        && s.failed() == 0
        && lost + tail + dups + reord + gaps + publish_errors + misnumbered == 0
        && !out.rtt_ns.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_text_reader_agrees_with_the_full_parser() {
        let cases: [&[u8]; 19] = [
            br#"{"data":"123","seq":7,"topic":"t","type":"message"}"#,
            br#"{"type":"message","topic":"a","seq":18446744073709551615,"data":"99"}"#,
            br#"{"type":"message","topic":"a\"seq\":5","seq":6,"data":"1"}"#,
            br#"{"type":"message","topic":"a","seq":6,"data":"x1"}"#,
            br#"{"type":"message","topic":"a","seq":6,"data":""}"#,
            br#"{"type":"message","topic":"a","seq":6,"data_base64":"AQIDBAUGBwg="}"#,
            br#"{"type":"subscribed","topic":"a","seq":3}"#,
            br#"{"type":"message","topic":"a","data":"5"}"#,
            // A stamp past u64 (read as no stamp, as the full parser reads it) and an
            // escaped digit in the data (left to the full parser).
            br#"{"data":"123456789012345678901234","seq":7,"topic":"t","type":"message"}"#,
            br#"{"data":"12\u0033","seq":7,"topic":"t","type":"message"}"#,
            // Base64 too short for a stamp (a payload under 8 bytes), and a longer one.
            br#"{"type":"message","topic":"a","seq":6,"data_base64":"AQID"}"#,
            br#"{"type":"message","topic":"a","seq":9,"data_base64":"AQIDBAUGBwgJCgsM"}"#,
            // The data key's first bytes inside a string.
            br#"{"type":"message","topic":"x\"data","seq":6,"data":"7"}"#,
            // Shapes the one pass leaves to the full parser: whitespace, nested data, a
            // fraction, an escaped type; then a key after a string ending in an escaped
            // backslash (read by the one pass).
            br#"{ "type":"message","seq":6,"data":"7"}"#,
            br#"{"type":"message","seq":6,"data":{"a":"7"}}"#,
            br#"{"type":"message","seq":6.5,"data":"7"}"#,
            br#"{"type":"m\u0065ssage","seq":6,"data":"7"}"#,
            br#"{"topic":"a\\","seq":8,"type":"message","data":"3"}"#,
            // A seq past u64 (the full parser reads a float: no message).
            br#"{"type":"message","seq":18446744073709551616,"data":"7"}"#,
        ];
        for c in cases {
            let quick = quick_text_message(c);
            let full = {
                let v: serde_json::Value = serde_json::from_slice(c).unwrap();
                (v["type"] == "message").then(|| match v["seq"].as_u64() {
                    Some(seq) => Parsed::Message {
                        seq,
                        stamp: v["data"].as_str().and_then(|d| d.parse().ok()).or_else(|| {
                            let b64 = v["data_base64"].as_str()?;
                            let b = holdfast::ws::base64::decode(b64.as_bytes())?;
                            Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
                        }),
                    },
                    None => Parsed::Other,
                })
            };
            if let Some(q) = &quick {
                assert_eq!(Some(q), full.as_ref(), "{}", String::from_utf8_lossy(c));
            }
            // What the quick reader leaves goes to the full parser, and agrees there too.
            if let Some(Parsed::Message { .. }) = full {
                assert!(matches!(parse_delivery(false, c), Parsed::Message { .. }));
            }
        }
        assert!(quick_text_message(cases[0]).is_some() && quick_text_message(cases[2]).is_some());
        assert!(quick_text_message(cases[3]).is_none() && quick_text_message(cases[10]).is_none());
        assert_eq!(
            quick_text_message(cases[5]),
            Some(Parsed::Message {
                seq: 6,
                stamp: Some(u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]))
            })
        );
        assert!(quick_text_message(cases[11]).is_some());
        // Keys are walked, so a key-like string inside a value does not mislead the reader.
        assert_eq!(
            quick_text_message(cases[12]),
            Some(Parsed::Message {
                seq: 6,
                stamp: Some(7)
            })
        );
        assert_eq!(
            quick_text_message(cases[17]),
            Some(Parsed::Message {
                seq: 8,
                stamp: Some(3)
            })
        );
        for c in &cases[13..17] {
            assert_eq!(
                quick_text_message(c),
                None,
                "{}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn digits_are_read_eight_at_a_time_as_a_plain_parse_reads_them() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut values: Vec<u64> = vec![0, 7, 10_000_000, 99_999_999, 100_000_000];
        values.extend((0..19).map(|k| 10u64.pow(k)));
        values.extend((1..19).map(|k| 10u64.pow(k) - 1));
        values.push(9_999_999_999_999_999_999);
        values.push(u64::MAX); // 20 digits: past the fast reader, to the checked one
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            let text = v.to_string();
            assert_eq!(number(text.as_bytes()), Some(v), "{text}");
            // Leading zeros too, up to the 19 digits the fast reader takes.
            let padded = format!("{v:019}");
            if padded.len() == 19 {
                assert_eq!(digits_value(padded.as_bytes()), v, "{padded}");
            }
        }
        assert_eq!(number(b"18446744073709551616"), None, "past u64");
        assert_eq!(leading_number(b"12x"), Some((12, &b"x"[..])));
        assert_eq!(
            leading_number(b"1234567890123456\",\"seq\""),
            Some((1_234_567_890_123_456, &b"\",\"seq\""[..]))
        );
        // Every byte that is not a digit stops the run, wherever in a group of eight it is.
        for b in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
            for at in 0..8 {
                let mut eight = *b"12345678";
                eight[at] = b;
                assert!(!all_digits(u64::from_le_bytes(eight)), "{b} at {at}");
                let mut text = b"9876543212345678".to_vec();
                text[8 + at] = b;
                let want = std::str::from_utf8(&text[..8 + at])
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(leading_number(&text).map(|(n, _)| n), Some(want));
            }
        }
        assert!(all_digits(u64::from_le_bytes(*b"09090909")));
        assert_eq!(leading_number(b"x12"), None);
        assert_eq!(
            leading_number(b"18446744073709551615,"),
            Some((u64::MAX, &b","[..]))
        );
        assert_eq!(leading_number(b"18446744073709551616"), None, "past u64");
        assert_eq!(leading_number(b"100000000000000000000"), None, "21 digits");
        assert_eq!(
            leading_number(b"1234567890123456789"),
            Some((1_234_567_890_123_456_789, &b""[..]))
        );
    }

    #[test]
    fn the_servers_own_text_deliveries_are_read_in_place() {
        use holdfast::pubsub::delivery::{encode_delivery, Payload};
        for (topic, seq, stamp) in [
            ("fanout.0", 1, 1_234_567_890_123_456u64),
            ("t", u64::MAX, 0),
            ("a-b_c.d", 42, 9_999_999_999_999_999_999),
            ("ü", 7, 5),
        ] {
            let data = stamp.to_string();
            let frame = encode_delivery(topic, seq, Payload::Text(&data));
            let body = if frame[1] < 126 {
                &frame[2..]
            } else {
                &frame[4..]
            };
            let want = Parsed::Message {
                seq,
                stamp: Some(stamp),
            };
            // If the server's layout changes, the in-place reader stops matching: this fails.
            assert_eq!(server_text_message(body), Some(want), "{topic}");
            assert_eq!(parse_delivery(false, body), want);
        }
        // Anything else is left to the readers after it, which still read it.
        let others: [&[u8]; 7] = [
            br#"{"type":"message","topic":"t","seq":6,"data":"7"}"#,
            br#"{"data":"7","seq":6,"topic":"a\"","type":"message"}"#,
            br#"{"data":"18446744073709551616","seq":6,"topic":"t","type":"message"}"#,
            br#"{"data":"7","seq":6,"topic":"t","type":"messages"}"#,
            br#"{"data":"7","seq":6,"topic":"t","type":"message"} "#,
            br#"{"data":"","seq":6,"topic":"t","type":"message"}"#,
            br#"{"data":"7","seq":,"topic":"t","type":"message"}"#,
        ];
        for m in others {
            assert_eq!(
                server_text_message(m),
                None,
                "{}",
                String::from_utf8_lossy(m)
            );
        }
        assert_eq!(
            parse_delivery(false, others[0]),
            Parsed::Message {
                seq: 6,
                stamp: Some(7)
            }
        );
        assert_eq!(
            parse_delivery(false, others[1]),
            Parsed::Message {
                seq: 6,
                stamp: Some(7)
            }
        );
        assert_eq!(
            parse_delivery(false, others[2]),
            Parsed::Message {
                seq: 6,
                stamp: None
            },
            "a stamp past u64 is no stamp, as the full parser reads it"
        );
        assert_eq!(parse_delivery(false, others[3]), Parsed::Other);
    }

    #[test]
    fn deliveries_parse_in_both_encodings() {
        let mut b = vec![3];
        b.extend_from_slice(b"t.1");
        b.extend_from_slice(&42u64.to_be_bytes());
        b.extend_from_slice(&123_456u64.to_le_bytes());
        assert_eq!(
            parse_delivery(true, &b),
            Parsed::Message {
                seq: 42,
                stamp: Some(123_456)
            }
        );
        assert_eq!(
            parse_delivery(true, &b[..12]),
            Parsed::Message {
                seq: 42,
                stamp: None
            }
        );
        assert_eq!(parse_delivery(true, &b[..5]), Parsed::Other);
        assert_eq!(
            parse_delivery(
                false,
                br#"{"type":"message","topic":"a","seq":7,"data":"99"}"#
            ),
            Parsed::Message {
                seq: 7,
                stamp: Some(99)
            }
        );
        assert_eq!(
            parse_delivery(false, br#"{"type":"subscribed","topic":"a","seq":3}"#),
            Parsed::Subscribed { seq: 3 }
        );
        assert_eq!(
            parse_delivery(false, br#"{"type":"gap","topic":"a","from":4,"to":9}"#),
            Parsed::Gap { from: 4, to: 9 }
        );
        assert_eq!(parse_delivery(false, b"nonsense"), Parsed::Other);
    }
}
