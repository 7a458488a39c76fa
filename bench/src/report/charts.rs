//! SVG charts of a report (plotters): connections over time, bytes per connection vs N,
//! RTT and fan-out latency CDFs, reconnect-storm recovery.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Line = (String, Vec<(f64, f64)>);

/// Draw every chart the report has data for; returns the file names written.
pub(super) fn draw(report: &Value, dir: &Path, stem: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chart = |name: &str, title: &str, x: &str, y: &str, lines: Vec<Line>, log_x: bool| {
        if lines.iter().all(|(_, p)| p.is_empty()) {
            return Ok::<(), String>(());
        }
        let file = format!("{stem}-{name}.svg");
        plot(&dir.join(&file), title, x, y, &lines, log_x).map_err(|e| format!("{file}: {e}"))?;
        out.push(file);
        Ok(())
    };
    let runs = |sec: &str| report[sec]["runs"].as_array().cloned().unwrap_or_default();

    // Connections over time during each density ramp.
    let lines = runs("density")
        .iter()
        .filter(|r| r["series"].is_array())
        .map(|r| {
            let pts = series(&r["series"], "established");
            (
                format!(
                    "{} {}",
                    r["server"].as_str().unwrap_or(""),
                    r["connections"]
                ),
                pts,
            )
        })
        .collect();
    chart(
        "connections",
        "Connections over time (hold ramps)",
        "seconds",
        "established",
        lines,
        false,
    )?;

    // Bytes per connection vs N.
    let dens = runs("density");
    let hf: Vec<&Value> = dens.iter().filter(|r| r["server"] == "holdfast").collect();
    let pick = |key: &str| -> Vec<(f64, f64)> {
        hf.iter()
            .filter_map(|r| Some((r["connections"].as_f64()?, r[key].as_f64()?)))
            .collect()
    };
    chart(
        "bytes-per-connection",
        "holdfast: bytes per idle connection vs N",
        "connections",
        "bytes",
        vec![
            (
                "server userspace".into(),
                pick("userspace_bytes_per_connection"),
            ),
            (
                "kernel, server share".into(),
                pick("kernel_bytes_per_connection_server_share"),
            ),
        ],
        true,
    )?;

    // RTT CDFs (1,000 connections).
    let lines = runs("echo")
        .iter()
        .filter(|r| r["connections"] == 1000)
        .map(|r| {
            (
                r["server"].as_str().unwrap_or("").to_string(),
                cdf(&r["rtt_us"]),
            )
        })
        .collect();
    chart(
        "rtt-cdf",
        "Echo RTT, 1,000 connections, 32 B (CDF)",
        "µs (log)",
        "fraction",
        lines,
        true,
    )?;

    // Fan-out latency CDFs (the loadgen's rows: the independent client keeps no
    // histogram in the report).
    let lines = runs("fanout")
        .iter()
        .filter(|r| r["independent"] != true)
        .map(|r| {
            (
                format!(
                    "{} {}×{} @{}/s{}",
                    r["server"].as_str().unwrap_or(""),
                    r["topics"],
                    r["subscribers"],
                    r["publish_rate"],
                    match r["placement"].as_str() {
                        Some("own") | None => String::new(),
                        Some(p) => format!(" ({p})"),
                    }
                ),
                cdf(&r["latency_us"]),
            )
        })
        .collect();
    chart(
        "fanout-cdf",
        "Publish → delivery latency (CDF)",
        "µs (log)",
        "fraction",
        lines,
        true,
    )?;

    // Storm recovery.
    let lines = runs("storm")
        .iter()
        .map(|r| {
            (
                r["server"].as_str().unwrap_or("").to_string(),
                series(&r["series"], "open"),
            )
        })
        .collect();
    chart(
        "storm",
        "Reconnect storm: open connections over time",
        "seconds",
        "open",
        lines,
        false,
    )?;
    Ok(out)
}

/// `(t, field)` from a loadgen per-second series.
fn series(v: &Value, field: &str) -> Vec<(f64, f64)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["t"].as_f64()?, p[field].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A CDF from a histogram's encoded form (values in the histogram's display unit).
fn cdf(h: &Value) -> Vec<(f64, f64)> {
    let Some((hist, div)) = super::rounds::decode_hist(h) else {
        return Vec::new();
    };
    if hist.is_empty() {
        return Vec::new();
    }
    let mut qs: Vec<f64> = (0..=100).map(|i| f64::from(i) / 100.0).collect();
    qs.extend([0.995, 0.999, 0.9995, 0.9999, 1.0]);
    qs.sort_by(f64::total_cmp);
    qs.iter()
        .map(|&q| ((hist.value_at_quantile(q) as f64 / div).max(0.001), q))
        .collect()
}

fn plot(
    path: &Path,
    title: &str,
    xd: &str,
    yd: &str,
    lines: &[Line],
    log_x: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let pts = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.08 };
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64);
    macro_rules! finish {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh().x_desc(xd).y_desc(yd).draw()?;
            for (i, (name, p)) in lines.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                c.draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                c.draw_series(p.iter().map(|&pt| Circle::new(pt, 2, color.filled())))?;
            }
            c.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }};
    }
    if log_x {
        finish!(builder.build_cartesian_2d((x0.max(1e-3) * 0.8..x1 * 1.25).log_scale(), 0f64..y1)?);
    } else {
        finish!(builder.build_cartesian_2d(x0.min(0.0)..x1, 0f64..y1)?);
    }
    root.present()?;
    Ok(())
}
