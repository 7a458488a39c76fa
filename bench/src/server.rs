//! Starting and observing a `holdfast serve` process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The release server binary next to this executable (target/release/holdfast).
pub fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            // Benches and tests live one level further down (target/release/deps).
            let dir = p.parent()?;
            let dir = if dir.ends_with("deps") {
                dir.parent()?
            } else {
                dir
            };
            Some(dir.join("holdfast"))
        })
        .unwrap_or_else(|| PathBuf::from("target/release/holdfast"))
}

/// A running server, killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// WebSocket listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
}

impl ServerProcess {
    /// Start `bin serve` on ephemeral loopback ports with extra flags.
    pub fn start(bin: &Path, extra: &[String]) -> Result<Self, String> {
        if !bin.exists() {
            return Err(format!(
                "{} not found: build it with `cargo build --release --bin holdfast`",
                bin.display()
            ));
        }
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(extra)
            .env("HOLDFAST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(15))
                .map_err(|_| "the server did not report its addresses".to_string())?;
            if let Some(a) = line.strip_prefix("admin listening on ") {
                admin = a.parse().ok();
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addr = a.parse().ok();
            }
        }
        Ok(Self {
            child,
            addr: addr.ok_or("no address")?,
            admin: admin.ok_or("no admin")?,
        })
    }

    /// The Prometheus text from /metrics.
    pub fn metrics_text(&self) -> Result<String, String> {
        let mut s = TcpStream::connect(self.admin).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| e.to_string())?;
        Ok(body
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default())
    }

    /// One series' value.
    pub fn metric(&self, series: &str) -> Result<f64, String> {
        let text = self.metrics_text()?;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no metric {series}"))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
