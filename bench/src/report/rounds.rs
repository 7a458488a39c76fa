//! Repeated measurements: steps run in interleaved rounds, their medians and spread, and a
//! fan-out row made from its rounds. The machine is noisy (a sub-millisecond fan-out tail
//! moves several-fold from one run to the next), so a figure the report judges is the
//! median of its rounds, with their minimum and maximum beside it.

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Run `step` for each of `steps` in turn, `rounds` times (at least once): each step's
/// results in round order. Interleaved, the host's drift over the minutes this takes falls
/// on every step alike.
pub(super) fn interleaved<S, T>(
    rounds: usize,
    steps: &[S],
    mut step: impl FnMut(usize, &S) -> Result<T, String>,
) -> Result<Vec<Vec<T>>, String> {
    let mut out: Vec<Vec<T>> = steps.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds.max(1) {
        for (i, s) in steps.iter().enumerate() {
            out[i].push(step(round, s)?);
        }
    }
    Ok(out)
}

/// The median of the figures in `v` with their minimum and maximum (missing figures left
/// out; `null`s when none is left).
pub(super) fn median_spread(v: &[Option<f64>]) -> Value {
    let mut v: Vec<f64> = v
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    };
    json!({"median": median, "min": v.first(), "max": v.last(), "n": v.len()})
}

/// The index of the median of `v` (the lower middle of an even count; missing figures sort
/// first), 0 when `v` is empty.
pub(super) fn median_index(v: &[Option<f64>]) -> usize {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| match (v[a], v[b]) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (x, y) => x.is_some().cmp(&y.is_some()),
    });
    idx.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// A histogram from its JSON form (`holdfast_loadgen::report::hist_json`), with the divisor
/// that turns its recorded unit into the display unit.
pub(super) fn decode_hist(h: &Value) -> Option<(Histogram<u64>, f64)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h["hdr_v2_deflate_base64"].as_str()?)
        .ok()?;
    let hist = Deserializer::new().deserialize(&mut &raw[..]).ok()?;
    Some((hist, h["recorded_unit_divisor"].as_f64()?))
}

/// The latency percentiles a fan-out row is judged on.
pub(super) const LATENCY_KEYS: [&str; 3] = ["p50", "p99", "p99.9"];

/// Fan-out run `run`'s latency percentile `k` in µs: the median of its rounds when it had
/// several, else its one run's.
pub(super) fn latency_us(run: &Value, k: &str) -> Option<f64> {
    run["latency_rounds_us"][k]["median"]
        .as_f64()
        .or_else(|| run["latency_us"][k].as_f64())
}

/// One fan-out row from the rounds of a step (the loadgen's rows of `fanout_step`, same
/// server, case and placement, each on a fresh server):
/// - deliveries/s, deliveries per server-CPU-s, CPU seconds and deliveries per read are the
///   medians of the rounds, with the spread of the per-CPU figure;
/// - latency p50 / p99 / p99.9: the medians of the rounds' own percentiles, with their
///   spread (`latency_rounds_us`); `latency_us` holds every round's deliveries in one
///   histogram (the chart's CDF), its percentiles those of the pooled deliveries;
/// - published and measure_seconds: the round that published least per second, so that a
///   server that fell behind in any round is judged as behind;
/// - losses, duplicates, reordering and gaps, and the independent client's publishes
///   unanswered and refused: summed over the rounds (any is a defect or a refusal);
/// - met: only when every round met its rate; client unread and CPUs: the median round's.
pub(super) fn fanout_row(tries: &[Value]) -> Value {
    let Some(first) = tries.first() else {
        return Value::Null;
    };
    let figures =
        |key: &str| -> Vec<Option<f64>> { tries.iter().map(|v| v[key].as_f64()).collect() };
    let per_cpu = figures("deliveries_per_server_cpu_s");
    let mut row = tries[median_index(&per_cpu)].clone();
    row["rounds"] = json!(tries.len());
    if tries.len() == 1 {
        return row;
    }
    for key in [
        "deliveries_per_s",
        "deliveries_per_server_cpu_s",
        "server_cpu_seconds",
        "loadgen_cpu_seconds",
        "deliveries_per_read",
        "deliveries",
    ] {
        row[key] = median_spread(&figures(key))["median"].clone();
    }
    row["deliveries_per_server_cpu_s_spread"] = median_spread(&per_cpu);
    let mut rounds = json!({});
    for k in LATENCY_KEYS {
        let v: Vec<Option<f64>> = tries.iter().map(|t| t["latency_us"][k].as_f64()).collect();
        rounds[k] = median_spread(&v);
    }
    row["latency_rounds_us"] = rounds;
    // A client that gives percentiles only (the independent one) keeps the median round's.
    if let Some(pooled) = pooled_latency(tries) {
        row["latency_us"] = pooled;
    }
    let rate = |t: &Value| {
        let (p, s) = (t["published"].as_f64(), t["measure_seconds"].as_f64());
        p.zip(s).map_or(f64::INFINITY, |(p, s)| p / s.max(1e-9))
    };
    if let Some(worst) = tries.iter().min_by(|a, b| rate(a).total_cmp(&rate(b))) {
        row["published"] = worst["published"].clone();
        row["measure_seconds"] = worst["measure_seconds"].clone();
    }
    for key in [
        "lost",
        "lost_in_stream",
        "unreceived_at_end",
        "duplicates",
        "reordered",
        "gaps",
        "publishes_unanswered",
        "publishes_refused",
    ] {
        // A figure a client does not count (null) stays null.
        let counts: Vec<u64> = tries.iter().filter_map(|t| t[key].as_u64()).collect();
        if !counts.is_empty() {
            row[key] = json!(counts.iter().sum::<u64>());
        }
    }
    if !first["met"].is_null() {
        row["met"] = json!(tries.iter().all(|t| t["met"] == true));
    }
    row
}

