//! `holdfast plan`: memory, descriptors, ports, CPU and node count for a connection target,
//! from constants measured by the benchmarks. Each constant names the run it came from.

use serde_json::json;

/// A measured constant and where it was measured.
#[derive(Debug, Clone)]
pub struct Constant {
    /// The value.
    pub value: f64,
    /// Unit.
    pub unit: &'static str,
    /// The run that measured it.
    pub source: std::borrow::Cow<'static, str>,
}

/// Server userspace bytes per idle connection (slab entry + share of buffers) at 1M.
pub const USERSPACE_PER_CONN: Constant = Constant {
    value: 61.2,
    unit: "B",
    source: std::borrow::Cow::Borrowed(
        "bench/results/2026-12-07-all-vs-uws-55.md (1,000,000 connections)",
    ),
};
/// Server-side kernel bytes per idle connection (socket, file, armed poll) at 1M.
pub const KERNEL_PER_CONN: Constant = Constant {
    value: 4047.0,
    unit: "B",
    source: std::borrow::Cow::Borrowed(
        "bench/results/2026-12-07-all-vs-uws-55.md (1,000,000 connections, slabinfo deltas, server share)",
    ),
};
/// Fixed server memory: baseline RSS plus one 4 MiB provided-buffer pool per worker.
pub const FIXED_BASE: Constant = Constant {
    value: 5.6e6,
    unit: "B",
    source: std::borrow::Cow::Borrowed(
        "bench/results/2026-11-23-density-poll.json (RSS before clients)",
    ),
};
/// Provided-buffer pool per worker (1,024 × 4 KiB, resident once traffic cycles it).
pub const BUFFERS_PER_WORKER: Constant = Constant {
    value: 4_194_304.0,
    unit: "B",
    source: std::borrow::Cow::Borrowed("default --recv-buffers 1024 × --recv-buffer-size 4096"),
};
/// Server CPU per echoed message (one in, one out) at 100 connections.
pub const CPU_PER_ECHO: Constant = Constant {
    value: 1.0 / 121_951.0,
    unit: "s",
    source: std::borrow::Cow::Borrowed(
        "bench/results/2026-11-23-echo-read-modes.md (poll, 100 connections)",
    ),
};
/// Server CPU per heartbeat (a ping out, its pong in) with a million idle connections on
/// the node: the hold's task-clock less that of the same hold without pings, over the pings
/// sent; the larger of two runs (12.0 and 13.0 µs). It grows with the connections a node
/// holds: 7.1–7.2 µs at 100,000 and 9.2–9.8 µs at 400,000 in the same rounds. About half of
/// the growth to 1M is the kernel walking its established-hash chains (262,144 buckets here;
/// with a table as large as the sockets, 9.9–10.1 µs at 1M, docs/tuning.md). The plan used
/// one echo at 100 connections (8.2 µs) until the fifty-sixth sitting.
pub const HEARTBEAT_CPU: Constant = Constant {
    value: 13.0e-6,
    unit: "s",
    source: std::borrow::Cow::Borrowed(
        "bench/results/2026-12-07-admin-and-plan-56-notes.md (1,000,000 idle connections, a ping every 50 s, two runs)",
    ),
};
/// Userspace an idle TLS connection holds beyond a plain one (its record-layer keys and a
/// table slot; the handshake's rustls state is gone once it is over).
pub const TLS_USERSPACE_EXTRA: Constant = Constant {
    value: 270.0,
    unit: "B",
    source: std::borrow::Cow::Borrowed(
        "bench/results/2026-11-30-tls-density.md (100,000 connections: 410.8 B over TLS, 141.2 B plain)",
    ),
};
/// Server CPU per echoed message over TLS relative to plain (median of three runs each,
/// 100 connections, one pinned worker: 232,282 vs 205,274 msgs per server-CPU-s).
pub const TLS_ECHO_COST_RATIO: Constant = Constant {
    value: 1.13,
    unit: "×",
    source: std::borrow::Cow::Borrowed("bench/results/2026-11-30-tls-echo/ (three runs)"),
};
/// Server CPU to set up a connection: TCP, WebSocket upgrade, and the TLS handshake when
/// there is one (one pinned worker, 16 in flight, median of three rounds of 10,000; the
/// larger of the loadgen's and the independent client's medians, so the plan does not
/// flatter): plain, full TLS handshake, resumed TLS handshake (a session ticket; still an
/// X25519 exchange). Measured on the benchmark's 2-vCPU nested AMD EPYC guest, with the
/// deferred accept and the first read as a receive (fifty-fourth and fifty-fifth sittings);
/// the 2026-11-30 figures (13, 114 and 92 µs, another guest) read 30–60% lower.
pub const SETUP_CPU: [Constant; 3] = [
    Constant {
        value: 23.5e-6,
        unit: "s",
        source: std::borrow::Cow::Borrowed(
            "bench/results/2026-12-07-all-vs-uws-55.md (TLS section, plain: loadgen 23.5, independent client 20.4 µs)",
        ),
    },
    Constant {
        value: 185.7e-6,
        unit: "s",
        source: std::borrow::Cow::Borrowed(
            "bench/results/2026-12-07-all-vs-uws-55.md (TLS, full handshakes, ECDSA P-256: loadgen 157.9, independent client 185.7 µs)",
        ),
    },
    Constant {
        value: 151.7e-6,
        unit: "s",
        source: std::borrow::Cow::Borrowed(
            "bench/results/2026-12-07-all-vs-uws-55.md (TLS, resumed: loadgen 140.3, independent client 151.7 µs)",
        ),
    },
];
/// Memory headroom kept free for reconnect storms and teardown spikes (assumption).
pub const STORM_HEADROOM: f64 = 0.25;
/// Share of a node's cores planned for steady load (assumption: room for storms).
pub const CPU_TARGET: f64 = 0.7;

