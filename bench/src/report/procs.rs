//! The processes a report runs: servers (holdfast and the peers) and the load generator.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A server the report can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// holdfast itself.
    Holdfast,
    /// tokio-tungstenite echo (`holdfast-bench peer tokio-tungstenite`).
    TokioTungstenite,
    /// fastwebsockets echo on a current-thread runtime.
    Fastwebsockets,
    /// Node's `ws` (when node and npm are present).
    NodeWs,
    /// tokio-tungstenite broadcast (pub/sub peer).
    Broadcast,
    /// uWebSockets (epoll, one thread), built from source (`--uws-src`): echo and pub/sub.
    Uws,
    /// uWebSockets built with OpenSSL (or BoringSSL: `--uws-boringssl`), serving wss:// with
    /// the same test certificate as holdfast-tls (the TLS section).
    UwsTls,
    /// holdfast terminating TLS (the test certificate in tests/fixtures/tls), driven over
    /// wss:// by the loadgen trusting the test CA.
    HoldfastTls,
    /// holdfast's event streams (`GET /sse`, server-sent events) instead of WebSockets.
    HoldfastSse,
    /// holdfast's long-poll (`GET /poll`, one request after another) instead of WebSockets.
    HoldfastPoll,
    /// holdfast's io layer with only an echo's upgrade and framing above it
    /// (`holdfast-bench echo-floor`): the echo section's yardstick, not a peer.
    EchoFloor,
}

/// The test certificate files holdfast-tls serves and the loadgen trusts.
pub fn tls_fixture(name: &str) -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tls/").to_string() + name
}

impl Kind {
    /// Its name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Holdfast => "holdfast",
            Self::TokioTungstenite => "tokio-tungstenite",
            Self::Fastwebsockets => "fastwebsockets",
            Self::NodeWs => "node-ws",
            Self::Broadcast => "tokio-tungstenite-broadcast",
            Self::Uws => "uwebsockets",
            Self::UwsTls => "uwebsockets-tls",
            Self::HoldfastTls => "holdfast-tls",
            Self::HoldfastSse => "holdfast-sse",
            Self::HoldfastPoll => "holdfast-poll",
            Self::EchoFloor => "holdfast-io-floor",
        }
    }

    /// Parse a report name.
    pub fn parse(s: &str) -> Result<Self, String> {
        [
            Self::Holdfast,
            Self::TokioTungstenite,
            Self::Fastwebsockets,
            Self::NodeWs,
            Self::Broadcast,
            Self::Uws,
            Self::UwsTls,
            Self::HoldfastTls,
            Self::HoldfastSse,
            Self::HoldfastPoll,
            Self::EchoFloor,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| format!("unknown server {s:?}"))
    }

    /// Whether it holds sockets as file descriptors (so `ulimit -n` caps it).
    pub const fn uses_fds(self) -> bool {
        !matches!(
            self,
            Self::Holdfast
                | Self::HoldfastTls
                | Self::HoldfastSse
                | Self::HoldfastPoll
                | Self::EchoFloor
        )
    }

    /// Whether it is spoken to over plain HTTP (an event stream or polls), and on which
    /// path.
    pub const fn http_path(self) -> Option<&'static str> {
        match self {
            Self::HoldfastSse => Some("/sse"),
            Self::HoldfastPoll => Some("/poll"),
            _ => None,
        }
    }

    /// Whether it is spoken to over wss://.
    pub const fn tls(self) -> bool {
        matches!(self, Self::HoldfastTls | Self::UwsTls)
    }
}

/// Children alive now (servers, the loadgen), killed if the report is interrupted.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

pub(super) fn track(pid: u32, alive: bool) {
    let mut c = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    if alive {
        c.push(pid);
    } else {
        c.retain(|&p| p != pid);
    }
}

/// Kill every child still running (the report was interrupted).
pub fn kill_children() {
    let c = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    for &pid in c.iter() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
}

