//! `holdfast-loadgen hold` against the real server: every connection established, pings
//! answered, every close clean — and the counts the loadgen reports agree with the server's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn server_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    dir.join("holdfast")
}

fn metric(admin: &str, series: &str) -> f64 {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn hold_against_the_holdfast_server() {
    let bin = server_bin();
    assert!(
        bin.exists(),
        "{} missing: cargo build --release --workspace",
        bin.display()
    );
    let mut server = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--ping-interval",
            "0.5",
        ])
        .args(["--idle-timeout", "5"])
        .env("HOLDFAST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let (mut addr, mut admin) = (String::new(), String::new());
    for _ in 0..10 {
        let l = lines.next().unwrap().unwrap();
        if let Some(a) = l.strip_prefix("admin listening on ") {
            admin = a.to_string();
        } else if let Some(a) = l.strip_prefix("listening on ") {
            addr = a.to_string();
        }
        if !addr.is_empty() && !admin.is_empty() {
            break;
        }
    }
    let json = std::env::temp_dir().join(format!("loadgen-hold-{}.json", std::process::id()));
    let n = 3000;
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast-loadgen"))
        .args([
            "hold",
            "--url",
            &format!("ws://{addr}/echo"),
            "--connections",
            &n.to_string(),
        ])
        .args([
            "--rate",
            "20000",
            "--duration",
            "1.5",
            "--hard-timeout",
            "60",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["established"], n);
    assert_eq!(v["held_at_end"], n);
    assert!(v["pings_answered"].as_u64().unwrap() >= n as u64, "{v}");
    assert_eq!(v["closes_and_statuses"]["close:1000"], n, "{v}");
    assert!(v["connect_upgrade_latency_us"]["p50"].as_u64().unwrap() > 0);
    // The server agrees: n upgrades, n clean client-initiated closes, nothing aborted.
    assert_eq!(metric(&admin, "holdfast_upgrades_total"), n as f64);
    assert_eq!(
        metric(
            &admin,
            "holdfast_closes_total{code=\"1000\",side=\"client\"}"
        ),
        n as f64
    );
    assert_eq!(metric(&admin, "holdfast_aborted_total"), 0.0);
    server.kill().unwrap();
    server.wait().unwrap();
    std::fs::remove_file(&json).ok();
}