/// The smallest `--nofile` planned for.
const MIN_NOFILE: u64 = 1024;

/// What to plan for.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Peak concurrent connections.
    #[arg(long)]
    pub connections: u64,
    /// Messages per second each connection sends.
    #[arg(long, default_value_t = 0.0)]
    pub msg_rate: f64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub payload: u64,
    /// Connections each inbound message is delivered to (1 = echo-like).
    #[arg(long, default_value_t = 1)]
    pub fanout: u64,
    /// Plan for TLS terminated by Holdfast (`--tls-cert`): more memory per connection, more
    /// CPU per message, and far more per reconnect.
    #[arg(long)]
    pub tls: bool,
    /// Memory per node, e.g. 64G, 512M (default: this machine's).
    #[arg(long)]
    pub node_memory: Option<String>,
    /// Cores per node (default: this machine's).
    #[arg(long)]
    pub node_cores: Option<u32>,
    /// Heartbeat interval in seconds.
    #[arg(long, default_value_t = 25.0)]
    pub ping_interval: f64,
    /// RLIMIT_NOFILE soft limit on the nodes (caps each io_uring ring's file table).
    #[arg(long, default_value_t = 1_048_576)]
    pub nofile: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Take the per-connection memory constants from a `holdfast-bench density` (or `all`)
    /// report: its largest holdfast run (userspace, and the kernel's server share).
    #[arg(long)]
    pub from_report: Option<std::path::PathBuf>,
}

