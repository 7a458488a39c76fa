//! sysctl.d profiles: the three shipped in `tuning/`, or any file in that format.

/// A profile: `key = value` lines in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its name (built-in name or file path).
    pub name: String,
    /// The settings, in file order.
    pub entries: Vec<(String, String)>,
}

/// The profiles shipped in `tuning/`.
pub const BUILT_IN: [(&str, &str); 3] = [
    ("c100k", include_str!("../../tuning/c100k.conf")),
    ("c1m", include_str!("../../tuning/c1m.conf")),
    ("c10m", include_str!("../../tuning/c10m.conf")),
];

/// How a live value is compared with the profile's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The live value must be at least the profile's (a higher value is left alone).
    AtLeast,
    /// The live value must be at most the profile's (timeouts).
    AtMost,
    /// The live value must equal the profile's.
    Exact,
    /// A `low high` range that must contain the profile's range (port ranges).
    Contains,
    /// Space-separated numbers, each at least the profile's (tcp_mem).
    EachAtLeast,
}

/// The comparison rule of `key`.
pub fn want(key: &str) -> Want {
    match key {
        "net.ipv4.ip_local_port_range" => Want::Contains,
        "net.ipv4.tcp_mem" => Want::EachAtLeast,
        // Small defaults are the point for idle-heavy populations: not "more is better".
        "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem" | "net.ipv4.tcp_tw_reuse" => Want::Exact,
        "net.ipv4.tcp_fin_timeout" => Want::AtMost,
        _ => Want::AtLeast,
    }
}

/// Keys that may be absent without anything being wrong (their module is not loaded).
pub fn optional(key: &str) -> bool {
    key.starts_with("net.netfilter.")
}

fn numbers(v: &str) -> Option<Vec<u64>> {
    v.split_whitespace().map(|n| n.parse().ok()).collect()
}

/// Whether `live` already satisfies the profile's `wanted` for `key`.
pub fn satisfied(key: &str, live: &str, wanted: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match (want(key), numbers(live), numbers(wanted)) {
        (Want::Exact, _, _) => norm(live) == norm(wanted),
        (Want::AtLeast, Some(l), Some(w)) if l.len() == 1 && w.len() == 1 => l[0] >= w[0],
        (Want::AtMost, Some(l), Some(w)) if l.len() == 1 && w.len() == 1 => l[0] <= w[0],
        (Want::Contains, Some(l), Some(w)) if l.len() == 2 && w.len() == 2 => {
            l[0] <= w[0] && l[1] >= w[1]
        }
        (Want::EachAtLeast, Some(l), Some(w)) if l.len() == w.len() => {
            l.iter().zip(&w).all(|(a, b)| a >= b)
        }
        _ => norm(live) == norm(wanted),
    }
}

/// How a live value that does not satisfy the profile differs from it: `low` (below a
/// minimum), `high` (above a maximum), `narrow` (a range that does not contain the
/// profile's) or `differs` (an exact value or a shape that does not compare).
pub fn shortfall(key: &str, live: &str, wanted: &str) -> &'static str {
    match want(key) {
        Want::AtLeast | Want::EachAtLeast if numbers(live).is_some() => "low",
        Want::AtMost if numbers(live).is_some() => "high",
        Want::Contains if numbers(live).is_some() => "narrow",
        _ => {
            let _ = wanted;
            "differs"
        }
    }
}

/// Parse sysctl.d text. Errors name the line.
pub fn parse(name: &str, text: &str) -> Result<Profile, String> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("{name}:{}: expected `key = value`, got {line:?}", n + 1))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || k.contains(char::is_whitespace) {
            return Err(format!("{name}:{}: malformed setting {line:?}", n + 1));
        }
        if !is_sysctl_name(k) {
            // The key becomes a path under /proc/sys, written as root: `fs/../../../etc/x`
            // named a file outside it.
            return Err(format!(
                "{name}:{}: {k:?} is not a sysctl name (letters, digits, `_` and `-` \
                 between dots or slashes)",
                n + 1
            ));
        }
        entries.push((k.to_string(), v.to_string()));
    }
    Ok(Profile {
        name: name.to_string(),
        entries,
    })
}

/// Whether `key` names a sysctl: components of letters, digits, `_` and `-`, joined by `.`
/// or `/`, none empty (so none is `..` and the path stays under /proc/sys).
fn is_sysctl_name(key: &str) -> bool {
    key.split(['.', '/']).all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// A built-in profile by name, or a profile file by path.
pub fn load(name_or_path: &str) -> Result<Profile, String> {
    if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
        return parse(name, text);
    }
    let text = std::fs::read_to_string(name_or_path).map_err(|e| {
        format!("no profile {name_or_path:?} (built-in: c100k, c1m, c10m) and cannot read it as a file: {e}")
    })?;
    parse(name_or_path, &text)
}

