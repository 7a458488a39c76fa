//! Test support: start the real server binary on ephemeral ports and talk to it.
#![allow(dead_code, unreachable_pub)]

pub mod redis;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use holdfast::ws::assembler::{Assembler, Message};
use holdfast::ws::frame::encode_frame;
use holdfast::ws::{Decoder, OpCode, Role};

/// A running `holdfast serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The observe-only listener, when started with --metrics-listen.
    pub metrics: Option<SocketAddr>,
    /// Its stderr lines, when started with [`Server::start_logging`].
    pub log: Option<mpsc::Receiver<String>>,
}

impl Server {
    /// Start the server with extra flags; waits (bounded) for it to print its addresses.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, None, &[])
    }

    /// Start it with `HOLDFAST_LOG=filter`, its stderr lines readable with
    /// [`Server::wait_log`].
    pub fn start_logging(extra: &[&str], filter: &str) -> Self {
        Self::start_with(extra, Some(filter), &[])
    }

    /// Like [`Server::start_logging`], with extra environment variables.
    pub fn start_logging_env(extra: &[&str], filter: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(extra, Some(filter), env)
    }

    fn start_with(extra: &[&str], log: Option<&str>, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_holdfast"));
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
        if !extra.contains(&"--workers") {
            cmd.args(["--workers", "2"]);
        }
        // CI runs the suite once per read mode: HOLDFAST_E2E_ARGS="--read-mode recv".
        if let Ok(more) = std::env::var("HOLDFAST_E2E_ARGS") {
            cmd.args(more.split_whitespace());
        }
        let mut child = cmd
            .args(extra)
            .env("HOLDFAST_LOG", log.unwrap_or("warn"))
            .stdout(Stdio::piped())
            .stderr(if log.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("start holdfast");
        let log = child.stderr.take().map(|stderr| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("server: {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut addr, mut admin, mut metrics) = (None, None, None);
        while addr.is_none() || admin.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("server did not start");
            if let Some(a) = line.strip_prefix("admin listening on ") {
                admin = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("metrics listening on ") {
                metrics = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addr = Some(a.parse().unwrap());
            }
        }
        Self {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            metrics,
            log,
        }
    }

    /// The first stderr line (from now on) that satisfies `pred`, waiting at most `within`.
    pub fn wait_log(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.try_log(within, pred)
            .unwrap_or_else(|| panic!("no such log line within {within:?}"))
    }

    /// Like [`Server::wait_log`], None when no such line came within `within`.
    pub fn try_log(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let rx = self.log.as_ref().expect("started with start_logging");
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// GET (or POST) an admin path; returns (status, body).
    pub fn admin(&self, method: &str, path: &str) -> (u16, String) {
        http(self.admin, method, path)
    }

    /// The value of an unlabelled metric, or of a full `name{labels}` series.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.admin("GET", "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no series {series}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Poll a metric until `pred` holds (bounded).
    pub fn wait_metric(&self, series: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.metric(series);
            if pred(v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{series} stuck at {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024
    }

    /// Send a signal.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `holdfast serve --listen 127.0.0.1:0 --admin off EXTRA…` run to its exit, as a start-up
/// refusal ends it: its exit code and standard error.
pub fn serve_refused(extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "off"])
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err)
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    request(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n"),
        b"",
    )
}

/// `POST /publish?topic=T` with `body` (binary when `binary`); returns (status, body).
pub fn publish(admin: SocketAddr, topic: &str, body: &[u8], binary: bool) -> (u16, String) {
    let ctype = if binary {
        "application/octet-stream"
    } else {
        "text/plain"
    };
    let head = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {ctype}\r\n"
    );
    request(admin, &head, body)
}

/// Send `head` (request line and headers, without the blank line) with `body`, read the
/// answer to EOF; returns (status, body).
pub fn request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // One write: `write!` sends the pieces of its format separately, and a server that
    // answers on the first bytes (plain HTTP on a TLS port) and closes made a later piece
    // fail with EPIPE. A server may still answer before taking a large body: what it says
    // is read either way.
    let mut req = format!(
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let _ = s.write_all(&req);
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One HTTP answer read from `s` as a client that keeps its connection would read it: the
/// head, then `Content-Length` bytes of body (to EOF when there is no length). Returns
/// (status, head, body); status 0 when the connection ended before a head.
pub fn read_answer(s: &mut impl Read) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the blank line, so nothing of a next answer is taken.
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
        assert!(buf.len() < 64 << 10, "an answer head over 64 KiB");
    }
    let head = String::from_utf8_lossy(&buf).trim_end().to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            s.read_exact(&mut body).unwrap();
        }
        None => {
            let _ = s.read_to_end(&mut body);
        }
    }
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// A connection to `addr` for requests one after another (reads bounded at 20 s).
pub fn kept(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Ask `GET path` (with extra header lines) on a connection kept between requests, as a
/// browser's fetch does; one answer, read by its length.
pub fn ask(s: &mut TcpStream, path: &str, headers: &str) -> (u16, String, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n").unwrap();
    read_answer(s)
}

/// Ask `path` on the kept connection `s`: a 200 that keeps the connection; its body.
pub fn ask_kept(s: &mut TcpStream, path: &str) -> serde_json::Value {
    let (st, head, body) = ask(s, path, "");
    assert_eq!(
        (st, connection(&head).as_str()),
        (200, "keep-alive"),
        "{head}\n{body}"
    );
    serde_json::from_str(&body).unwrap()
}

/// A poll answer's cursor.
pub fn cursor_of(answer: &serde_json::Value) -> String {
    answer["cursor"].as_str().unwrap().to_string()
}

/// Ask for `topic` from `cursor` on `s` without waiting for the answer (it will be held).
pub fn send_poll(s: &mut TcpStream, topic: &str, cursor: &str) {
    write!(
        s,
        "GET /poll?topics={topic}&cursor={cursor} HTTP/1.1\r\nHost: test\r\n\r\n"
    )
    .unwrap();
}

/// The answer's `Connection` header.
pub fn connection(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Connection: "))
        .unwrap_or("")
        .to_string()
}

/// Whether the server closed `s` with nothing more to say (EOF within 10 s).
pub fn closed_quietly(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0))
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The raw request a browser would send.
pub fn upgrade_request(path: &str, version: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
}