/// The directory holding this program's sibling binaries (target/release).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// The holdfast-bench binary beside the others (or this one).
pub(super) fn bench_exe() -> PathBuf {
    let d = bin_dir().join("holdfast-bench");
    if d.exists() {
        d
    } else {
        std::env::current_exe().unwrap_or_default()
    }
}

/// Where `npm install ws` puts the module for the Node peer.
fn node_prefix() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/node-ws"))
}

/// Whether the Node peer can run: node and npm present and `ws` installed (installing it
/// with npm when `install` is set).
pub fn node_ready(install: bool) -> Result<(), String> {
    let have = |c: &str| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("node") || !have("npm") {
        return Err("node/npm not found".into());
    }
    let module = node_prefix().join("node_modules/ws/package.json");
    if module.exists() {
        return Ok(());
    }
    if !install {
        return Err("the ws module is not installed (a full run installs it with npm)".into());
    }
    let st = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(node_prefix())
        .arg("ws@8")
        .status()
        .map_err(|e| format!("npm: {e}"))?;
    if st.success() && module.exists() {
        Ok(())
    } else {
        Err("npm install ws failed".into())
    }
}

/// A running server, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Its kind.
    pub kind: Kind,
    /// WebSocket address (host:port).
    pub addr: String,
    /// Admin / publish address, for holdfast and the broadcast peer.
    pub admin: Option<String>,
}

impl Server {
    /// Start `kind` on ephemeral ports, pinned to `cpus` (taskset list) if given, with
    /// `extra` arguments (holdfast only) and at most `threads` runtime threads (peers).
    pub fn start(
        kind: Kind,
        cpus: Option<&str>,
        threads: Option<usize>,
        extra: &[&str],
    ) -> Result<Self, String> {
        Self::launch(kind, cpus, threads, "127.0.0.1:0", extra)
    }

    /// The base URL a client reaches it at: wss:// for TLS (the test certificate names
    /// localhost), http:// for the plain-HTTP transports, ws:// otherwise.
    pub fn url_base(&self) -> String {
        if self.kind.tls() {
            let port = self.addr.rsplit_once(':').map_or("", |(_, p)| p);
            format!("wss://localhost:{port}")
        } else if self.kind.http_path().is_some() {
            format!("http://{}", self.addr)
        } else {
            format!("ws://{}", self.addr)
        }
    }

    /// For a test: the uWebSockets peer built from [`super::uws::test_source`] and started
    /// (a build or start that fails panics); None, with a line saying why, when there is no
    /// source here. `crate_dir` is the bench crate's directory.
    pub fn start_test_uws(crate_dir: &Path) -> Option<Self> {
        let src = super::uws::test_source(crate_dir)?;
        super::uws::prepare(&src).expect("the peer builds");
        Some(Self::start(Kind::Uws, None, None, &[]).expect("the peer starts"))
    }

    /// Start holdfast listening on `listen` (a port another process may share, with
    /// `--share-port` in `extra`).
    pub fn start_at(kind: Kind, listen: &str, extra: &[String]) -> Result<Self, String> {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Self::launch(kind, None, None, listen, &extra)
    }

