//! `holdfast tune`: check a node against a profile and the connection target, apply a
//! profile (saving what it replaces), revert to a saved snapshot.

pub mod profile;

use std::fmt::Write as _;

use serde_json::json;

use crate::plan::{KERNEL_PER_CONN, STORM_HEADROOM, USERSPACE_PER_CONN};
use profile::{optional, proc_path, read_live, satisfied, Profile};

/// One line of the check table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// sysctl key or limit name.
    pub key: String,
    /// What the node has.
    pub live: String,
    /// What the profile wants.
    pub wanted: String,
    /// ok, low, absent, optional-absent, info.
    pub status: &'static str,
    /// The exact command that fixes it (empty when nothing to fix).
    pub fix: String,
}

/// A limit on how many connections the node can hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// What limits.
    pub limit: &'static str,
    /// Connections it allows (more or less).
    pub connections: u64,
    /// How it was worked out.
    pub how: String,
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Table rows.
    pub rows: Vec<Row>,
    /// Capacity per limit, lowest first.
    pub capacities: Vec<Capacity>,
    /// The connection target, if one was given.
    pub target: Option<u64>,
}

impl Check {
    /// The limit that binds first.
    pub fn binding(&self) -> Option<&Capacity> {
        self.capacities.first()
    }
    /// False when a target was given and the node cannot reach it.
    pub fn reaches_target(&self) -> bool {
        match (self.target, self.binding()) {
            (Some(n), Some(c)) => c.connections >= n,
            _ => true,
        }
    }
}

/// A /proc/meminfo field in bytes.
pub fn meminfo(field: &str) -> Option<u64> {
    crate::units::kb_field(&std::fs::read_to_string("/proc/meminfo").ok()?, field)
}

fn rlimit(name: &str) -> Option<(String, String)> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with(name))?;
    let f: Vec<&str> = line[name.len()..].split_whitespace().collect();
    Some((f.first()?.to_string(), f.get(1)?.to_string()))
}