/// A raw WebSocket client over a blocking socket, for input no library would send.
pub struct Raw {
    pub stream: TcpStream,
    pub asm: Assembler,
    queue: std::collections::VecDeque<Got>,
}

/// A received frame or message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Eof,
}

impl Raw {
    /// Connect and complete the handshake; panics if it is not a 101.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::connect_to(addr, "/echo")
    }

    /// Connect to `path` and complete the handshake; panics if it is not a 101.
    pub fn connect_to(addr: SocketAddr, path: &str) -> Self {
        let (stream, head) = raw_request(addr, &upgrade_request(path, "13"));
        let accept = holdfast::ws::handshake::accept_key(KEY.as_bytes());
        assert!(
            matches!(
                holdfast::ws::client::scan_response(head.as_bytes(), &accept),
                Ok(Some(holdfast::ws::client::Response::Upgraded { .. }))
            ),
            "{head}"
        );
        Self {
            stream,
            asm: Assembler::new(Decoder::new(Role::Client)),
            queue: Default::default(),
        }
    }

    /// A client over a stream whose 101 was already read.
    pub fn from_upgraded(stream: TcpStream) -> Self {
        Self {
            stream,
            asm: Assembler::new(Decoder::new(Role::Client)),
            queue: Default::default(),
        }
    }

    pub fn send_frame(&mut self, fin: bool, op: OpCode, payload: &[u8]) {
        let mut v = Vec::new();
        encode_frame(&mut v, fin, op, Some([1, 2, 3, 4]), payload);
        self.stream.write_all(&v).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Change the read timeout.
    pub fn stream_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// The next message or control frame (or EOF), within the socket's read timeout.
    pub fn recv(&mut self) -> Got {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(g) = self.queue.pop_front() {
                return g;
            }
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return Got::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Got::Eof,
                Err(e) => panic!("read: {e}\n{}", sockets_of(&self.stream)),
            };
            let q = &mut self.queue;
            self.asm
                .feed(&buf[..n], u32::MAX, |m| q.push_back(own(m)))
                .unwrap();
        }
    }

    /// The next message that is not a Ping.
    pub fn recv_non_ping(&mut self) -> Got {
        loop {
            let g = self.recv();
            if !matches!(g, Got::Ping(_)) {
                return g;
            }
        }
    }
}

