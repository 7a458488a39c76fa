//! The old process's side of a live upgrade: start the new binary, hand it the listeners,
//! stop numbering (without a broker) and hand it the topics, then move the workers'
//! batches of connections until none is left, and leave. If anything fails on the way —
//! the new binary does not start, speaks another format, dies, or stops answering — it is
//! killed, every batch it has not acknowledged is taken back, and this process serves on.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::format::{self, ConnSnap, FormatError, Msg, HEADER};
use super::{Links, Verdict, DONE, FREEZE, IDLE, MOVE};
use crate::io::passfd;
use crate::lifecycle::Lifecycle;
use crate::pubsub::Hub;

/// How long the new binary has to say hello, and then to start its workers.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a batch may wait for its acknowledgement before the upgrade is abandoned.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Topics per frame of the topic snapshot.
const TOPICS_PER_FRAME: usize = 4096;

/// What an upgrade needs from the running server.
#[derive(Debug)]
pub struct Plan {
    /// The binary to start, and its arguments (this process's).
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The data listeners (an SO_REUSEPORT group), then the admin and metrics listeners.
    pub data: Vec<RawFd>,
    /// The admin listener.
    pub admin: Option<RawFd>,
    /// The metrics listener.
    pub metrics: Option<RawFd>,
    /// Whether a broker numbers messages (then no topics are handed over).
    pub broker: bool,
    /// How long moving may take before what is left is drained.
    pub timeout: Duration,
}

/// Where the last (or current) upgrade is, for logs, `GET /upgrade` and `holdfast upgrade`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// `idle`, `starting`, `moving`, `done` or `failed`.
    pub state: &'static str,
    /// The new process's pid.
    pub pid: Option<u32>,
    /// Connections moved (acknowledged).
    pub moved: u64,
    /// Connections still here that could move.
    pub remaining: u64,
    /// Connections per second over the move so far.
    pub rate: f64,
    /// Seconds since the upgrade started.
    pub elapsed: f64,
    /// Why it failed.
    pub error: Option<String>,
}

impl Status {
    /// As JSON.
    pub fn json(&self) -> String {
        serde_json::json!({
            "state": self.state,
            "pid": self.pid,
            "moved": self.moved,
            "remaining": self.remaining,
            "rate": (self.rate * 10.0).round() / 10.0,
            "elapsed_s": (self.elapsed * 1000.0).round() / 1000.0,
            "error": self.error,
        })
        .to_string()
    }
}

/// Runs upgrades, one at a time.
#[derive(Debug)]
pub struct Upgrader {
    plan: Plan,
    links: Arc<Links>,
    hub: Arc<Hub>,
    life: Arc<Lifecycle>,
    running: AtomicBool,
    status: Mutex<Status>,
    /// Taken by a worker around handing out a batch and by the coordinator around leaving
    /// the moving phase: no batch can be handed out after the coordinator stopped taking them.
    pub gate: Arc<Mutex<()>>,
    /// While connections move (without a broker): where admin publishes go to be numbered.
    forward: Mutex<Option<Forward>>,
}

/// Publishes forwarded to the new process: the socket's writing half (shared with the
/// coordinator, one frame at a time) and the answers awaited.
#[derive(Debug)]
struct Forward {
    writer: Arc<Mutex<UnixStream>>,
    waiting: Waiting,
    next: u64,
}

/// Forwarded publishes awaiting the new process's answer, by id.
type Waiting = Arc<Mutex<HashMap<u64, std::sync::mpsc::Sender<(u16, String)>>>>;

/// How long a forwarded publish waits for the new process's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an upgrade failed.
type Failure = String;

impl Upgrader {
    /// An upgrader for the server's links, hub and lifecycle.
    pub fn new(plan: Plan, links: Arc<Links>, hub: Arc<Hub>, life: Arc<Lifecycle>) -> Arc<Self> {
        Arc::new(Self {
            plan,
            gate: links.shared.gate.clone(),
            links,
            hub,
            life,
            running: AtomicBool::new(false),
            forward: Mutex::new(None),
            status: Mutex::new(Status {
                state: "idle",
                ..Status::default()
            }),
        })
    }