/// The per-connection memory constants to plan with: the built-in measurements, or those of
/// the largest holdfast density run in `--from-report`.
pub fn per_connection(a: &PlanArgs) -> Result<(Constant, Constant), String> {
    let Some(path) = &a.from_report else {
        return Ok((USERSPACE_PER_CONN, KERNEL_PER_CONN));
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let best = v["density"]["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["server"] == "holdfast" && r["skipped"].is_null())
        .filter_map(|r| {
            Some((
                r["held"].as_u64()?,
                r["userspace_bytes_per_connection"].as_f64()?,
                r["kernel_bytes_per_connection_server_share"].as_f64()?,
            ))
        })
        .max_by_key(|(n, _, _)| *n)
        .ok_or_else(|| format!("{}: no holdfast density run in it", path.display()))?;
    let source = |what: &str| {
        std::borrow::Cow::Owned(format!(
            "{} ({what}, {} connections)",
            path.display(),
            best.0
        ))
    };
    Ok((
        Constant {
            value: best.1,
            unit: "B",
            source: source("RSS delta"),
        },
        Constant {
            value: best.2,
            unit: "B",
            source: source("slab caches grown, server share"),
        },
    ))
}

/// Parse `64G`, `512M`, `1.5T` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a size: {s:?} (try 64G)"))?;
    Ok((n * mult as f64) as u64)
}

/// The plan's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Server memory for the whole population (userspace + kernel + fixed), bytes.
    pub memory_bytes: f64,
    /// Memory including storm headroom, bytes.
    pub memory_with_headroom: f64,
    /// Server CPU seconds per second (cores busy) for heartbeats and messages.
    pub cores_busy: f64,
    /// Bytes per second out.
    pub egress_bytes_per_second: f64,
    /// Nodes needed (the larger of memory- and CPU-bound).
    pub nodes: u64,
    /// Whether memory or CPU decides the node count.
    pub bound_by: &'static str,
    /// Connections per node.
    pub connections_per_node: u64,
    /// io_uring rings per node.
    pub rings_per_node: u64,
    /// Client source addresses needed per destination (address, port).
    pub client_source_addresses: u64,
    /// fs.file-max needed per node (one `struct file` per connection, plus headroom).
    pub file_max_per_node: u64,
    /// Server CPU seconds for every connection to reconnect once (a drain or a restart of
    /// the whole fleet): (resumed or plain, full).
    pub storm_cpu_seconds: (f64, f64),
}

/// Compute a plan for `a` on nodes of `mem` bytes and `cores` cores.
pub fn compute(a: &PlanArgs, mem: u64, cores: u32) -> Result<Plan, String> {
    if a.connections == 0 || mem == 0 || cores == 0 {
        return Err("--connections, node memory and node cores must be positive".into());
    }
    // `nan`, `inf` and `--msg-rate=-1` parse as numbers: refused here rather than planned as
    // "NaN cores" or 18446744073709551615 nodes of 0 connections.
    if !(a.msg_rate.is_finite() && a.msg_rate >= 0.0) {
        return Err(format!(
            "--msg-rate must be a number of messages a second ≥ 0, got {}",
            a.msg_rate
        ));
    }
    if !(a.ping_interval.is_finite() && a.ping_interval > 0.0) {
        return Err(format!(
            "--ping-interval must be a positive number of seconds (the server's is), got {}",
            a.ping_interval
        ));
    }
    if a.nofile < MIN_NOFILE {
        return Err(format!(
            "--nofile must be at least {MIN_NOFILE}: a node needs descriptors of its own and \
             a file table of at least 256 per ring, got {}",
            a.nofile
        ));
    }
    let n = a.connections as f64;
    let (user, kernel) = per_connection(a)?;
    let tls_extra = if a.tls {
        TLS_USERSPACE_EXTRA.value
    } else {
        0.0
    };
    let per_conn = user.value + kernel.value + tls_extra;
    let fixed_per_node = FIXED_BASE.value + BUFFERS_PER_WORKER.value * f64::from(cores);
    // CPU: an inbound message costs half an echo, each delivery the other half; a heartbeat
    // (ping out, pong in) costs HEARTBEAT_CPU. Over TLS each costs TLS_ECHO_COST_RATIO as
    // much.
    let tls_ratio = if a.tls {
        TLS_ECHO_COST_RATIO.value
    } else {
        1.0
    };
    let echo = CPU_PER_ECHO.value * tls_ratio;
    let half = echo / 2.0;
    let msg_cpu = n * a.msg_rate * (half + a.fanout as f64 * half);
    let ping_cpu = n / a.ping_interval * HEARTBEAT_CPU.value * tls_ratio;
    let storm_cpu_seconds = if a.tls {
        (n * SETUP_CPU[2].value, n * SETUP_CPU[1].value)
    } else {
        (n * SETUP_CPU[0].value, n * SETUP_CPU[0].value)
    };
    let cores_busy = msg_cpu + ping_cpu;
    // One connection's share must fit a node, or no number of nodes holds the load.
    let one = cores_busy / n;
    let node_cpu = f64::from(cores) * CPU_TARGET;
    if !(one.is_finite() && one <= node_cpu) {
        return Err(format!(
            "one connection's messages and heartbeats need {one:.3e} cores, more than a node's \
             {node_cpu:.1} ({cores} at {:.0}%): lower --msg-rate or --fanout, or plan bigger nodes",
            CPU_TARGET * 100.0
        ));
    }
    let egress = n * a.msg_rate * a.fanout as f64 * (a.payload as f64 + 4.0);
    let usable_mem = mem as f64 / (1.0 + STORM_HEADROOM);
    let conns_by_mem = ((usable_mem - fixed_per_node) / per_conn).max(0.0);
    let nodes_mem = (n / conns_by_mem.max(1.0)).ceil();
    let nodes_cpu = (cores_busy / (f64::from(cores) * CPU_TARGET)).ceil();
    let nodes = nodes_mem.max(nodes_cpu).max(1.0);
    let per_node = (n / nodes).ceil();
    // The server's automatic table size for that limit (less a few descriptors of its own).
    let nofile = usize::try_from(a.nofile.saturating_sub(64)).unwrap_or(usize::MAX);
    let ring_slots = crate::reactor::rings::table_slots(0, nofile)
        .unwrap_or(1)
        .max(1) as f64;
    let rings = (per_node / f64::from(cores) / ring_slots).ceil() * f64::from(cores);
    // connect(2) prefers even ports: count on half of 1024–65535 per source address.
    let ports = (65535.0 - 1024.0 + 1.0) / 2.0;
    Ok(Plan {
        memory_bytes: n * per_conn + fixed_per_node * nodes,
        memory_with_headroom: (n * per_conn + fixed_per_node * nodes) * (1.0 + STORM_HEADROOM),
        cores_busy,
        egress_bytes_per_second: egress,
        nodes: nodes as u64,
        bound_by: if nodes_cpu > nodes_mem {
            "cpu"
        } else {
            "memory"
        },
        connections_per_node: per_node as u64,
        rings_per_node: rings.max(f64::from(cores)) as u64,
        client_source_addresses: (n / ports).ceil() as u64,
        file_max_per_node: (per_node * 1.1) as u64 + 65536,
        storm_cpu_seconds,
    })
}