/// Every round's deliveries in one histogram, as the loadgen writes one (None when a round
/// has none that decodes).
fn pooled_latency(tries: &[Value]) -> Option<Value> {
    let mut pooled: Option<(Histogram<u64>, f64)> = None;
    for t in tries {
        let (h, div) = decode_hist(&t["latency_us"])?;
        match &mut pooled {
            None => pooled = Some((h, div)),
            Some((p, d)) if (*d - div).abs() < f64::EPSILON => p.add(&h).ok()?,
            Some(_) => return None,
        }
    }
    let (h, div) = pooled?;
    Some(holdfast_loadgen::report::hist_json(&h, div))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values_us: &[u64]) -> Value {
        let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).unwrap();
        for v in values_us {
            h.record(v * 1000).unwrap();
        }
        holdfast_loadgen::report::hist_json(&h, 1000.0)
    }

    fn round(per_cpu: f64, published: u64, lat: &[u64], lost: u64) -> Value {
        json!({
            "server": "holdfast", "deliveries_per_server_cpu_s": per_cpu,
            "deliveries_per_s": per_cpu / 2.0, "server_cpu_seconds": 1.0,
            "published": published, "measure_seconds": 10.0, "latency_us": hist(lat),
            "lost": lost, "reordered": null, "met": true, "client_unread": {"median_ms": per_cpu},
        })
    }

    #[test]
    fn a_fanout_row_is_judged_on_the_medians_of_its_rounds() {
        let tries = [
            round(3.0e4, 600, &[300, 310, 320], 0),
            round(1.0e4, 590, &[900, 1000, 9000], 2),
            round(2.0e4, 601, &[280, 290, 5000], 0),
        ];
        let r = fanout_row(&tries);
        assert_eq!(r["rounds"], 3);
        assert_eq!(r["deliveries_per_server_cpu_s"], 2.0e4);
        let sp = &r["deliveries_per_server_cpu_s_spread"];
        assert_eq!((&sp["min"], &sp["max"]), (&json!(1.0e4), &json!(3.0e4)));
        // Each round's p50: 310, 1000, 290 µs (within the histogram's precision).
        let p50 = latency_us(&r, "p50").unwrap();
        assert!((309.0..=311.0).contains(&p50), "{p50}");
        let p50s = &r["latency_rounds_us"]["p50"];
        assert!(p50s["max"].as_f64().unwrap() > 990.0, "{p50s}");
        // The CDF pools the nine deliveries.
        assert_eq!(r["latency_us"]["count"], 9);
        assert!(r["latency_us"]["max"].as_f64().unwrap() > 8990.0);
        // The round that published least, its losses summed, a null count kept null.
        assert_eq!(r["published"], 590);
        assert_eq!(r["lost"], 2);
        assert_eq!(r["reordered"], Value::Null);
        assert_eq!(
            r["client_unread"]["median_ms"], 2.0e4,
            "the median round's own"
        );
        assert_eq!(r["met"], true);
    }

    #[test]
    fn independent_client_rounds_keep_the_median_rounds_percentiles_and_sum_refusals() {
        // The independent client gives percentiles, no histogram, and no `met`.
        let fc = |per_cpu: f64, p50_us: f64, refused: u64| {
            json!({
                "server": "holdfast", "independent": true,
                "deliveries_per_server_cpu_s": per_cpu, "published": 600,
                "measure_seconds": 10.0, "lost": 0, "publishes_unanswered": 0,
                "publishes_refused": refused,
                "latency_us": {"p50": p50_us, "p99": 2.0 * p50_us, "p99.9": 3.0 * p50_us},
            })
        };
        let r = fanout_row(&[
            fc(3.0e6, 900.0, 0),
            fc(1.0e6, 100.0, 4),
            fc(2.0e6, 500.0, 1),
        ]);
        assert_eq!(r["latency_us"]["p50"], 500.0, "the median round's own");
        assert_eq!(latency_us(&r, "p50"), Some(500.0));
        assert_eq!(r["latency_rounds_us"]["p99"]["max"], 1800.0);
        assert_eq!(r["publishes_refused"], 5);
        assert_eq!(r["publishes_unanswered"], 0);
        assert!(r.get("met").is_none(), "{r}");
    }

    #[test]
    fn one_round_is_its_own_row() {
        let t = round(2.0e4, 600, &[300], 0);
        let r = fanout_row(std::slice::from_ref(&t));
        assert_eq!(r["rounds"], 1);
        assert_eq!(latency_us(&r, "p50"), t["latency_us"]["p50"].as_f64());
        assert!(r.get("latency_rounds_us").is_none());
    }

    #[test]
    fn median_index_takes_the_lower_middle_and_sorts_missing_first() {
        assert_eq!(median_index(&[Some(3.0), Some(1.0), Some(2.0)]), 2);
        assert_eq!(median_index(&[None, Some(5.0), Some(1.0), Some(3.0)]), 2);
        assert_eq!(median_index(&[]), 0);
    }
}