    fn launch(
        kind: Kind,
        cpus: Option<&str>,
        threads: Option<usize>,
        listen: &str,
        extra: &[&str],
    ) -> Result<Self, String> {
        let mut argv: Vec<String> = Vec::new();
        if let Some(c) = cpus {
            argv.extend(["taskset".into(), "-c".into(), c.into()]);
        }
        let bench = bench_exe().display().to_string();
        match kind {
            Kind::Holdfast | Kind::HoldfastTls | Kind::HoldfastSse | Kind::HoldfastPoll => {
                argv.push(bin_dir().join("holdfast").display().to_string());
                argv.extend(
                    ["serve", "--listen", listen, "--admin", "127.0.0.1:0"].map(String::from),
                );
                if let Some(t) = threads {
                    argv.extend(["--workers".into(), t.to_string()]);
                }
                argv.extend(extra.iter().map(|s| s.to_string()));
                if kind == Kind::HoldfastTls {
                    argv.extend([
                        "--tls-cert".into(),
                        tls_fixture("server.pem"),
                        "--tls-key".into(),
                        tls_fixture("server.key"),
                    ]);
                }
            }
            Kind::TokioTungstenite | Kind::Fastwebsockets | Kind::Broadcast => {
                argv.extend([bench, "peer".into()]);
                argv.push(
                    match kind {
                        Kind::TokioTungstenite => "tokio-tungstenite",
                        Kind::Fastwebsockets => "fastwebsockets",
                        _ => "tokio-tungstenite-broadcast",
                    }
                    .into(),
                );
                argv.extend(
                    ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"].map(String::from),
                );
                if let Some(t) = threads {
                    argv.extend(["--threads".into(), t.to_string()]);
                }
            }
            Kind::EchoFloor => {
                argv.extend([bench, "echo-floor".into(), "--listen".into(), listen.into()]);
            }
            Kind::Uws => {
                let exe = super::uws::binary().ok_or("the uwebsockets peer is not built")?;
                argv.extend([exe.display().to_string(), "0".into(), "0".into()]);
            }
            Kind::UwsTls => {
                let exe =
                    super::uws::binary_tls().ok_or("the uwebsockets peer with TLS is not built")?;
                argv.extend([
                    exe.display().to_string(),
                    "0".into(),
                    "0".into(),
                    tls_fixture("server.pem"),
                    tls_fixture("server.key"),
                ]);
            }
            Kind::NodeWs => {
                argv.extend([
                    "node".into(),
                    concat!(env!("CARGO_MANIFEST_DIR"), "/node/ws-echo.cjs").into(),
                    "0".into(),
                ]);
            }
        }
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("HOLDFAST_LOG", "warn")
            .env("NODE_PATH", node_prefix().join("node_modules"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
        track(child.id(), true);
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep reading so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let wants_admin = matches!(
            kind,
            Kind::Holdfast
                | Kind::HoldfastTls
                | Kind::HoldfastSse
                | Kind::HoldfastPoll
                | Kind::Broadcast
                | Kind::Uws
                | Kind::UwsTls
        );
        let (mut addr, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(15);
        while addr.is_none() || (wants_admin && admin.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                let _ = child.kill();
                format!("{} did not start", kind.name())
            })?;
            if let Some(a) = line.strip_prefix("admin listening on ") {
                admin = Some(a.trim().to_string());
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.trim().to_string());
            }
        }
        Ok(Self {
            child,
            kind,
            addr: addr.unwrap_or_default(),
            admin,
        })
    }

    /// Process id (of the server itself: taskset execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One series of holdfast's `/metrics` (e.g. `holdfast_websockets`).
    pub fn metric(&self, series: &str) -> Result<f64, String> {
        use std::io::{Read, Write};
        let admin = self.admin.as_deref().ok_or("no admin address")?;
        let mut s = std::net::TcpStream::connect(admin).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| e.to_string())?;
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no metric {series}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        track(self.child.id(), false);
    }
}

/// Run the load generator with `args` (plus `--json`), pinned to `cpus` if given; `on_line`
/// sees each progress line as it is printed. Returns its report and whether it met its goal.
pub fn loadgen(
    args: &[String],
    cpus: Option<&str>,
    mut on_line: impl FnMut(&str),
) -> Result<(Value, bool), String> {
    let json = std::env::temp_dir().join(format!(
        "holdfast-report-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let lg = bin_dir().join("holdfast-loadgen").display().to_string();
    let mut argv: Vec<String> = Vec::new();
    if let Some(c) = cpus {
        argv.extend(["taskset".into(), "-c".into(), c.into()]);
    }
    argv.push(lg);
    argv.extend(args.iter().cloned());
    argv.extend(["--json".into(), json.display().to_string()]);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the loadgen: {e}"))?;
    track(child.id(), true);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            on_line(&line);
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    track(child.id(), false);
    let text = std::fs::read_to_string(&json)
        .map_err(|e| format!("the loadgen wrote no report ({status}): {e}"))?;
    let _ = std::fs::remove_file(&json);
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok((v, status.success()))
}