fn num(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// Check the live node against `profile` and, when given, a connection target.
pub fn check(profile: Option<&Profile>, target: Option<u64>) -> Check {
    let mut rows = Vec::new();
    if let Some(p) = profile {
        for (k, want) in &p.entries {
            let (live, status) = match read_live(k) {
                Some(l) if satisfied(k, &l, want) => (l, "ok"),
                Some(l) => {
                    let s = profile::shortfall(k, &l, want);
                    (l, s)
                }
                None if optional(k) => ("(absent)".into(), "optional-absent"),
                None => ("(absent)".into(), "absent"),
            };
            let fix = if matches!(status, "low" | "high" | "narrow" | "differs") {
                format!("sysctl -w {k}=\"{want}\"")
            } else {
                String::new()
            };
            rows.push(Row {
                key: k.clone(),
                live,
                wanted: want.clone(),
                status,
                fix,
            });
        }
    }
    // io_uring availability.
    let disabled = read_live("kernel.io_uring_disabled");
    let io_ok = disabled.as_deref().is_none_or(|v| v == "0");
    rows.push(Row {
        key: "kernel.io_uring_disabled".into(),
        live: disabled
            .clone()
            .unwrap_or_else(|| "(absent: io_uring allowed)".into()),
        wanted: "0".into(),
        status: if io_ok { "ok" } else { "low" },
        fix: if io_ok {
            String::new()
        } else {
            "sysctl -w kernel.io_uring_disabled=0".into()
        },
    });
    // rlimits (of this process: run the check as the service's user, or read the unit).
    let nofile = rlimit("Max open files");
    if let Some((soft, hard)) = &nofile {
        let s = num(soft).unwrap_or(0);
        rows.push(Row {
            key: "RLIMIT_NOFILE (soft/hard)".into(),
            live: format!("{soft}/{hard}"),
            wanted: "≥ 1048576 (fewer io_uring rings)".into(),
            status: if s >= 1_048_576 { "ok" } else { "info" },
            fix: if s >= 1_048_576 {
                String::new()
            } else {
                "LimitNOFILE=1048576 in the unit (tuning/holdfast.service) or ulimit -n".into()
            },
        });
    }
    if let Some((soft, hard)) = rlimit("Max locked memory") {
        rows.push(Row {
            key: "RLIMIT_MEMLOCK (soft/hard)".into(),
            live: format!("{soft}/{hard}"),
            wanted: "unlimited on kernels < 5.12".into(),
            status: "info",
            fix: String::new(),
        });
    }
    let conntrack = read_live("net.netfilter.nf_conntrack_max");
    let ct_count = read_live("net.netfilter.nf_conntrack_count").and_then(|v| num(&v));
    rows.push(Row {
        key: "conntrack".into(),
        live: match (&conntrack, ct_count) {
            (Some(m), Some(c)) => format!("loaded: {c} tracked of {m}"),
            _ => "not loaded".into(),
        },
        wanted: "not loaded, or the listener untracked (notrack)".into(),
        status: "info",
        fix: String::new(),
    });
    rows.push(ehash_row(
        read_live("net.ipv4.tcp_ehash_entries").as_deref(),
        target,
    ));
    let cpus = crate::topology::allowed_cpus();
    let nodes = crate::topology::numa_nodes();
    let node_count = nodes
        .values()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    rows.push(Row {
        key: "CPUs / NUMA nodes".into(),
        live: format!("{} CPUs in cpuset, {node_count} NUMA node(s)", cpus.len()),
        wanted: "one worker per CPU".into(),
        status: "info",
        fix: String::new(),
    });
    let total = meminfo("MemTotal").unwrap_or(0);
    let avail = meminfo("MemAvailable").unwrap_or(0);
    rows.push(Row {
        key: "memory".into(),
        live: format!(
            "{:.1} GiB total, {:.1} GiB available",
            total as f64 / 1073741824.0,
            avail as f64 / 1073741824.0
        ),
        wanted: "≥ connections × 4.2 KB × 1.25".into(),
        status: "info",
        fix: String::new(),
    });

    // What each limit allows.
    let per_conn = USERSPACE_PER_CONN.value + KERNEL_PER_CONN.value;
    let mut caps = vec![Capacity {
        limit: "memory",
        connections: (avail as f64 / (1.0 + STORM_HEADROOM) / per_conn) as u64,
        how: format!(
            "MemAvailable / (1 + {STORM_HEADROOM} storm headroom) / {per_conn} B per connection"
        ),
    }];
    if let (Some(max), Some(nr)) = (read_live("fs.file-max"), read_live("fs.file-nr")) {
        if let (Some(max), Some(used)) = (num(&max), num(&nr)) {
            caps.push(Capacity {
                limit: "fs.file-max",
                connections: max.saturating_sub(used),
                how: "fs.file-max minus files open now (each direct descriptor is a struct file)"
                    .into(),
            });
        }
    }
    // Conntrack only limits connections it tracks: with nothing tracked now (no rule matches
    // the listener; loopback by default) it is not counted as a limit.
    if let (Some(m), Some(c)) = (
        conntrack.as_deref().and_then(num),
        ct_count.filter(|&c| c > 0),
    ) {
        caps.push(Capacity {
            limit: "net.netfilter.nf_conntrack_max",
            connections: m.saturating_sub(c),
            how: "free conntrack entries, if the listener is tracked".into(),
        });
    }
    if let (Some(maps), Some((soft, _))) =
        (read_live("vm.max_map_count").and_then(|v| num(&v)), &nofile)
    {
        let slots = num(soft).unwrap_or(1024).saturating_sub(64).max(1);
        // A ring maps its SQ, CQ, SQEs and buffer pool: count 6 maps per ring.
        caps.push(Capacity {
            limit: "vm.max_map_count",
            connections: maps.saturating_sub(512) / 6 * slots,
            how: format!("(max_map_count - 512) / 6 maps per ring × {slots} connections per ring"),
        });
    }
    if !io_ok {
        caps.push(Capacity {
            limit: "kernel.io_uring_disabled",
            connections: 0,
            how: "io_uring is disabled: the server cannot start".into(),
        });
    }
    caps.sort_by_key(|c| c.connections);
    Check {
        rows,
        capacities: caps,
        target,
    }
}

/// The TCP established-connection hash against the target. It is sized at boot from memory
/// (262,144 buckets on a 24 GiB node), and every segment a socket receives walks its bucket's
/// chain: at 1M connections with both ends on the node (eight sockets a bucket) a heartbeat
/// cost 1.8 times what it did at 100,000, the lookup 22% of the server's samples, and 22%
/// less with a table of 2^21 buckets (docs/tuning.md). `live` is the sysctl's text; negative
/// means a network namespace sharing the host's table.
pub fn ehash_row(live: Option<&str>, target: Option<u64>) -> Row {
    let key = "net.ipv4.tcp_ehash_entries".to_string();
    let wanted = "≥ connections (buckets)".to_string();
    let Some(v) = live.and_then(|l| l.trim().parse::<i64>().ok()) else {
        return Row {
            key,
            live: "(absent: kernel < 6.1)".into(),
            wanted,
            status: "info",
            fix: String::new(),
        };
    };
    let buckets = v.unsigned_abs();
    let shared = if v < 0 { " (the host's)" } else { "" };
    let (status, fix) = match target {
        Some(n) if buckets < n => {
            let want = n.next_power_of_two();
            (
                "low",
                format!(
                    "boot with thash_entries={want}, or start holdfast in a network namespace \
                     created after sysctl -w net.ipv4.tcp_child_ehash_entries={want}"
                ),
            )
        }
        Some(_) => ("ok", String::new()),
        None => ("info", String::new()),
    };
    Row {
        key,
        live: format!("{buckets}{shared}"),
        wanted,
        status,
        fix,
    }
}

/// Render a check as a table.
pub fn render_check(c: &Check) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<34} {:<28} {:<28} {:<16} FIX",
        "KEY", "LIVE", "WANTED", "STATUS"
    );
    for r in &c.rows {
        let _ = writeln!(
            o,
            "{:<34} {:<28} {:<28} {:<16} {}",
            r.key, r.live, r.wanted, r.status, r.fix
        );
    }
    let _ = writeln!(o, "\ncapacity by limit (lowest first):");
    for cap in &c.capacities {
        let _ = writeln!(
            o,
            "  {:<32} {:>14} connections  ({})",
            cap.limit, cap.connections, cap.how
        );
    }
    if let (Some(n), Some(b)) = (c.target, c.binding()) {
        if c.reaches_target() {
            let _ = writeln!(
                o,
                "\nOK: this node can hold {n} connections ({} binds first at {}).",
                b.limit, b.connections
            );
        } else {
            // Every limit short of the target, not only the first.
            let short: Vec<String> = c
                .capacities
                .iter()
                .filter(|cap| cap.connections < n)
                .map(|cap| format!("{} (about {})", cap.limit, cap.connections))
                .collect();
            let _ = writeln!(
                o,
                "\nNOT ENOUGH: {n} connections wanted; {} binds first at about {} connections. \
                 Short of the target: {}.",
                b.limit,
                b.connections,
                short.join(", ")
            );
        }
    }
    o
}

