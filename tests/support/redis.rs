//! A real `redis-server` (or a three-master Redis Cluster) for the backplane tests, on
//! loopback ports of its own, in a temporary directory; killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-cli -p PORT ARGS…`'s output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (the test command installs redis-server, which brings it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One redis-server.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    /// A standalone server without persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A standalone server with `extra` settings, on a port of its own. A port found free
    /// can be taken before redis binds it, by another test's connection or by a cluster
    /// node's bus port (its port + 10,000, which lands inside the range [`free_port`] picks
    /// from): a server that exits at start, or stays silent, is tried on another port.
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut why = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("holdfast-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            match spawn(port, &dir, &extra) {
                Ok(child) => {
                    return Self {
                        port,
                        child: Some(child),
                        dir,
                        extra,
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    why = format!("redis-server on {port}: {e}");
                }
            }
        }
        panic!("{why} (5 ports tried)");
    }

    /// Start it again on its own port (a restart keeps the port its clients know).
    fn launch(&mut self) {
        match spawn(self.port, &self.dir, &self.extra) {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("redis-server on {}: {e}", self.port),
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < end, "redis-server did not go away");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start it again on the same port and directory (what it persisted comes back).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

/// A redis-server on `port` keeping its files in `dir`, once it answers PING: Err if it
/// exits first (its port was taken) or stays silent for 10 s.
fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Result<Child, String> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--dir", dir.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server (the test command installs it)");
    let end = Instant::now() + Duration::from_secs(10);
    while cli(port, &["PING"]).trim() != "PONG" {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited at start ({status})"));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no PONG in 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters, no replicas, all 16,384 slots assigned.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start() -> Self {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                Redis::start_with(&[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = cli(nodes[0].port, &args);
        assert!(
            out.contains("All 16384 slots covered"),
            "cluster create: {out}"
        );
        let end = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            while !cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < end, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
    }

    /// `redis://` naming one master (the nodes learn the rest).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}