/// Render as a table or JSON.
pub fn render(a: &PlanArgs, p: &Plan, mem: u64, cores: u32) -> String {
    let gib = |b: f64| b / f64::from(1u32 << 30);
    let (user, kernel) = per_connection(a).unwrap_or((USERSPACE_PER_CONN, KERNEL_PER_CONN));
    if a.json {
        let v = json!({
            "input": {"connections": a.connections, "msg_rate": a.msg_rate, "payload": a.payload,
                      "fanout": a.fanout, "node_memory_bytes": mem, "node_cores": cores,
                      "ping_interval": a.ping_interval, "nofile": a.nofile, "tls": a.tls},
            "constants": [
                {"name": "userspace_per_connection", "value": user.value, "unit": user.unit, "source": user.source},
                {"name": "kernel_per_connection", "value": kernel.value, "unit": kernel.unit, "source": kernel.source},
                {"name": "fixed_base", "value": FIXED_BASE.value, "unit": FIXED_BASE.unit, "source": FIXED_BASE.source},
                {"name": "buffers_per_worker", "value": BUFFERS_PER_WORKER.value, "unit": BUFFERS_PER_WORKER.unit, "source": BUFFERS_PER_WORKER.source},
                {"name": "cpu_per_echo", "value": CPU_PER_ECHO.value, "unit": CPU_PER_ECHO.unit, "source": CPU_PER_ECHO.source},
                {"name": "heartbeat_cpu", "value": HEARTBEAT_CPU.value, "unit": HEARTBEAT_CPU.unit, "source": HEARTBEAT_CPU.source},
                {"name": "tls_userspace_extra_per_connection", "value": if a.tls { TLS_USERSPACE_EXTRA.value } else { 0.0 }, "unit": TLS_USERSPACE_EXTRA.unit, "source": TLS_USERSPACE_EXTRA.source},
                {"name": "tls_echo_cost_ratio", "value": if a.tls { TLS_ECHO_COST_RATIO.value } else { 1.0 }, "unit": TLS_ECHO_COST_RATIO.unit, "source": TLS_ECHO_COST_RATIO.source},
                {"name": "setup_cpu_plain", "value": SETUP_CPU[0].value, "unit": "s", "source": SETUP_CPU[0].source},
                {"name": "setup_cpu_tls_full", "value": SETUP_CPU[1].value, "unit": "s", "source": SETUP_CPU[1].source},
                {"name": "setup_cpu_tls_resumed", "value": SETUP_CPU[2].value, "unit": "s", "source": SETUP_CPU[2].source},
                {"name": "storm_headroom", "value": STORM_HEADROOM, "unit": "fraction", "source": "assumption"},
                {"name": "cpu_target", "value": CPU_TARGET, "unit": "fraction", "source": "assumption"}
            ],
            "memory_bytes": p.memory_bytes, "memory_with_headroom_bytes": p.memory_with_headroom,
            "cores_busy": p.cores_busy, "egress_bytes_per_second": p.egress_bytes_per_second,
            "nodes": p.nodes, "bound_by": p.bound_by, "connections_per_node": p.connections_per_node,
            "rings_per_node": p.rings_per_node, "client_source_addresses": p.client_source_addresses,
            "file_max_per_node": p.file_max_per_node,
            "storm_cpu_seconds": {"resumed_or_plain": p.storm_cpu_seconds.0, "full": p.storm_cpu_seconds.1},
        });
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    let mut o = String::new();
    o += &format!(
        "plan for {} connections on nodes of {:.1} GiB / {} cores\n\n",
        a.connections,
        gib(mem as f64),
        cores
    );
    let rows = [
        (
            "memory (all connections)",
            format!("{:.2} GiB", gib(p.memory_bytes)),
        ),
        (
            "memory with storm headroom",
            format!(
                "{:.2} GiB (+{:.0}%)",
                gib(p.memory_with_headroom),
                STORM_HEADROOM * 100.0
            ),
        ),
        (
            "CPU (heartbeats + messages)",
            format!("{:.2} cores", p.cores_busy),
        ),
        (
            "egress",
            format!("{:.1} MB/s", p.egress_bytes_per_second / 1e6),
        ),
        ("nodes", format!("{} (bound by {})", p.nodes, p.bound_by)),
        (
            "every client reconnecting",
            if a.tls {
                format!(
                    "{:.0} CPU-s resumed, {:.0} CPU-s if every handshake is full",
                    p.storm_cpu_seconds.0, p.storm_cpu_seconds.1
                )
            } else {
                format!("{:.0} CPU-s", p.storm_cpu_seconds.0)
            },
        ),
        ("connections per node", p.connections_per_node.to_string()),
        ("io_uring rings per node", p.rings_per_node.to_string()),
        ("fs.file-max per node", format!("≥ {}", p.file_max_per_node)),
        (
            "server fds per node",
            "~100 (sockets are direct descriptors)".to_string(),
        ),
        (
            "client source addresses",
            format!("{} per destination address:port", p.client_source_addresses),
        ),
    ];
    for (k, v) in rows {
        o += &format!("  {k:<30} {v}\n");
    }
    o += "\nconstants:\n";
    let mut constants = vec![
        ("userspace/conn", format!("{} B", user.value), user.clone()),
        ("kernel/conn", format!("{} B", kernel.value), kernel.clone()),
        (
            "cpu/echo",
            format!("{:.1} µs", CPU_PER_ECHO.value * 1e6),
            CPU_PER_ECHO,
        ),
        (
            "cpu/heartbeat",
            format!("{:.1} µs", HEARTBEAT_CPU.value * 1e6),
            HEARTBEAT_CPU,
        ),
    ];
    if a.tls {
        constants.extend([
            (
                "tls/conn",
                format!("+{} B", TLS_USERSPACE_EXTRA.value),
                TLS_USERSPACE_EXTRA,
            ),
            (
                "tls cpu/echo",
                format!("×{}", TLS_ECHO_COST_RATIO.value),
                TLS_ECHO_COST_RATIO,
            ),
            (
                "tls full setup",
                format!("{:.0} µs", SETUP_CPU[1].value * 1e6),
                SETUP_CPU[1].clone(),
            ),
            (
                "tls resumed",
                format!("{:.0} µs", SETUP_CPU[2].value * 1e6),
                SETUP_CPU[2].clone(),
            ),
        ]);
    } else {
        constants.push((
            "setup",
            format!("{:.0} µs", SETUP_CPU[0].value * 1e6),
            SETUP_CPU[0].clone(),
        ));
    }
    for (k, v, c) in constants {
        o += &format!("  {k:<16} {v:<8} ({})\n", c.source);
    }
    o += &format!(
        "  assumptions: {:.0}% memory headroom for reconnect storms, {:.0}% CPU target\n",
        STORM_HEADROOM * 100.0,
        CPU_TARGET * 100.0
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(n: u64) -> PlanArgs {
        PlanArgs {
            connections: n,
            msg_rate: 0.0,
            payload: 64,
            fanout: 1,
            tls: false,
            node_memory: None,
            node_cores: None,
            ping_interval: 25.0,
            nofile: 1_048_576,
            json: false,
            from_report: None,
        }
    }

    #[test]
    fn constants_come_from_a_density_report_when_given() {
        let dir = std::env::temp_dir().join(format!("plan-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.json");
        std::fs::write(
            &path,
            r#"{"density":{"runs":[
                {"server":"holdfast","held":10000,"userspace_bytes_per_connection":900.0,"kernel_bytes_per_connection_server_share":4000.0},
                {"server":"holdfast","held":1000000,"userspace_bytes_per_connection":80.0,"kernel_bytes_per_connection_server_share":4200.0},
                {"server":"holdfast","connections":2000000,"skipped":"memory"},
                {"server":"fastwebsockets","held":10000000,"userspace_bytes_per_connection":1.0,"kernel_bytes_per_connection_server_share":1.0}
            ]}}"#,
        )
        .unwrap();
        let mut a = args(1_000_000);
        a.from_report = Some(path.clone());
        let (u, k) = per_connection(&a).unwrap();
        assert_eq!(
            (u.value, k.value),
            (80.0, 4200.0),
            "the largest holdfast run"
        );
        assert!(u.source.contains("1000000 connections"));
        let p = compute(&a, 64 << 30, 16).unwrap();
        assert!(
            (p.memory_bytes - 1e6 * 4280.0 - FIXED_BASE.value - 16.0 * BUFFERS_PER_WORKER.value)
                .abs()
                < 1.0
        );
        std::fs::write(&path, "{}").unwrap();
        assert!(compute(&a, 64 << 30, 16)
            .unwrap_err()
            .contains("no holdfast density run"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn inputs_that_are_not_numbers_or_loads_no_node_holds_are_refused() {
        let refused = |f: &dyn Fn(&mut PlanArgs)| {
            let mut a = args(1000);
            f(&mut a);
            compute(&a, 24 << 30, 2).unwrap_err()
        };
        assert!(refused(&|a| a.msg_rate = f64::NAN).contains("--msg-rate"));
        assert!(refused(&|a| a.msg_rate = -1.0).contains("--msg-rate"));
        assert!(refused(&|a| a.ping_interval = 0.0).contains("--ping-interval"));
        assert!(refused(&|a| a.nofile = 0).contains("--nofile"));
        let huge = refused(&|a| a.msg_rate = 1e308);
        assert!(huge.contains("one connection's"), "{huge}");
        let wide = refused(&|a| {
            a.msg_rate = 1e6;
            a.fanout = 1_000_000;
        });
        assert!(wide.contains("lower --msg-rate or --fanout"), "{wide}");
        // A load that fits: planned.
        let mut a = args(1000);
        a.msg_rate = 10.0;
        assert!(compute(&a, 24 << 30, 2).is_ok());
    }

    #[test]
    fn one_million_idle_connections_by_hand() {
        // Memory: 1e6 × (61.2 + 4047) B + (5.6 MB + 4 MiB × 2 cores) = 4,108,200,000 +
        // 13,988,608.
        let p = compute(&args(1_000_000), 24 << 30, 2).unwrap();
        assert!(
            (p.memory_bytes - 4_122_188_608.0).abs() < 1.0,
            "{}",
            p.memory_bytes
        );
        // Heartbeats: 1e6 / 25 s × 13 µs = 0.52 cores.
        assert!((p.cores_busy - 0.52).abs() < 1e-9, "{}", p.cores_busy);
        assert_eq!(p.nodes, 1);
        assert_eq!(p.bound_by, "memory");
        // 32,256 usable ports per source address: 1e6 / 32,256 = 31.002 → 32 addresses.
        assert_eq!(p.client_source_addresses, 32);
    }

    #[test]
    fn ten_million_on_24g_nodes_fits_two_by_memory_and_two_cores_each_are_too_few() {
        // Usable per node: 24 GiB / 1.25 = 20,615,843,021 B; minus fixed 13,988,608 (2 cores);
        // / 4108.2 B = 5,014,812 connections → 2 nodes by memory. Heartbeats: 1e7 / 25 s ×
        // 13 µs = 5.2 cores, over 2 × 0.7 = 1.4 per node → 4 nodes: CPU binds.
        let p = compute(&args(10_000_000), 24 << 30, 2).unwrap();
        assert_eq!((p.nodes, p.bound_by), (4, "cpu"));
        assert_eq!(p.connections_per_node, 2_500_000);
        // With 4 cores (2.8 planned) heartbeats need 2 nodes; memory: fixed 22,377,216,
        // 5,012,770 connections per node → 2 nodes of 5,000,000, bound by memory.
        let p = compute(&args(10_000_000), 24 << 30, 4).unwrap();
        assert_eq!((p.nodes, p.bound_by), (2, "memory"));
        assert_eq!(p.connections_per_node, 5_000_000);
        // Two such nodes hold 10,025,541 (2 × 5,012,770.996); one more needs a third.
        assert_eq!(compute(&args(10_025_541), 24 << 30, 4).unwrap().nodes, 2);
        assert_eq!(compute(&args(10_025_542), 24 << 30, 4).unwrap().nodes, 3);
    }

    #[test]
    fn chatty_fanout_is_cpu_bound() {
        // 100k connections × 1 msg/s × fanout 10: 100,000 × (1/2 + 10/2) × 8.2 µs = 4.51 cores,
        // plus heartbeats 100,000 / 25 × 13 µs = 0.052 → 4.562; at 2 × 0.7 = 1.4 cores per
        // node → 4 nodes.
        let mut a = args(100_000);
        a.msg_rate = 1.0;
        a.fanout = 10;
        let p = compute(&a, 24 << 30, 2).unwrap();
        assert!((p.cores_busy - 4.5621).abs() < 1e-3, "{}", p.cores_busy);
        assert_eq!((p.nodes, p.bound_by), (4, "cpu"));
        assert_eq!(p.egress_bytes_per_second, 100_000.0 * 10.0 * 68.0);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64G").unwrap(), 64 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn tls_adds_memory_per_connection_cpu_per_message_and_a_costlier_storm() {
        let plain = compute(&args(1_000_000), 24 << 30, 2).unwrap();
        let mut a = args(1_000_000);
        a.tls = true;
        let tls = compute(&a, 24 << 30, 2).unwrap();
        // 1e6 × 270 B more.
        assert!((tls.memory_bytes - plain.memory_bytes - 270e6).abs() < 1.0);
        // Heartbeats cost 1.13 times as much.
        assert!((tls.cores_busy / plain.cores_busy - 1.13).abs() < 1e-9);
        // A fleet-wide reconnect: 1e6 × 151.7 µs resumed, 185.7 µs full; 23.5 µs plain.
        assert!((tls.storm_cpu_seconds.0 - 151.7).abs() < 1e-6);
        assert!((tls.storm_cpu_seconds.1 - 185.7).abs() < 1e-6);
        assert!((plain.storm_cpu_seconds.0 - 23.5).abs() < 1e-6);
        let text = render(&a, &tls, 24 << 30, 2);
        assert!(
            text.contains("over TLS") && text.contains("all-vs-uws-55"),
            "{text}"
        );
    }
}