/// Render a check as JSON.
pub fn check_json(c: &Check) -> String {
    let v = json!({
        "rows": c.rows.iter().map(|r| json!({"key": r.key, "live": r.live, "wanted": r.wanted, "status": r.status, "fix": r.fix})).collect::<Vec<_>>(),
        "capacities": c.capacities.iter().map(|k| json!({"limit": k.limit, "connections": k.connections, "how": k.how})).collect::<Vec<_>>(),
        "target": c.target,
        "binding": c.binding().map(|b| b.limit),
        "reaches_target": c.reaches_target(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// What `apply` did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set from `old` to the profile's value.
    Set { old: String },
    /// Already satisfied; left alone.
    Kept,
    /// Not on this kernel.
    Absent,
}

/// Apply `profile`: keys absent here are reported, values already beyond the profile are
/// kept unless `force`. Unless `dry_run`, the old values of every key about to change are
/// written to `snapshot` first. Returns each key's action.
pub fn apply(
    profile: &Profile,
    dry_run: bool,
    force: bool,
    snapshot: &std::path::Path,
) -> Result<Vec<(String, String, Action)>, String> {
    let mut plan = Vec::new();
    for (k, want) in &profile.entries {
        let action = match read_live(k) {
            None => Action::Absent,
            Some(l) if satisfied(k, &l, want) && !force => Action::Kept,
            Some(l) => Action::Set { old: l },
        };
        plan.push((k.clone(), want.clone(), action));
    }
    if dry_run {
        return Ok(plan);
    }
    let mut snap = format!(
        "# holdfast tune snapshot: values replaced by profile {}\n# revert: holdfast tune revert {}\n",
        profile.name,
        snapshot.display()
    );
    for (k, _, a) in &plan {
        if let Action::Set { old } = a {
            let _ = writeln!(snap, "{k} = {old}");
        }
    }
    std::fs::write(snapshot, snap).map_err(|e| {
        format!(
            "cannot write snapshot {}: {e} (nothing was changed)",
            snapshot.display()
        )
    })?;
    for (k, want, a) in &plan {
        if matches!(a, Action::Set { .. }) {
            std::fs::write(proc_path(k), want).map_err(|e| {
                format!(
                    "cannot set {k} = {want}: {e} (needs root; keys before it were set — \
                     revert with `holdfast tune revert {}`)",
                    snapshot.display()
                )
            })?;
        }
    }
    Ok(plan)
}

/// Restore the values saved in a snapshot file. Returns the keys restored.
pub fn revert(snapshot: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(snapshot)
        .map_err(|e| format!("cannot read snapshot {}: {e}", snapshot.display()))?;
    let p = profile::parse(&snapshot.display().to_string(), &text)?;
    for (k, v) in &p.entries {
        std::fs::write(proc_path(k), v).map_err(|e| format!("cannot restore {k} = {v}: {e}"))?;
    }
    Ok(p.entries)
}

#[cfg(test)]
mod tests {
    use super::ehash_row;

    #[test]
    fn the_established_hash_is_judged_against_the_target() {
        let r = ehash_row(Some("262144"), Some(1_000_000));
        assert_eq!((r.live.as_str(), r.status), ("262144", "low"));
        assert!(r.fix.contains("thash_entries=1048576"), "{}", r.fix);
        assert!(
            r.fix.contains("tcp_child_ehash_entries=1048576"),
            "{}",
            r.fix
        );
        // A namespace sharing the host's table reads negative.
        let r = ehash_row(Some("-262144\n"), Some(262_144));
        assert_eq!((r.live.as_str(), r.status), ("262144 (the host's)", "ok"));
        assert!(r.fix.is_empty());
        assert_eq!(ehash_row(Some("262144"), None).status, "info");
        assert_eq!(ehash_row(None, Some(1)).status, "info");
    }
}
