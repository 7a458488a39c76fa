//! The backplane section: three holdfast nodes on one `redis-server`, one topic, its
//! subscribers spread over the nodes, publish rates stepped up until delivery falls behind
//! (deliveries/s, publish → delivery p50/p99, server and Redis CPU per publish), the same
//! rates on one node (memory engine) beside them, and the time a drained node's clients
//! take to resume on another node (with every message, once).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::procs::{loadgen, Kind, Server};
use super::Plan;
use crate::proc::cpu_seconds;

/// A `redis-server` without persistence on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (apt-get install redis-server)"))?;
        super::procs::track(child.id(), true);
        let r = Self { child, port };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut b = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut b).is_ok()
                    && &b == b"+PONG\r\n"
                {
                    return Ok(r);
                }
            }
            if Instant::now() > end {
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        super::procs::track(self.child.id(), false);
    }
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn nodes(redis: &Redis, extra: &[&str]) -> Result<Vec<Server>, String> {
    let url = redis.url();
    ["n1", "n2", "n3"]
        .iter()
        .map(|n| {
            let mut args = vec!["--backplane", url.as_str(), "--node-id", n];
            args.extend_from_slice(extra);
            Server::start(Kind::Holdfast, None, Some(1), &args)
        })
        .collect()
}

/// One HTTP request to an admin address; the status.
fn http(admin: &str, head: &str, body: &[u8]) -> Result<u16, String> {
    let mut s = TcpStream::connect(admin).map_err(|e| format!("{admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{head}\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{admin}: no answer"))
}

/// One fan-out step: `subs` subscribers over `servers` (in turn), publishing at `rate`
/// through the first one's admin API; CPU of every pid in `pids` over the measurement.
fn step(
    plan: &Plan,
    servers: &[&Server],
    pids: &[(String, u32)],
    subs: usize,
    rate: usize,
) -> Result<Value, String> {
    let admin = servers[0].admin.clone().ok_or("no admin address")?;
    let mut args = vec![s("fanout")];
    for sv in servers {
        args.extend([s("--url"), format!("ws://{}/ws", sv.addr)]);
    }
    args.extend([
        s("--connections"),
        s(subs),
        s("--topics"),
        s(1),
        s("--publish-rate"),
        s(rate),
        s("--admin"),
        admin,
        s("--warmup"),
        s(plan.warmup),
        s("--duration"),
        s(plan.measure_seconds),
        s("--rate"),
        s(plan.ramp_rate),
        s("--settle"),
        s(5),
    ]);
    // CPU over the measurement: every pid sampled each 100 ms while the loadgen runs; the
    // window is placed from the loadgen's own timings (ramp, 0.5 s for the last
    // subscriptions, warmup, then the measurement).
    let launched = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pids) = (stop.clone(), pids.to_vec());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let cpu: Vec<Option<f64>> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
                samples.push((launched.elapsed().as_secs_f64(), cpu));
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let (v, met) = loadgen(&args, None, |_| {})?;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().map_err(|_| "the CPU sampler panicked")?;
    let t0 = v["ramp_seconds"].as_f64().unwrap_or(0.0) + 0.5 + plan.warmup;
    let t1 = t0 + v["measure_seconds"].as_f64().unwrap_or(0.0);
    let at = |t: f64| {
        samples
            .iter()
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
    };
    let mut cpu = serde_json::Map::new();
    let mut window = 0.0;
    if let (Some((ta, a)), Some((tb, b))) = (at(t0), at(t1)) {
        window = tb - ta;
        for (i, (name, _)) in pids.iter().enumerate() {
            if let (Some(x), Some(y)) = (a[i], b[i]) {
                let per_publish_us = (y - x) / (rate as f64 * window).max(1.0) * 1e6;
                cpu.insert(
                    name.clone(),
                    json!({"cpu_seconds": y - x, "cores": (y - x) / window.max(1e-9),
                           "us_per_publish": per_publish_us}),
                );
            }
        }
    }
    let lat = &v["publish_to_delivery_us"];
    let expected = (subs * rate) as f64;
    let dps = v["deliveries_per_s"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "subscribers": subs,
        "publish_rate": rate,
        "met": met,
        "deliveries_per_s": dps,
        "expected_deliveries_per_s": expected,
        "keeps_up": dps >= 0.95 * expected && lat["p99"].as_f64().unwrap_or(f64::MAX) < 2e6,
        "p50_us": lat["p50"],
        "p99_us": lat["p99"],
        "lost": v["lost_in_stream"].as_u64().unwrap_or(0) + v["lost_at_end"].as_u64().unwrap_or(0),
        "lost_in_stream": v["lost_in_stream"],
        "unreceived_at_end": v["lost_at_end"],
        "duplicates": v["duplicates"],
        "reordered": v["reordered"],
        "gaps": v["gaps"],
        "numbers_checked": v["numbers_checked"],
        "misnumbered": v["misnumbered"],
        "cpu_window_seconds": window,
        "cpu": cpu,
        "loadgen_cpu_seconds": v["loadgen_cpu_seconds"],
    }))
}