/// /proc/sys path of a sysctl key.
pub fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// The live value of a sysctl, or None when the key does not exist on this kernel.
pub fn read_live(key: &str) -> Option<String> {
    std::fs::read_to_string(proc_path(key))
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_is_not_a_sysctl_name_is_refused_before_it_becomes_a_path() {
        for bad in [
            "fs/../../../etc/hostname",
            "net..core",
            "/net.core.somaxconn",
            "net.core.",
            "net.core.some*",
        ] {
            let err = parse("p", &format!("{bad} = 1\n")).unwrap_err();
            assert!(err.contains("is not a sysctl name"), "{bad}: {err}");
        }
        let p = parse(
            "p",
            "net/ipv4/tcp_rmem = 4096 1 2\nnet.ipv4.ip_local_port_range = 1 2\n",
        )
        .unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(proc_path(&p.entries[0].0), "/proc/sys/net/ipv4/tcp_rmem");
    }

    #[test]
    fn a_value_that_misses_says_how() {
        assert_eq!(shortfall("net.core.somaxconn", "128", "65535"), "low");
        assert_eq!(shortfall("net.ipv4.tcp_fin_timeout", "60", "10"), "high");
        assert_eq!(
            shortfall(
                "net.ipv4.tcp_rmem",
                "4096 131072 6291456",
                "4096 4096 16384"
            ),
            "differs"
        );
        assert_eq!(
            shortfall("net.ipv4.ip_local_port_range", "32768 60999", "1024 65535"),
            "narrow"
        );
        assert!(!satisfied("net.ipv4.tcp_fin_timeout", "60", "10"));
        assert!(
            satisfied("net.core.somaxconn", "100000", "65535"),
            "higher is fine"
        );
    }

    #[test]
    fn every_built_in_profile_parses_and_its_keys_exist_here_or_are_optional() {
        for (name, text) in BUILT_IN {
            let p = parse(name, text).unwrap();
            assert!(p.entries.len() >= 15, "{name} has {} keys", p.entries.len());
            for (k, _) in &p.entries {
                assert!(
                    read_live(k).is_some() || optional(k),
                    "{name}: {k} does not exist on this kernel and is not marked optional"
                );
            }
        }
    }

    #[test]
    fn profiles_cover_the_keys_operators_need() {
        for (name, text) in BUILT_IN {
            let p = parse(name, text).unwrap();
            for k in [
                "fs.file-max",
                "fs.nr_open",
                "net.core.somaxconn",
                "net.ipv4.tcp_max_syn_backlog",
                "net.ipv4.ip_local_port_range",
                "net.ipv4.tcp_rmem",
                "net.ipv4.tcp_wmem",
                "net.ipv4.tcp_mem",
                "net.core.rmem_default",
                "net.core.wmem_default",
                "net.core.rmem_max",
                "net.core.wmem_max",
                "net.core.netdev_max_backlog",
                "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_tw_reuse",
                "net.netfilter.nf_conntrack_max",
            ] {
                assert!(p.entries.iter().any(|(x, _)| x == k), "{name} lacks {k}");
            }
        }
    }

    #[test]
    fn comparison_rules() {
        assert!(satisfied("net.core.somaxconn", "65535", "4096"));
        assert!(!satisfied("net.core.somaxconn", "4096", "65535"));
        assert!(satisfied("net.ipv4.tcp_fin_timeout", "10", "15"));
        assert!(!satisfied("net.ipv4.tcp_fin_timeout", "60", "15"));
        assert!(satisfied(
            "net.ipv4.ip_local_port_range",
            "1024 65535",
            "1024  65000"
        ));
        assert!(!satisfied(
            "net.ipv4.ip_local_port_range",
            "32768 60999",
            "1024 65535"
        ));
        assert!(satisfied("net.ipv4.tcp_mem", "3 4 5", "1 2 3"));
        assert!(!satisfied("net.ipv4.tcp_mem", "3 1 5", "1 2 3"));
        assert!(!satisfied(
            "net.ipv4.tcp_rmem",
            "4096 131072 6291456",
            "4096 16384 4194304"
        ));
        assert!(satisfied("net.ipv4.tcp_tw_reuse", "1", "1"));
    }

    #[test]
    fn malformed_lines_are_named() {
        let e = parse("x", "# ok\nnet.core.somaxconn 4096\n").unwrap_err();
        assert!(e.starts_with("x:2:"), "{e}");
    }
}