/// Both ends of `stream` as `ss` sees them (state, queues, the processes holding each
/// end), for a test that fails on a read timeout to say where the connection is stuck.
pub fn sockets_of(stream: &TcpStream) -> String {
    let Ok(local) = stream.local_addr() else {
        return "(no local address)".into();
    };
    let port = local.port();
    let filter = format!("( sport = :{port} or dport = :{port} )");
    match std::process::Command::new("ss")
        .args(["-tanpieO", "state", "all", &filter])
        .output()
    {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let rings: Vec<String> = out
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("ino:"))
                .filter(|i| *i != "0")
                .flat_map(rings_holding)
                .collect();
            format!("ss for port {port}:\n{out}io_uring tables holding it: {rings:?}")
        }
        Err(e) => format!("(ss: {e})"),
    }
}

/// `pid/fd: slot: socket:[ino]` for every io_uring whose registered-file table holds socket
/// inode `ino`
/// (`/proc/PID/fdinfo` of a ring lists its table): a socket no process has in its file
/// table may still be held by a ring.
fn rings_holding(ino: &str) -> Vec<String> {
    let needle = format!("socket:[{ino}]");
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let is_ring = std::fs::read_link(fd.path())
                .is_ok_and(|l| l.to_string_lossy().contains("io_uring"));
            if !is_ring {
                continue;
            }
            let info = p.path().join("fdinfo").join(fd.file_name());
            let Ok(text) = std::fs::read_to_string(&info) else {
                continue;
            };
            for line in text.lines().filter(|l| l.contains(&needle)) {
                found.push(format!(
                    "{}/{}: {}",
                    p.file_name().to_string_lossy(),
                    fd.file_name().to_string_lossy(),
                    line.trim()
                ));
            }
        }
    }
    found
}

fn own(m: Message<'_>) -> Got {
    match m {
        Message::Text(t) => Got::Text(t.into()),
        Message::Binary(b) => Got::Binary(b.into()),
        Message::Ping(b) => Got::Ping(b.into()),
        Message::Pong(b) => Got::Pong(b.into()),
        Message::Close(c, r, _) => Got::Close(c.map(|c| c.0), r.into()),
    }
}

/// Send raw request bytes; return the stream and the response head (bounded read).
pub fn raw_request(addr: SocketAddr, req: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = request_head(&mut s, req);
    (s, head)
}

/// Send raw request bytes on `s`; return the response head (bounded read, 10 s timeout).
pub fn request_head(s: &mut TcpStream, req: &str) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(_) => head.push(b[0]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Publishes in runs over two topics, `a` then `b` then `a`…: run k holds
/// `1 + (k * step) % 13` messages (1 to 13), `total` in all. Each is (topic, its number in
/// the topic from 1, a unique payload) — for tests of messages that pile up and are offered
/// in runs.
pub fn runs_over_two_topics(total: usize, step: usize) -> Vec<(&'static str, u64, String)> {
    let mut order: Vec<(&'static str, u64, String)> = Vec::new();
    let (mut seq, mut run) = ([0u64; 2], 0usize);
    while order.len() < total {
        let t = run % 2;
        for _ in 0..(1 + (run * step) % 13).min(total - order.len()) {
            seq[t] += 1;
            let topic = ["a", "b"][t];
            order.push((topic, seq[t], format!("{topic}-{}", order.len())));
        }
        run += 1;
    }
    order
}
