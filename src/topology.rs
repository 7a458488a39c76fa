//! CPU and NUMA layout from sysfs, and the CPUs this process may run on.

use std::collections::BTreeMap;

/// Parse a sysfs CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// CPU → NUMA node, from /sys/devices/system/node/node*/cpulist (empty when absent).
pub fn numa_nodes() -> BTreeMap<usize, usize> {
    let mut map = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/node") else {
        return map;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(node) = name.to_str().and_then(|n| n.strip_prefix("node")) else {
            continue;
        };
        let Ok(node) = node.parse::<usize>() else {
            continue;
        };
        if let Ok(list) = std::fs::read_to_string(entry.path().join("cpulist")) {
            for cpu in parse_cpu_list(&list) {
                map.insert(cpu, node);
            }
        }
    }
    map
}

/// One worker's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Worker number.
    pub worker: usize,
    /// CPU it is pinned to.
    pub cpu: usize,
    /// NUMA node of that CPU.
    pub node: usize,
}

/// Place `workers` workers on the allowed CPUs, grouped by NUMA node (node 0's CPUs first),
/// wrapping around when there are more workers than CPUs.
pub fn place(workers: usize, allowed: &[usize], nodes: &BTreeMap<usize, usize>) -> Vec<Placement> {
    let mut cpus: Vec<(usize, usize)> = allowed
        .iter()
        .map(|&c| (nodes.get(&c).copied().unwrap_or(0), c))
        .collect();
    cpus.sort_unstable();
    (0..workers)
        .map(|w| {
            let (node, cpu) = cpus[w % cpus.len().max(1)];
            Placement {
                worker: w,
                cpu,
                node,
            }
        })
        .collect()
}

/// The CPUs in this process's affinity mask (its cpuset).
pub fn allowed_cpus() -> Vec<usize> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut v: Vec<usize> = ids.into_iter().map(|c| c.id).collect();
    if v.is_empty() {
        v.push(0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
    }

    #[test]
    fn groups_workers_by_node() {
        let nodes: BTreeMap<usize, usize> = [(0, 0), (1, 1), (2, 0), (3, 1)].into();
        let p = place(4, &[0, 1, 2, 3], &nodes);
        let order: Vec<(usize, usize)> = p.iter().map(|p| (p.node, p.cpu)).collect();
        assert_eq!(order, vec![(0, 0), (0, 2), (1, 1), (1, 3)]);
        assert_eq!(place(3, &[5], &BTreeMap::new())[2].cpu, 5);
    }
}
