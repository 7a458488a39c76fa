//! Reading what the kernel says about processes and memory.

use std::collections::BTreeMap;

/// A process's resident set size in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

pub use holdfast::tune::meminfo;

/// Each slab cache's (bytes held = active objects × object size, object size), from
/// /proc/slabinfo.
pub fn slab_caches() -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(s) = std::fs::read_to_string("/proc/slabinfo") else {
        return out;
    };
    for line in s.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 3 {
            if let (Ok(active), Ok(size)) = (f[1].parse::<u64>(), f[3].parse::<u64>()) {
                out.insert(f[0].to_string(), (active * size, size));
            }
        }
    }
    out
}

/// User + system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Machine description for result files.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let sysctl = |k: &str| {
        std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/")))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "mem_total_bytes": meminfo("MemTotal"),
        "kernel": kernel.trim(),
        "sysctl": {
            "net.core.somaxconn": sysctl("net.core.somaxconn"),
            "net.ipv4.tcp_mem": sysctl("net.ipv4.tcp_mem"),
            "net.ipv4.ip_local_port_range": sysctl("net.ipv4.ip_local_port_range"),
            "fs.file-max": sysctl("fs.file-max"),
        },
    })
}
