//! `holdfast tune` and `holdfast plan` as an operator runs them. Changes happen only inside a
//! private network namespace (`unshare -n`), whose per-namespace sysctls start at defaults
//! and vanish with it; the host's values are checked to be untouched.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_holdfast");

fn host(key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/"))).unwrap_or_default()
}

/// Run a shell script in a fresh network namespace; None when namespaces are unavailable.
fn in_netns(script: &str) -> Option<(bool, String)> {
    let out = Command::new("unshare")
        .args(["-n", "sh", "-ec", script])
        .env("HF", BIN)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() && err.contains("unshare failed") {
        eprintln!("skipped: cannot create a network namespace: {err}");
        return None;
    }
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &err,
    ))
}

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("holdfast-tune-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("profile.conf");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn apply_then_revert_round_trips_and_leaves_the_host_alone() {
    let before = (host("net.core.somaxconn"), host("net.ipv4.tcp_fin_timeout"));
    let profile = temp(
        "rt",
        "net.core.somaxconn = 1024\n\
         net.ipv4.tcp_fin_timeout = 20\n\
         net.ipv4.ip_local_port_range = 1024 65000\n\
         net.ipv4.no_such_key_here = 1\n",
    );
    let snap = profile.with_file_name("snap.conf");
    let script = format!(
        "echo 128 > /proc/sys/net/core/somaxconn\n\
         $HF tune apply --profile {p} --dry-run\n\
         echo dry: $(cat /proc/sys/net/core/somaxconn) $(cat /proc/sys/net/ipv4/tcp_fin_timeout)\n\
         $HF tune apply --profile {p} --snapshot {s}\n\
         echo applied: $(cat /proc/sys/net/core/somaxconn) $(cat /proc/sys/net/ipv4/tcp_fin_timeout) $(cat /proc/sys/net/ipv4/ip_local_port_range)\n\
         $HF tune revert {s}\n\
         echo reverted: $(cat /proc/sys/net/core/somaxconn) $(cat /proc/sys/net/ipv4/tcp_fin_timeout) $(cat /proc/sys/net/ipv4/ip_local_port_range)\n",
        p = profile.display(),
        s = snap.display()
    );
    let Some((ok, out)) = in_netns(&script) else {
        return;
    };
    assert!(ok, "{out}");
    assert!(
        out.contains("would set  net.core.somaxconn = 1024   (was 128)"),
        "{out}"
    );
    assert!(
        out.contains("dry: 128 60"),
        "dry run changed something: {out}"
    );
    assert!(
        out.contains("absent     net.ipv4.no_such_key_here"),
        "{out}"
    );
    assert!(out.contains("applied: 1024 20 1024 65000"), "{out}");
    assert!(out.contains("reverted: 128 60 32768 60999"), "{out}");
    let saved = std::fs::read_to_string(&snap).unwrap();
    assert!(saved.contains("net.core.somaxconn = 128"), "{saved}");
    assert!(!saved.contains("no_such_key"), "{saved}");
    assert_eq!(
        (host("net.core.somaxconn"), host("net.ipv4.tcp_fin_timeout")),
        before
    );
    std::fs::remove_dir_all(profile.parent().unwrap()).ok();
}

#[test]
fn values_beyond_the_profile_are_kept_unless_forced() {
    let profile = temp("keep", "net.core.somaxconn = 1024\n");
    let snap = profile.with_file_name("snap.conf");
    let script = format!(
        "echo 8192 > /proc/sys/net/core/somaxconn\n\
         $HF tune apply --profile {p} --snapshot {s}\n\
         echo after: $(cat /proc/sys/net/core/somaxconn)\n\
         $HF tune apply --profile {p} --snapshot {s} --force\n\
         echo forced: $(cat /proc/sys/net/core/somaxconn)\n",
        p = profile.display(),
        s = snap.display()
    );
    let Some((ok, out)) = in_netns(&script) else {
        return;
    };
    assert!(ok, "{out}");
    assert!(out.contains("kept       net.core.somaxconn"), "{out}");
    assert!(out.contains("after: 8192"), "{out}");
    assert!(out.contains("forced: 1024"), "{out}");
    std::fs::remove_dir_all(profile.parent().unwrap()).ok();
}

#[test]
fn check_names_a_deliberately_low_limit_and_the_fix() {
    let Some((ok, out)) = in_netns(
        "echo 128 > /proc/sys/net/core/somaxconn\n$HF tune check --profile c100k --json\n",
    ) else {
        return;
    };
    assert!(ok, "{out}");
    let json_start = out.find('{').unwrap();
    let v: serde_json::Value = serde_json::from_str(out[json_start..].trim()).unwrap();
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "net.core.somaxconn")
        .unwrap()
        .clone();
    assert_eq!(row["live"], "128");
    assert_eq!(row["status"], "low");
    assert_eq!(row["fix"], "sysctl -w net.core.somaxconn=\"65535\"");
}