/// Three fresh nodes on a fresh Redis: `subs` subscribers over all three (the publishing
/// node too), `rate` msgs/s.
fn fleet_step(plan: &Plan, subs: usize, rate: usize) -> Result<Value, String> {
    let redis = Redis::start()?;
    let n = nodes(&redis, &["--max-connections", &s(subs)])?;
    let pids: Vec<(String, u32)> = n
        .iter()
        .enumerate()
        .map(|(i, sv)| (format!("node{}", i + 1), sv.pid()))
        .chain([("redis".to_string(), redis.child.id())])
        .collect();
    step(plan, &[&n[0], &n[1], &n[2]], &pids, subs, rate)
}

/// One fresh node (memory engine, one worker), the same load.
fn single_step(plan: &Plan, subs: usize, rate: usize) -> Result<Value, String> {
    let extra = ["--max-connections", &s(subs * 2)];
    let one = Server::start(Kind::Holdfast, None, Some(1), &extra)?;
    let pids = vec![("node1".to_string(), one.pid())];
    step(plan, &[&one], &pids, subs, rate)
}

pub(super) fn backplane(plan: &Plan) -> Result<Value, String> {
    if plan.url.is_some() {
        return Err("the backplane section starts its own nodes; it does not take --url".into());
    }
    let subs = plan.backplane_subscribers;
    // First a light load (the machine far from saturated), where latency shows what the
    // broker hop adds; then the steps, until the fleet falls behind.
    let (light_subs, light_rate) = (subs / 10, 10);
    eprintln!("backplane: light load, {light_subs} subscribers, {light_rate} msgs/s");
    let mut light = vec![
        fleet_step(plan, light_subs, light_rate)?,
        single_step(plan, light_subs, light_rate)?,
    ];
    light[0]["setup"] = json!("3 nodes + redis");
    light[1]["setup"] = json!("1 node");
    let mut fleet = Vec::new();
    let mut single = Vec::new();
    for &rate in &plan.backplane_rates {
        eprintln!("backplane: {subs} subscribers, {rate} msgs/s: 3 nodes + redis, then 1 node");
        let r = fleet_step(plan, subs, rate)?;
        let keeps = r["keeps_up"].as_bool().unwrap_or(false);
        fleet.push(r);
        single.push(single_step(plan, subs, rate)?);
        if !keeps {
            break; // delivery fell behind: the step above is the ceiling
        }
    }
    let resume = resume(plan)?;
    Ok(json!({
        "subscribers": subs,
        "nodes": 3,
        "workers_per_node": 1,
        "light": light,
        "fleet": fleet,
        "single_node": single,
        "resume": resume,
    }))
}

