//! Reading what the kernel says about processes and memory.

use std::collections::BTreeMap;

/// A process's resident set size in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    holdfast::units::kb_field(&s, "VmRSS")
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

// CPU time and the machine description come from the loadgen's report helpers, so every
// result file describes the machine and reads CPU time the same way (task-clock counters,
// the scheduler clock where they cannot be opened: see `proc_cpu_seconds`).
pub use holdfast_loadgen::report::{machine, proc_cpu_seconds as cpu_seconds};

/// The CPUs any thread of process `pid` may run on (the union of its threads'
/// `Cpus_allowed_list`), sorted; empty when the process is gone.
pub fn cpus_allowed(pid: u32) -> Vec<usize> {
    let mut cpus = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return cpus;
    };
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            cpus.extend(holdfast::topology::parse_cpu_list(list.trim()));
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}