#[test]
fn check_fails_when_the_target_is_beyond_the_binding_limit() {
    let file_max: u64 = host("fs.file-max").trim().parse().unwrap();
    let target = file_max * 4; // beyond fs.file-max (and, here, memory)
    let out = Command::new(BIN)
        .args(["tune", "check", "--connections", &target.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT ENOUGH"), "{text}");
    assert!(text.contains("binds first"), "{text}");
    // Every limit short of the target is named (fs.file-max and, here, memory), not only
    // the first.
    let short = text.split("Short of the target:").nth(1).unwrap_or("");
    assert!(short.contains("fs.file-max"), "{text}");
    assert!(short.matches("(about").count() >= 2, "{text}");
    // A small target passes.
    let ok = Command::new(BIN)
        .args(["tune", "check", "--connections", "1000"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[test]
fn plan_prints_a_table_and_json() {
    let out = Command::new(BIN)
        .args([
            "plan",
            "--connections",
            "10000000",
            "--node-memory",
            "24G",
            "--node-cores",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Memory fits 10M on two such nodes; heartbeats (5.2 cores at 25 s) need four.
    assert_eq!(v["nodes"], 4);
    assert_eq!(v["bound_by"], "cpu");
    assert!(v["constants"][0]["source"]
        .as_str()
        .unwrap()
        .contains("bench/results"));
    // Over TLS: the measured TLS constants, each with its source, and the storm's cost.
    let tls = Command::new(BIN)
        .args([
            "plan",
            "--connections",
            "1000000",
            "--tls",
            "--node-memory",
            "24G",
            "--node-cores",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(tls.status.success());
    let t: serde_json::Value = serde_json::from_slice(&tls.stdout).unwrap();
    assert_eq!(t["input"]["tls"], true);
    // 1e6 × (61.2 + 4047 + 270) B + 14 MB fixed = 4.39 GB.
    assert!(t["memory_bytes"].as_f64().unwrap() > 4.35e9, "{t}");
    assert!(
        t["storm_cpu_seconds"]["full"].as_f64().unwrap() > 100.0,
        "{t}"
    );
    let c = t["constants"].as_array().unwrap();
    let extra = c
        .iter()
        .find(|k| k["name"] == "tls_userspace_extra_per_connection")
        .unwrap();
    assert!(extra["source"].as_str().unwrap().contains("tls-density"));
}

/// A reader that went away (`holdfast plan | head -3`) ends the command quietly: `println!`
/// panicked on the broken pipe with a backtrace.
#[test]
fn a_closed_stdout_ends_plan_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    // The read end is gone before the command writes: every write gets EPIPE.
    drop(reader);
    let (status, stderr) = plan_into(writer.into());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status, Some(0), "{stderr}");
}

/// `holdfast plan` for 1M connections with its stdout on `out`: its exit status and stderr.
fn plan_into(out: std::process::Stdio) -> (Option<i32>, String) {
    let o = Command::new(BIN)
        .args(["plan", "--connections", "1000000", "--node-memory", "24G"])
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Any other failed write to stdout (a full disk) ends the command with status 1 and says
/// why, instead of a panic's backtrace.
#[test]
fn a_failed_write_to_stdout_ends_plan_with_the_reason() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("skipped: no /dev/full");
        return;
    };
    let (status, stderr) = plan_into(full.into());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.starts_with("holdfast: writing to stdout: "),
        "{stderr}"
    );
    assert_eq!(status, Some(1), "{stderr}");
}

/// The TCP established hash is judged against the target: a chain per bucket walked on
/// every received segment (docs/tuning.md).
#[test]
fn check_judges_the_established_hash_against_the_target() {
    let live = host("net.ipv4.tcp_ehash_entries");
    let Ok(v) = live.trim().parse::<i64>() else {
        eprintln!("skipped: no net.ipv4.tcp_ehash_entries (kernel < 6.1)");
        return;
    };
    let buckets = v.unsigned_abs();
    let row = |target: u64| {
        let out = Command::new(BIN)
            .args([
                "tune",
                "check",
                "--json",
                "--connections",
                &target.to_string(),
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "net.ipv4.tcp_ehash_entries")
            .cloned()
            .unwrap()
    };
    let at = row(buckets);
    assert_eq!(at["status"], "ok", "{at}");
    assert!(at["live"]
        .as_str()
        .unwrap()
        .starts_with(&buckets.to_string()));
    let over = row(buckets + 1);
    assert_eq!(over["status"], "low", "{over}");
    let want = (buckets + 1).next_power_of_two();
    assert!(
        over["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("thash_entries={want}")),
        "{over}"
    );
}
