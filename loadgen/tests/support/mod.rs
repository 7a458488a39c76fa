//! Test harness: the holdfast server as a child process, a tokio-tungstenite echo server
//! built here (the comparison peer the issue names), and the loadgen binary run to
//! completion with its JSON report parsed.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};

pub fn server_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    let bin = dir.join("holdfast");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release --workspace",
        bin.display()
    );
    bin
}

/// A holdfast server child: its WebSocket and admin addresses.
pub struct Holdfast {
    pub child: Child,
    pub addr: String,
    pub admin: String,
}

impl Holdfast {
    pub fn start(listen: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(server_bin())
            .args(["serve", "--listen", listen, "--admin", "127.0.0.1:0"])
            .args(extra)
            .env("HOLDFAST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut addr, mut admin) = (String::new(), String::new());
        for _ in 0..10 {
            let Some(Ok(l)) = lines.next() else { break };
            if let Some(a) = l.strip_prefix("admin listening on ") {
                admin = a.to_string();
            } else if let Some(a) = l.strip_prefix("listening on ") {
                addr = a.to_string();
            }
            if !addr.is_empty() && !admin.is_empty() {
                break;
            }
        }
        assert!(
            !addr.is_empty() && !admin.is_empty(),
            "server did not start"
        );
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr, admin }
    }

    pub fn metric(&self, series: &str) -> f64 {
        let mut s = TcpStream::connect(&self.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
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
}

impl Drop for Holdfast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tokio-tungstenite echo server on its own runtime thread: echoes data messages, counts
/// upgrades. Written as tokio-tungstenite's README shows (accept_async, split, forward).
pub struct TungsteniteEcho {
    pub addr: SocketAddr,
    pub upgrades: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TungsteniteEcho {
    pub fn start() -> Self {
        let upgrades = Arc::new(AtomicU64::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let count = upgrades.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let count = count.clone();
                            tokio::spawn(async move {
                                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                                    return;
                                };
                                count.fetch_add(1, Ordering::Relaxed);
                                let (mut tx, mut rx) = ws.split();
                                while let Some(Ok(msg)) = rx.next().await {
                                    if (msg.is_binary() || msg.is_text())
                                        && tx.send(msg).await.is_err()
                                    {
                                        break;
                                    }
                                }
                            });
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            addr,
            upgrades,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TungsteniteEcho {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Run the loadgen with `args` plus `--json FILE`; returns (exit code, report, stdout).
pub fn loadgen(args: &[&str]) -> (i32, serde_json::Value, String) {
    let child = spawn_loadgen(args);
    finish_loadgen(child)
}

pub struct LoadgenRun {
    child: Child,
    json: std::path::PathBuf,
}

impl LoadgenRun {
    /// Whether the loadgen is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

static RUN: AtomicU64 = AtomicU64::new(0);

pub fn spawn_loadgen(args: &[&str]) -> LoadgenRun {
    spawn_loadgen_on(None, args)
}

/// [`spawn_loadgen`] under `taskset -c CPUS` when `cpus` is given.
pub fn spawn_loadgen_on(cpus: Option<&str>, args: &[&str]) -> LoadgenRun {
    match cpus {
        Some(c) => spawn_loadgen_under(&["taskset", "-c", c], args),
        None => spawn_loadgen_under(&[], args),
    }
}

/// [`loadgen`] run by a wrapper command (`prlimit --nofile=N:`, say) that execs it.
pub fn loadgen_under(wrapper: &[&str], args: &[&str]) -> (i32, serde_json::Value, String) {
    finish_loadgen(spawn_loadgen_under(wrapper, args))
}

/// [`spawn_loadgen`] run by `wrapper` (nothing: run directly).
pub fn spawn_loadgen_under(wrapper: &[&str], args: &[&str]) -> LoadgenRun {
    let json = std::env::temp_dir().join(format!(
        "loadgen-test-{}-{}.json",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    // LOADGEN_READ_MODE=recv runs every scenario with multishot receives (CI does both).
    let mode = std::env::var("LOADGEN_READ_MODE").unwrap_or_else(|_| "poll".into());
    let exe = env!("CARGO_BIN_EXE_holdfast-loadgen");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut w = Command::new(first);
            w.args(rest).arg(exe);
            w
        }
        None => Command::new(exe),
    };
    let child = cmd
        .args(args)
        .args(["--read-mode", &mode])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    LoadgenRun { child, json }
}

pub fn finish_loadgen(run: LoadgenRun) -> (i32, serde_json::Value, String) {
    let out = run.child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = std::fs::read_to_string(&run.json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    std::fs::remove_file(&run.json).ok();
    (out.status.code().unwrap_or(-1), v, text)
}

impl Holdfast {
    /// Wait for the server to exit on its own (e.g. after a drain), at most `limit`; an exit
    /// is an event: a waiter thread owns the child and reports it. On timeout it is killed.
    pub fn wait_exit(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                None
            }
        }
    }
}

pub fn n(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f as u64))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}