    /// Number a publish that reached this process while its numbering belongs to the new
    /// one: it is sent over the hand-over socket and the new process's answer returned.
    /// None when no new process numbers yet (the caller answers 503).
    pub fn forward_publish(
        &self,
        topic: &str,
        binary: bool,
        payload: &[u8],
    ) -> Option<(u16, String)> {
        let (writer, rx, id) = {
            let mut g = self.forward.lock().unwrap_or_else(|p| p.into_inner());
            let f = g.as_mut()?;
            let id = f.next;
            f.next += 1;
            let (tx, rx) = std::sync::mpsc::channel();
            f.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, tx);
            (f.writer.clone(), rx, id)
        };
        let msg = Msg::Publish {
            id,
            topic: topic.to_owned(),
            binary,
            payload: payload.to_vec(),
        };
        {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            write(&mut w, &msg, &[]).ok()?;
        }
        Some(rx.recv_timeout(FORWARD_TIMEOUT).unwrap_or((
            503,
            "handing_over (the new process did not answer in time; retry in a second)\n".into(),
        )))
    }

    /// Its metrics, in the Prometheus text format.
    pub fn render(&self, o: &mut String) {
        use std::fmt::Write as _;
        let st = self.status();
        let sh = &self.links.shared;
        let state = match st.state {
            "starting" => 1,
            "moving" => 2,
            "done" => 3,
            "failed" => 4,
            _ => 0,
        };
        let mut family = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP holdfast_{name} {help}");
            let _ = writeln!(o, "# TYPE holdfast_{name} {kind}");
            let _ = writeln!(o, "holdfast_{name} {v}");
        };
        family(
            "upgrade_state",
            "gauge",
            "Live upgrade: 0 none yet, 1 starting the new binary, 2 moving connections, 3 done, 4 the last one failed.",
            state,
        );
        family(
            "upgrade_connections_remaining",
            "gauge",
            "Connections still to move in the running live upgrade.",
            if state == 2 { st.remaining } else { 0 },
        );
        let counters = [
            (
                "upgrade_batches_total",
                "Batches of connections sent to a new process.",
                &sh.batches,
            ),
            (
                "upgrade_connections_taken_back_total",
                "Connections taken back after a failed live upgrade.",
                &sh.taken_back,
            ),
            (
                "upgrade_connections_lost_total",
                "Connections that arrived from the previous process but could not be placed.",
                &sh.lost,
            ),
            (
                "upgrade_failures_total",
                "Live upgrades that failed (this process served on).",
                &sh.failures,
            ),
            (
                "upgrade_completed_total",
                "Live upgrades that handed everything movable over.",
                &sh.completed,
            ),
        ];
        for (name, help, v) in counters {
            family(name, "counter", help, v.load(Ordering::Relaxed));
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Start an upgrade on its own thread. Err: one is already running, or the server is
    /// draining.
    pub fn start(self: &Arc<Self>) -> Result<(), String> {
        if self.life.draining() {
            return Err("the server is draining".into());
        }
        if self.running.swap(true, Ordering::AcqRel) {
            return Err("an upgrade is already running".into());
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("holdfast-upgrade".into())
            .spawn(move || me.run())
            .map(|_| ())
            .map_err(|e| {
                self.running.store(false, Ordering::Release);
                format!("cannot start the upgrade thread: {e}")
            })
    }

    fn run(&self) {
        let started = Instant::now();
        self.set(|s| {
            *s = Status {
                state: "starting",
                ..Status::default()
            }
        });
        tracing::info!(binary = %self.plan.binary.display(), "live upgrade: starting the new binary");
        let mut child = None;
        let mut in_flight = HashMap::new();
        match self.attempt(started, &mut child, &mut in_flight) {
            Ok(moved) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    moved,
                    seconds = secs,
                    "live upgrade done: every movable connection is the new process's; \
                     draining what is left and exiting"
                );
                self.links.shared.completed.fetch_add(1, Ordering::Relaxed);
                self.set(|s| {
                    s.state = "done";
                    s.elapsed = secs;
                });
                // systemd follows the new process from now on (this one is still the main
                // process, so the message is accepted even with NotifyAccess=main; systemd
                // reads notifications before the SIGCHLD of this process's exit).
                if let Some(pid) = self.status().pid {
                    crate::notify::notify(&format!(
                        "MAINPID={pid}\nSTATUS=handed {moved} connections to pid {pid}"
                    ));
                }
                self.life.drain();
            }
            Err(why) => {
                if let Some(mut c) = child.take() {
                    kill(&mut c);
                }
                self.abandon(in_flight);
                self.links.shared.failures.fetch_add(1, Ordering::Relaxed);
                let line = format!("live upgrade failed, this process serves on: {why}");
                self.set(|s| {
                    s.state = "failed";
                    s.error = Some(why);
                    s.elapsed = started.elapsed().as_secs_f64();
                });
                // Logged last: whoever reads this line finds the failure counted and the
                // state failed (it came first once, and a test that read the metrics on
                // seeing it found 0 failures).
                tracing::error!("{line}");
            }
        }
        self.running.store(false, Ordering::Release);
    }

    /// Leave the moving phase and take back everything not acknowledged.
    fn abandon(&self, in_flight: HashMap<u64, (usize, u64, Vec<ConnSnap>)>) {
        {
            let _g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            self.links.shared.set_phase(IDLE);
        }
        self.hub.thaw();
        for (_, (w, local, conns)) in in_flight {
            self.links.verdict(w, Verdict::Returned(local, conns));
        }
        // Batches handed out and never sent (the gate is closed now: no more come).
        while let Ok(o) = self.links.out.try_recv() {
            self.links
                .verdict(o.worker, Verdict::Returned(o.local, o.conns));
        }
        self.links.wake_all();
    }

    fn attempt(
        &self,
        started: Instant,
        child: &mut Option<Child>,
        in_flight: &mut HashMap<u64, (usize, u64, Vec<ConnSnap>)>,
    ) -> Result<u64, Failure> {
        let (mut sock, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        crate::io::sys::inheritable(theirs.as_raw_fd()).map_err(|e| format!("fcntl: {e}"))?;
        let spawned = Command::new(&self.plan.binary)
            .args(&self.plan.args)
            .env(super::child::ENV, theirs.as_raw_fd().to_string())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.plan.binary.display()))?;
        drop(theirs);
        let pid = spawned.id();
        *child = Some(spawned);
        self.set(|s| s.pid = Some(pid));
        sock.set_read_timeout(Some(START_TIMEOUT))
            .map_err(|e| e.to_string())?;

        // 1. Hello: the same format, or nothing is handed over.
        match read(&mut sock)? {
            (Msg::Hello { version, .. }, _) if version == format::VERSION => {}
            (Msg::Hello { version, .. }, _) => {
                let _ = write(
                    &mut sock,
                    &Msg::Refuse {
                        reason: format!("format {version}"),
                    },
                    &[],
                );
                return Err(format!(
                    "the new binary speaks hand-over format {version}, this one {}",
                    format::VERSION
                ));
            }
            (m, _) => return Err(format!("expected hello, got {m:?}")),
        }
        // 2. The listeners: from now on both processes hold them; no connection is refused.
        let mut fds = self.plan.data.clone();
        fds.extend(self.plan.admin);
        fds.extend(self.plan.metrics);
        write(
            &mut sock,
            &Msg::Listeners {
                data: self.plan.data.len() as u16,
                admin: self.plan.admin.is_some(),
                metrics: self.plan.metrics.is_some(),
            },
            &fds,
        )?;
        // 3. Freeze: workers stop accepting and reading open connections; without a
        // broker, numbering stops here and moves with the topics.
        self.links.shared.set_phase(FREEZE);
        self.links.wake_all();
        let topics = if self.plan.broker {
            Vec::new()
        } else {
            self.hub.freeze()
        };
        let n_topics = topics.len();
        let mut chunks = topics.chunks(TOPICS_PER_FRAME).peekable();
        if chunks.peek().is_none() {
            write(&mut sock, &Msg::Topics(Vec::new()), &[])?;
        }
        for c in chunks {
            write(&mut sock, &Msg::Topics(c.to_vec()), &[])?;
        }
        write(&mut sock, &Msg::Ready, &[])?; // end of the topics
                                             // 4. Its workers run.
        match read(&mut sock)? {
            (Msg::Ready, _) => {}
            (Msg::Refuse { reason }, _) => {
                return Err(format!("the new process refused: {reason}"))
            }
            (m, _) => return Err(format!("expected ready, got {m:?}")),
        }
        self.move_all(&mut sock, started, in_flight, (pid, n_topics))
    }

    fn move_all(
        &self,
        sock: &mut UnixStream,
        started: Instant,
        in_flight: &mut HashMap<u64, (usize, u64, Vec<ConnSnap>)>,
        (pid, n_topics): (u32, usize),
    ) -> Result<u64, Failure> {
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<Result<u64, String>>();
        let mut reader = sock.try_clone().map_err(|e| e.to_string())?;
        reader.set_read_timeout(None).map_err(|e| e.to_string())?;
        let writer = Arc::new(Mutex::new(sock.try_clone().map_err(|e| e.to_string())?));
        let waiting: Waiting = Arc::default();
        let answers = waiting.clone();
        std::thread::Builder::new()
            .name("holdfast-upgrade-acks".into())
            .spawn(move || loop {
                let r = match read(&mut reader) {
                    Ok((Msg::Ack { id }, _)) => Ok(id),
                    Ok((Msg::Published { id, status, body }, _)) => {
                        let tx = answers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&id);
                        if let Some(tx) = tx {
                            let _ = tx.send((status, body));
                        }
                        continue;
                    }
                    Ok((m, _)) => Err(format!("unexpected {m:?}")),
                    Err(e) => Err(e),
                };
                let stop = r.is_err();
                if ack_tx.send(r).is_err() || stop {
                    return;
                }
            })
            .map_err(|e| e.to_string())?;
        if !self.plan.broker {
            *self.forward.lock().unwrap_or_else(|p| p.into_inner()) = Some(Forward {
                writer: writer.clone(),
                waiting,
                next: 0,
            });
        }
        // Publishes are forwarded from here on: now the move starts.
        tracing::info!(
            pid,
            topics = n_topics,
            "live upgrade: the new process serves; moving connections"
        );
        self.set(|s| s.state = "moving");
        self.links.shared.set_phase(MOVE);
        self.links.wake_all();
        let r = self.move_batches(&writer, &ack_rx, started, in_flight);
        if r.is_err() {
            // This process numbers again; on success it keeps forwarding until it exits.
            *self.forward.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        r
    }

    fn move_batches(
        &self,
        writer: &Mutex<UnixStream>,
        ack_rx: &crossbeam_channel::Receiver<Result<u64, String>>,
        started: Instant,
        in_flight: &mut HashMap<u64, (usize, u64, Vec<ConnSnap>)>,
    ) -> Result<u64, Failure> {
        let lock = || writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut sent_at: HashMap<u64, Instant> = HashMap::new();
        let (mut next, mut moved) = (0u64, 0u64);
        let mut last_log = Instant::now();
        let move_start = Instant::now();
        loop {
            crossbeam_channel::select! {
                recv(self.links.out) -> o => {
                    let Ok(o) = o else { return Err("the workers' channel closed".into()) };
                    let id = next;
                    next += 1;
                    let raw: Vec<RawFd> = o.fds.iter().map(AsRawFd::as_raw_fd).collect();
                    let msg = Msg::Batch { id, conns: o.conns };
                    let frame = format::encode(&msg);
                    // Kept until acknowledged: a batch that does not arrive is taken back.
                    let Msg::Batch { conns, .. } = msg else { unreachable!("built above") };
                    in_flight.insert(id, (o.worker, o.local, conns));
                    sent_at.insert(id, Instant::now());
                    passfd::send(&mut lock(), &frame, &raw)
                        .map_err(|e| format!("sending a batch: {e}"))?;
                    drop::<Vec<OwnedFd>>(o.fds); // the new process has its own references
                    self.links.shared.batches.fetch_add(1, Ordering::Relaxed);
                }
                recv(ack_rx) -> a => {
                    let id = match a {
                        Ok(Ok(id)) => id,
                        Ok(Err(e)) => return Err(format!("the new process: {e}")),
                        Err(_) => return Err("the acknowledgement reader stopped".into()),
                    };
                    sent_at.remove(&id);
                    if let Some((w, local, conns)) = in_flight.remove(&id) {
                        moved += conns.len() as u64;
                        self.links.shared.moved.fetch_add(conns.len() as u64, Ordering::Relaxed);
                        self.links.verdict(w, Verdict::Acked(local));
                    }
                }
                default(Duration::from_millis(50)) => {}
            }
            if let Some((id, _)) = sent_at.iter().find(|(_, t)| t.elapsed() > ACK_TIMEOUT) {
                return Err(format!("batch {id} not acknowledged in {ACK_TIMEOUT:?}"));
            }
            // Counts mean something once every worker froze and saw MOVE (a worker with a
            // million connections takes a moment to pause them all).
            let settled = self.links.all_seen(MOVE);
            let remaining = self.links.remaining();
            let secs = move_start.elapsed().as_secs_f64().max(1e-3);
            self.set(|s| {
                s.moved = moved;
                s.remaining = remaining as u64;
                s.rate = moved as f64 / secs;
                s.elapsed = started.elapsed().as_secs_f64();
            });
            if last_log.elapsed() >= Duration::from_secs(1) {
                last_log = Instant::now();
                tracing::info!(
                    moved,
                    remaining,
                    rate = moved as f64 / secs,
                    "live upgrade progress"
                );
            }
            let all_moved =
                settled && remaining == 0 && in_flight.is_empty() && self.links.out.is_empty();
            let late = started.elapsed() > self.plan.timeout && in_flight.is_empty();
            if all_moved || late {
                if late && !all_moved {
                    tracing::warn!(remaining, "live upgrade: time is up; draining what is left");
                }
                {
                    let _g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
                    self.links.shared.set_phase(DONE);
                }
                // A batch handed out just before the gate closed is still moved.
                while let Ok(o) = self.links.out.try_recv() {
                    let raw: Vec<RawFd> = o.fds.iter().map(AsRawFd::as_raw_fd).collect();
                    let n = o.conns.len() as u64;
                    let id = next;
                    next += 1;
                    let frame = format::encode(&Msg::Batch { id, conns: o.conns });
                    if passfd::send(&mut lock(), &frame, &raw).is_ok() {
                        // Acknowledged below or not, the new process has it once sent.
                        moved += n;
                        self.links.shared.moved.fetch_add(n, Ordering::Relaxed);
                        self.links.verdict(o.worker, Verdict::Acked(o.local));
                    }
                }
                write(&mut lock(), &Msg::Done { moved }, &[])?;
                self.set(|s| {
                    s.moved = moved;
                    s.remaining = 0;
                });
                return Ok(moved);
            }
        }
    }
}

fn kill(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Read one frame and its descriptors.
pub fn read(sock: &mut UnixStream) -> Result<(Msg, Vec<OwnedFd>), Failure> {
    let mut head = [0u8; HEADER];
    let mut fds = Vec::new();
    match passfd::recv_head(sock, &mut head, &mut fds) {
        Ok(true) => {}
        Ok(false) => return Err("the other process closed the hand-over socket".into()),
        Err(e) => return Err(format!("reading the hand-over socket: {e}")),
    }
    let len = format::payload_len(&head).map_err(|e: FormatError| e.to_string())?;
    let mut frame = vec![0u8; HEADER + len];
    frame[..HEADER].copy_from_slice(&head);
    passfd::recv_exact(sock, &mut frame[HEADER..])
        .map_err(|e| format!("reading the hand-over socket: {e}"))?;
    let m = format::decode(&frame).map_err(|e| e.to_string())?;
    Ok((m, fds))
}

/// Write one frame with `fds` attached.
pub fn write(sock: &mut UnixStream, m: &Msg, fds: &[RawFd]) -> Result<(), Failure> {
    passfd::send(sock, &format::encode(m), fds)
        .map_err(|e| format!("writing the hand-over socket: {e}"))
}
