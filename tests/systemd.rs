//! The shipped systemd unit passes `systemd-analyze verify`, and the server speaks the
//! notification protocol it relies on (READY=1, STOPPING=1, WATCHDOG=1) over a real
//! notification socket (issue 13 item 18).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_unit_verifies_and_runs_unprivileged_as_type_notify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tuning/holdfast.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "WatchdogSec=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "{line} missing");
    }
    assert!(!unit.contains("User=root"));
    let Ok(status) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed here: the verify step is skipped");
        return;
    };
    assert!(status.status.success());
    // Verify a copy whose ExecStart names the binary just built (verify checks it exists).
    let dir = std::env::temp_dir().join(format!("holdfast-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("holdfast.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/holdfast", env!("CARGO_BIN_EXE_holdfast")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Only lines about our unit count (verify also reports the host's own units).
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("holdfast")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {ours:?}\n{text}");
}

#[test]
fn ready_stopping_and_watchdog_reach_the_notification_socket() {
    let dir = std::env::temp_dir().join(format!("holdfast-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--drain-window",
            "1",
            "--drain-grace",
            "1",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env("HOLDFAST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    assert!(first.starts_with("READY=1"), "{first}");
    // The listener is up by then.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    assert!(stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening on ")));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_watchdog = false;
    while !saw_watchdog {
        assert!(Instant::now() < deadline, "no WATCHDOG=1");
        saw_watchdog = next().contains("WATCHDOG=1");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut saw_stopping = false;
    while !saw_stopping {
        assert!(Instant::now() < deadline, "no STOPPING=1");
        saw_stopping = next().contains("STOPPING=1");
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_upgrade_hands_the_main_pid_to_the_new_process() {
    let dir = std::env::temp_dir().join(format!("holdfast-notify-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("HOLDFAST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(next().starts_with("READY=1"));
    let _ = Command::new("kill")
        .args(["-USR2", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_pid: u32 = loop {
        assert!(Instant::now() < deadline, "no MAINPID=");
        let m = next();
        if let Some(rest) = m.strip_prefix("MAINPID=") {
            break rest.lines().next().unwrap().parse().unwrap();
        }
        assert!(
            !m.contains("STOPPING=1"),
            "the old process must not say it stops: {m}"
        );
    };
    assert_ne!(new_pid, child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the old process leaves cleanly");
    assert!(
        std::path::Path::new(&format!("/proc/{new_pid}")).exists(),
        "the new main process runs"
    );
    let _ = Command::new("kill")
        .args(["-KILL", &new_pid.to_string()])
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}