/// A drained node's clients resume on another node: `plan.backplane_resume` clients
/// subscribed on node 2 while node 1 publishes [`RESUME_RATE`] msgs/s; node 2 drains (1012 spread over its
/// window); each client reconnects to node 3 resuming from its last number. Measures the
/// time from the drain to the last client back and checks every client's sequence.
fn resume(plan: &Plan) -> Result<Value, String> {
    let n_clients = plan.backplane_resume;
    let window = if plan.quick { 0.5 } else { 2.0 };
    eprintln!("backplane: resume of {n_clients} drained clients on another node");
    let redis = Redis::start()?;
    let n = nodes(
        &redis,
        &[
            "--drain-window",
            &s(window),
            "--drain-grace",
            "5",
            "--max-connections",
            &s(n_clients * 2),
        ],
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (b, c) = (n[1].addr.clone(), n[2].addr.clone());
    let admin = n[0].admin.clone().ok_or("no admin")?;
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, stop) = (published.clone(), stop.clone());
        std::thread::spawn(move || publish_loop(&admin, RESUME_RATE, &published, &stop))
    };
    let out = rt.block_on(async move {
        let mut tasks = Vec::new();
        let subscribed = Arc::new(AtomicU64::new(0));
        let resumed = Arc::new(AtomicU64::new(0));
        for _ in 0..n_clients {
            let (b, c, subscribed, resumed) =
                (b.clone(), c.clone(), subscribed.clone(), resumed.clone());
            tasks.push(tokio::spawn(async move {
                client(&b, &c, &subscribed, &resumed).await
            }));
            tokio::task::yield_now().await;
        }
        let end = Instant::now() + Duration::from_secs(60);
        while subscribed.load(Ordering::Relaxed) < n_clients as u64 && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (tasks, resumed)
    });
    let (tasks, resumed) = out;
    std::thread::sleep(Duration::from_millis(500));
    let drained_at = Instant::now();
    http(
        n[1].admin.as_deref().unwrap_or(""),
        "POST /drain HTTP/1.1",
        b"",
    )?;
    let end = Instant::now() + Duration::from_secs(60);
    while resumed.load(Ordering::Relaxed) < n_clients as u64 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let all_back = drained_at.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    let last = published.load(Ordering::Relaxed);
    let results: Vec<ClientResult> = rt.block_on(async {
        let mut v = Vec::new();
        for t in tasks {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(20), t).await {
                v.push(r);
            }
        }
        v
    });
    let mut gaps_ms: Vec<f64> = results.iter().filter_map(|r| r.away_ms).collect();
    gaps_ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        gaps_ms
            .get(((gaps_ms.len() as f64 - 1.0) * p) as usize)
            .copied()
    };
    Ok(json!({
        "clients": n_clients,
        "drain_window_s": window,
        "publish_rate": RESUME_RATE,
        "all_resumed_after_s": all_back,
        "resumed": resumed.load(Ordering::Relaxed),
        "recovered": results.iter().filter(|r| r.recovered).count(),
        "published": last,
        "lost": results.iter().map(|r| r.lost + last.saturating_sub(r.last)).sum::<u64>(),
        "duplicates": results.iter().map(|r| r.duplicates).sum::<u64>(),
        "messages_per_client": results.first().map(|r| r.received),
        "away_ms_p50": pct(0.5),
        "away_ms_p99": pct(0.99),
        "away_ms_max": gaps_ms.last(),
    }))
}

/// Messages per second published during the resume measurement (low enough that the
/// measuring clients, on the same two cores, are not what takes the time).
const RESUME_RATE: f64 = 20.0;

fn publish_loop(admin: &str, rate: f64, published: &AtomicU64, stop: &AtomicBool) {
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        n += 1;
        let body = format!("{n}");
        let head = "POST /publish?topic=resume HTTP/1.1";
        if http(admin, head, body.as_bytes()) == Ok(200) {
            published.store(n, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
struct ClientResult {
    received: u64,
    last: u64,
    lost: u64,
    duplicates: u64,
    recovered: bool,
    away_ms: Option<f64>,
}

impl ClientResult {
    /// A message arrived: check its number against the last one.
    fn count(&mut self, last: &mut u64, v: &Value) {
        let seq = v["seq"].as_u64().unwrap_or(0);
        if seq <= *last {
            self.duplicates += 1;
        } else {
            self.lost += seq - *last - 1;
            *last = seq;
            self.received += 1;
        }
    }
}

/// Subscribe on `first`; on a 1012 close, resume on `second`; count what arrives until
/// the stream ends (the task is dropped).
async fn client(
    first: &str,
    second: &str,
    subscribed: &AtomicU64,
    resumed: &AtomicU64,
) -> ClientResult {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut r = ClientResult::default();
    let Ok((mut ws, _)) =
        tokio_tungstenite::connect_async(format!("ws://{first}/ws?topics=resume")).await
    else {
        return r;
    };
    let mut last = 0u64;
    let mut epoch = String::new();
    let mut closed_at = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        match m {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                if v["type"] == "subscribed" {
                    last = v["seq"].as_u64().unwrap_or(0);
                    epoch = v["epoch"].as_str().unwrap_or("").to_string();
                    subscribed.fetch_add(1, Ordering::Relaxed);
                } else if v["type"] == "message" {
                    r.count(&mut last, &v);
                }
            }
            Message::Close(_) => {
                closed_at = Some(Instant::now());
                break;
            }
            _ => {}
        }
    }
    let Some(at) = closed_at else { return r };
    let url = format!("ws://{second}/ws?topics=resume&resume=resume:{last}@{epoch}");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return r;
    };
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap_or_default();
            if v["type"] == "subscribed" {
                r.recovered = v["recovered"] == true;
                r.away_ms = Some(at.elapsed().as_secs_f64() * 1e3);
                resumed.fetch_add(1, Ordering::Relaxed);
            } else if v["type"] == "message" {
                r.count(&mut last, &v);
            }
        }
    }
    r.last = last;
    r
}
