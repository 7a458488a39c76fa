//! Starting the server: lay workers out on the CPUs, bind their listeners, start the admin
//! listener, take signals, and drain on SIGTERM/SIGINT or `POST /drain`.

use std::sync::{mpsc, Arc};

use crate::admin;
use crate::budget::MemoryBudget;
use crate::config::ServeConfig;
use crate::io::listener::{self, SockOpts};
use crate::io::waker::Waker;
use crate::io::{self, ReadMode};
use crate::lifecycle::Lifecycle;
use crate::metrics::WorkerMetrics;
use crate::pubsub::{Hub, PolicyTable, ReplayLimits, TopicLimits};
use crate::reactor::worker::{self, Settings, WorkerSpec, TICK};
use crate::services::limits::{Global, IpTable};
use crate::services::{Admission, PubsubSide, PubsubSpec, Services};
use crate::session;
use crate::topology;
use crate::ws::handshake::Limits;

/// Why the server could not start (or a worker failed).
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// A value or a combination of values is not valid.
    Config(crate::config::ConfigError),
    /// The machine cannot run this configuration (file limits, layout).
    Setup(String),
    /// The listening sockets could not be opened.
    Listen(std::net::SocketAddr, std::io::Error),
    /// The admin listener could not be opened.
    Admin(std::net::SocketAddr, std::io::Error),
    /// An eventfd or a thread could not be created.
    Resources(&'static str, std::io::Error),
    /// A worker could not set up its rings (with the operator's fix).
    Worker(usize, String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => e.fmt(f),
            Self::Setup(msg) => f.write_str(msg),
            Self::Listen(a, e) => write!(f, "cannot listen on {a}: {e}"),
            Self::Admin(a, e) => write!(f, "cannot bind admin listener {a}: {e}"),
            Self::Resources(what, e) => write!(f, "cannot create {what}: {e}"),
            Self::Worker(id, msg) => write!(f, "worker {id}: {msg}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<crate::config::ConfigError> for ServeError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::Config(e)
    }
}

fn ticks(secs: f64) -> u32 {
    ((secs / TICK.as_secs_f64()).ceil() as u32).max(1)
}

/// Run the server until it has drained. Returns an error message for a failed start.
pub fn serve(cfg: ServeConfig) -> Result<(), ServeError> {
    // Before any thread starts: every thread inherits the blocked signals and only the
    // signal thread takes them (the backplane's thread, started below, once had them
    // unblocked: a SIGTERM or SIGUSR2 landing on it ended the process at once).
    io::sys::block_signals();
    cfg.validate()?;
    // Started by a live upgrade: the old process hands over its listeners and topics
    // before anything here starts.
    let inherited = crate::handover::child::Inherited::take()
        .map_err(|e| ServeError::Setup(format!("live upgrade: {e}")))?;
    if let Some(i) = &inherited {
        tracing::info!(
            listeners = i.data.len(),
            topics = i.topics.len(),
            "live upgrade: took the listeners over from the previous process"
        );
    }
    let mut inherited = inherited;
    let admin_addr = cfg.admin_addr()?;
    let metrics_addr = cfg.metrics_addr()?;
    let admin_token = cfg.admin_token()?;
    let edge = Arc::new(cfg.edge()?);
    let tls = cfg.tls()?;
    if let Some((store, _)) = &tls {
        let ktls = match crate::tls::kernel_tls() {
            crate::tls::KernelTls::Available => {
                "available, not used: this version encrypts in userspace (rustls) on the \
                 workers"
                    .to_string()
            }
            crate::tls::KernelTls::Unavailable(why) => {
                format!("unavailable ({why}): records are encrypted in userspace (rustls)")
            }
        };
        tracing::info!(
            cert = %store.files().cert.display(),
            key = %store.files().key.display(),
            kernel_tls = ktls.as_str(),
            "TLS on: TLS 1.3 and 1.2, ALPN http/1.1, session tickets"
        );
    }
    tracing::info!(
        tokens = edge.auth.enabled(),
        anonymous = cfg.auth_anonymous.as_deref().unwrap_or("-"),
        origins = cfg.allowed_origins.as_str(),
        endpoints = cfg.endpoints.as_str(),
        "edge policy"
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let (memory_limit, replay_budget) = cfg.budgets(meminfo.as_deref())?;
    let allowed = topology::allowed_cpus();
    let workers = cfg.workers.unwrap_or(allowed.len());
    if workers > allowed.len() {
        // Allowed (a test may want it), but rarely meant: each worker is a thread with its
        // own rings, and workers sharing a CPU wait on each other's turns.
        tracing::warn!(
            workers,
            cpus = allowed.len(),
            "--workers is more than the CPUs this process may run on: workers share CPUs \
             (one worker per CPU is the design)"
        );
    }
    let nodes = topology::numa_nodes();
    let layout = topology::place(workers, &allowed, &nodes);

    // Each ring's file table is capped by RLIMIT_NOFILE's soft limit (and, automatically, at
    // `AUTO_RING_FILES`: a close's poll removal walks the ring's cancel hash); a worker adds
    // rings as its tables fill (docs/architecture.md). The connection cap is global (one shared
    // count), and SO_REUSEPORT may send any worker more than an even share, so each worker
    // may grow to hold all of it; rings are created only as they are needed.
    let per_worker = cfg.max_connections;
    let soft = io::sys::nofile_soft_limit().min(u64::from(io::socket::MAX_SLOTS)) as usize;
    let table_cap =
        crate::reactor::rings::table_slots(cfg.ring_files, soft).map_err(ServeError::Setup)?;
    // Slots for connections still handshaking or closing beyond the target.
    let headroom = 256;
    let table = (per_worker + headroom).min(table_cap);
    let max_conns = per_worker;
    let rings = per_worker.div_ceil(table.saturating_sub(192).max(1));

    if let Some(max) = listener::somaxconn() {
        if cfg.backlog > max {
            tracing::warn!(
                "--backlog {} exceeds net.core.somaxconn={max}; the kernel uses {max} \
                 (sysctl -w net.core.somaxconn={})",
                cfg.backlog,
                cfg.backlog
            );
        }
    }
    let opts = SockOpts {
        backlog: cfg.backlog,
        sndbuf: cfg.sndbuf,
        rcvbuf: cfg.rcvbuf,
        defer_accept: cfg.defer_accept,
    };
    if !cfg.share_port
        && inherited.is_none()
        && listener::port_taken_within(cfg.listen, PORT_PATIENCE)
    {
        return Err(ServeError::Setup(format!(
            "{} is already in use by another process: a second server would share it through \
             SO_REUSEPORT and silently take part of the new connections. Stop the other one, \
             choose another --listen, or pass --share-port to join it on purpose",
            cfg.listen
        )));
    }
    let (listeners, bound) = match inherited.as_mut() {
        None => listener::bind_group(cfg.listen, workers, opts)
            .map_err(|e| ServeError::Listen(cfg.listen, e))?,
        Some(i) => {
            // The previous process's SO_REUSEPORT group: worker w accepts on socket
            // w mod n (several workers may share one); sockets beyond the workers close
            // (with net.ipv4.tcp_migrate_req=1 their queues move to the others).
            let group = std::mem::take(&mut i.data);
            let bound = group[0]
                .local_addr()
                .map_err(|e| ServeError::Listen(cfg.listen, e))?;
            // The previous process's deferral (or none) gives way to this one's.
            for l in &group {
                listener::set_defer_accept(l, cfg.defer_accept)
                    .map_err(|e| ServeError::Listen(cfg.listen, e))?;
            }
            let mut ls = Vec::with_capacity(workers);
            for w in 0..workers {
                ls.push(
                    group[w % group.len()]
                        .try_clone()
                        .map_err(|e| ServeError::Resources("a listener", e))?,
                );
            }
            (ls, bound)
        }
    };
    let data_fds: Vec<std::os::fd::RawFd> = listeners
        .iter()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .collect();

    let settings = Settings {
        session: session::Config {
            limits: Limits::default(),
            max_message: cfg.max_message,
            max_outbound: cfg.max_outbound,
            handshake_ticks: ticks(cfg.handshake_timeout),
            ping_ticks: ticks(cfg.ping_interval),
            idle_ticks: ticks(cfg.idle_timeout),
            close_ticks: ticks(cfg.drain_grace.min(5.0)),
            max_pings: cfg.max_client_pings,
            stream_retry_ms: 1000,
            close_after_echo: tls.is_none(),
            keepalive_requests: cfg.keepalive_requests,
        },
        drain_ticks: ticks(cfg.drain_window),
        grace_ticks: ticks(cfg.drain_grace),
        recv_buffers: cfg.recv_buffers,
        recv_buffer_size: cfg.recv_buffer_size,
        read_mode: match cfg.read_mode {
            crate::config::ReadModeArg::Poll => ReadMode::Poll,
            crate::config::ReadModeArg::Recv => ReadMode::Recv,
        },
        read_first: cfg.defer_accept > 0,
        // A fan-out submits in rounds of this many sends (a full queue is submitted before
        // the next entry goes in). 512 rather than 4,096: the whole machine's CPU per
        // delivery fell 1–10% on one worker, latency and echo unchanged; the server's own
        // on-CPU time did not move (the 20–30% its scheduler clock showed was time charged
        // to ksoftirqd: bench/results/2026-12-02-cpu-meter.md); the queue's 256 KiB became 32 KiB.
        sq_entries: 512,
        cq_entries: 32768,
        close_log_rate: match cfg.close_log_rate {
            0 => 0,
            r => r.div_ceil(workers as u32).max(1),
        },
        fanout_pause: std::time::Duration::from_secs_f64(cfg.fanout_pause),
        fanout_join: cfg.fanout_join,
        fanout_send_interval: std::time::Duration::from_secs_f64(cfg.fanout_send_interval),
        fanout_pace_interval: std::time::Duration::from_secs_f64(cfg.fanout_pace_interval),
    };
    let metrics: Vec<Arc<WorkerMetrics>> = (0..workers)
        .map(|_| Arc::new(WorkerMetrics::default()))
        .collect();
    let wakers: Vec<Arc<Waker>> = (0..workers)
        .map(|_| Waker::new().map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Resources("an eventfd", e))?;
    let topic_limits = TopicLimits {
        max_len: cfg.max_topic_len,
        max_per_connection: cfg.max_topics_per_connection,
    };
    let (hub, receivers) = Hub::new(
        wakers
            .iter()
            .map(|w| {
                let w = w.clone();
                Box::new(move || w.wake()) as Box<dyn Fn() + Send + Sync>
            })
            .collect(),
        topic_limits,
        ReplayLimits {
            messages: cfg.replay_messages,
            bytes: cfg.replay_bytes,
            budget: replay_budget,
            idle_expiry: cfg.topic_idle_expiry,
            epoch_seed: epoch_seed(),
            max_topics: cfg.max_topics,
            queue_messages: cfg.publish_queue.max(1),
            queue_bytes: cfg.publish_queue_bytes,
            queue_deliveries: cfg.publish_queue_deliveries.max(1),
            max_frame: cfg.max_outbound,
        },
    );
    let memory = Arc::new(MemoryBudget::new(memory_limit, workers));
    hub.attach_budget(memory.clone());
    if let Some(i) = inherited.as_mut() {
        let n = hub.restore(std::mem::take(&mut i.topics));
        tracing::info!(topics = n, "live upgrade: took the topics' numbering over");
    }
    let links = Arc::new(crate::handover::Links::new(&wakers));
    let backplane = crate::backplane::Backplane::start(cfg.backplane_options()?, hub.clone())
        .map_err(|e| ServeError::Resources("the backplane thread", e))?;
    tracing::info!(
        memory_budget = memory_limit,
        replay_budget,
        "memory budget (partial messages, outbound queues, replay)"
    );
    let mut receivers: Vec<Option<_>> = receivers.into_iter().map(Some).collect();
    let policies = Arc::new(
        PolicyTable::parse(cfg.slow_consumer, &cfg.topic_policy)
            .map_err(crate::config::ConfigError::TopicPolicy)?,
    );
    let life = Arc::new(Lifecycle::default());
    let storm = Arc::new(crate::storm::Shared::default());
    let state = Arc::new(admin::State {
        life: life.clone(),
        metrics: metrics.clone(),
        hub: hub.clone(),
        backplane: backplane.clone(),
        memory: memory.clone(),
        storm: storm.clone(),
        max_connections: cfg.max_connections,
        rss_baseline: std::sync::atomic::AtomicU64::new(0),
        max_publish: cfg.max_message as usize,
        token: admin_token,
        request_deadline: std::time::Duration::from_secs_f64(cfg.admin_request_timeout),
        tls: tls.as_ref().map(|(s, _)| s.clone()),
        upgrader: std::sync::OnceLock::new(),
        listeners: admin::Listeners::default(),
        scrapes: admin::Scrapes::default(),
    });

    let ip_table = (cfg.max_per_ip > 0).then(|| Arc::new(IpTable::new(cfg.max_per_ip)));
    let global = Arc::new(Global::new(cfg.max_connections, cfg.accept_rate));
    // Fault injection for the tests (docs/operations.md): this worker panics 0.5 s in.
    let fault_worker: Option<usize> = std::env::var("HOLDFAST_FAULT_WORKER_PANIC")
        .ok()
        .and_then(|v| v.parse().ok());
    io::sys::block_signals();
    // Every thread from here on has the signals blocked (the signal thread takes them).
    spawn_housekeeper(hub.clone(), metrics.clone(), storm)?;
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let mut handles = Vec::with_capacity(workers);
    for (p, listener) in layout.iter().zip(listeners) {
        tracing::info!(
            worker = p.worker,
            cpu = p.cpu,
            numa_node = p.node,
            file_table = table,
            max_rings = rings,
            max_connections = max_conns,
            "worker layout"
        );
        let spec = WorkerSpec {
            id: p.worker,
            listener,
            max_conns,
            table_size: table as u32,
            settings,
            metrics: metrics[p.worker].clone(),
            memory: memory.clone(),
            life: life.clone(),
            panic_at_tick: (fault_worker == Some(p.worker)).then_some(5),
            tls: tls.as_ref().map(|(_, c)| c.clone()),
            link: Some(links.workers[p.worker].clone()),
        };
        let svc = ServicesSpec {
            edge: edge.clone(),
            global: global.clone(),
            ip_table: ip_table.clone(),
            pubsub: PubsubSpec {
                hub: hub.clone(),
                rx: receivers[p.worker].take().ok_or_else(|| {
                    ServeError::Setup("worker numbered twice in the layout".into())
                })?,
                waker: wakers[p.worker].clone(),
                policies: policies.clone(),
                limits: topic_limits,
                client_publish: cfg.client_publish,
                max_control_bytes: cfg.max_control_message,
                subscribe_rate: cfg.subscribe_rate,
                poll_hold: std::time::Duration::from_secs_f64(cfg.poll_hold),
                backplane: backplane.clone(),
            },
        };
        let cpu = p.cpu;
        let tx = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("holdfast-w{}", p.worker))
            .spawn(move || run_worker(spec, svc, cpu, tx))
            .map_err(|e| ServeError::Resources("a worker thread", e))?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((id, Err(msg))) => {
                life.stop();
                return Err(ServeError::Worker(id, msg));
            }
            Err(_) => {
                return Err(ServeError::Worker(
                    usize::MAX,
                    "a worker exited during start-up".into(),
                ))
            }
        }
    }

    let mut listening = Vec::new();
    let mut admin_fd = None;
    if let Some(addr) = admin_addr {
        let l = match inherited.as_mut().and_then(|i| i.admin.take()) {
            Some(l) => l,
            None => std::net::TcpListener::bind(addr).map_err(|e| ServeError::Admin(addr, e))?,
        };
        let served = admin::spawn_on(l, state.clone(), admin::Role::Admin)
            .map_err(|e| ServeError::Admin(addr, e))?;
        admin_fd = Some(served.fd);
        say(&format!("admin listening on {}", served.addr));
        listening.push(served);
    }
    let mut metrics_fd = None;
    if let Some(addr) = metrics_addr {
        let l = match inherited.as_mut().and_then(|i| i.metrics.take()) {
            Some(l) => l,
            None => std::net::TcpListener::bind(addr).map_err(|e| ServeError::Admin(addr, e))?,
        };
        let served = admin::spawn_on(l, state.clone(), admin::Role::Observe)
            .map_err(|e| ServeError::Admin(addr, e))?;
        metrics_fd = Some(served.fd);
        say(&format!("metrics listening on {}", served.addr));
        listening.push(served);
    }
    let upgrader = crate::handover::parent::Upgrader::new(
        crate::handover::parent::Plan {
            binary: cfg.upgrade_binary.clone().unwrap_or_else(started_from),
            args: std::env::args_os().skip(1).collect(),
            data: data_fds,
            admin: admin_fd,
            metrics: metrics_fd,
            broker: backplane.is_broker(),
            timeout: std::time::Duration::from_secs_f64(cfg.upgrade_timeout),
        },
        links.clone(),
        hub.clone(),
        life.clone(),
    );
    let _ = state.upgrader.set(upgrader.clone());
    // The three `… listening on` lines on stdout are the contract scripts and tests read;
    // the log gets one structured line.
    tracing::info!(workers, listen = %bound, admin = ?admin_addr, metrics = ?metrics_addr, "serving");
    // Every worker and listener thread is up and the WebSocket address has not been printed,
    // so clients have not been told where to connect: what each connection adds is measured
    // from here (the admin and metrics threads' own memory is part of the idle process).
    let idle = crate::metrics::resident_bytes().unwrap_or(0);
    state
        .rss_baseline
        .store(idle, std::sync::atomic::Ordering::Relaxed);
    // Tests and scripts read this line to find an ephemeral port.
    say(&format!("listening on {bound}"));
    match inherited {
        // systemd hears from this process (MAINPID) once the old one has handed over.
        Some(i) => {
            let bp = backplane.clone();
            let publish: crate::handover::child::Publisher =
                Box::new(move |topic, binary, body| {
                    let payload = if binary {
                        crate::pubsub::Payload::Binary(body)
                    } else {
                        match std::str::from_utf8(body) {
                            Ok(t) => crate::pubsub::Payload::Text(t),
                            Err(_) => return (400, "body is not UTF-8\n".into()),
                        }
                    };
                    let (status, _, body) = admin::publish_topic(&bp, topic, payload);
                    (status, body)
                });
            i.serve(links.clone(), publish)
                .map_err(|e| ServeError::Setup(format!("live upgrade: {e}")))?
        }
        None => crate::notify::notify(&format!("READY=1\nSTATUS=serving on {bound}")),
    }
    crate::notify::spawn(metrics.clone());

    let sig_life = life.clone();
    let store = tls.as_ref().map(|(s, _)| s.clone());
    std::thread::Builder::new()
        .name("holdfast-signals".into())
        .spawn(move || {
            let mut draining = false;
            loop {
                let sig = io::sys::wait_for_signal();
                if sig == libc::SIGHUP {
                    reload(store.as_deref());
                    continue;
                }
                if sig == libc::SIGUSR2 {
                    match upgrader.start() {
                        Ok(()) => tracing::info!("SIGUSR2: live upgrade started"),
                        Err(why) => tracing::warn!("SIGUSR2: no live upgrade: {why}"),
                    }
                    continue;
                }
                if draining {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    crate::logging::flush();
                    std::process::exit(130);
                }
                draining = true;
                tracing::info!(
                    signal = sig,
                    "signal received: draining (send it again to exit now)"
                );
                if sig_life.drain() {
                    crate::notify::stopping();
                }
            }
        })
        .map_err(|e| ServeError::Resources("the signal thread", e))?;

    for h in handles {
        // A worker that fails exits the process itself (see `run_worker`); a join error
        // can only be a panic that escaped it.
        if h.join().is_err() {
            crate::logging::flush();
            std::process::exit(EXIT_WORKER_FAILED);
        }
    }
    // Answer the admin requests already accepted before leaving (after a live upgrade the
    // listener is shared with the new process, which takes every connection from now on).
    for l in listening {
        let left = l.stop(state.request_deadline);
        if left > 0 {
            tracing::warn!(connections = left, "admin connections still open at exit");
        }
    }
    tracing::info!("drained; exiting");
    crate::logging::flush();
    Ok(())
}

/// A line on stdout (the addresses scripts read). A stdout nobody reads any more (a closed
/// pipe: a process started by a live upgrade inherits its parent's) is not a reason to
/// fail, so errors are ignored rather than panicking as `println!` would.
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The path this process was started from (argv[0] made absolute, not resolved through
/// /proc/self/exe: a new binary installed at that path is what an upgrade should start).
fn started_from() -> std::path::PathBuf {
    let argv0 = std::env::args_os().next().map(std::path::PathBuf::from);
    match argv0 {
        Some(p) if p.components().count() > 1 => match std::env::current_dir() {
            Ok(cwd) => cwd.join(p),
            Err(_) => p,
        },
        _ => std::env::current_exe().unwrap_or_else(|_| "holdfast".into()),
    }
}

/// SIGHUP: read the TLS certificate and key again (new handshakes use them; established
/// connections keep theirs). A bad pair is logged and the one in use stays.
fn reload(store: Option<&crate::tls::CertStore>) {
    let Some(store) = store else {
        tracing::info!("SIGHUP: nothing to reload (TLS is off)");
        return;
    };
    match store.reload() {
        Ok(()) => tracing::info!(
            cert = %store.files().cert.display(),
            "SIGHUP: TLS certificate reloaded; new handshakes use it"
        ),
        Err(e) => tracing::error!("SIGHUP: TLS certificate not reloaded, the old one stays: {e}"),
    }
}

/// A seed no other process shares (the clock and the pid): the topics' epochs are derived
/// from it, so numbering that starts again in a new process is told apart.
fn epoch_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 40)
}

/// Once a second: tell the hub the time (it forgets idle topics) and feed the storm signal.
fn spawn_housekeeper(
    hub: Arc<Hub>,
    metrics: Vec<Arc<WorkerMetrics>>,
    storm: Arc<crate::storm::Shared>,
) -> Result<(), ServeError> {
    let mut setup = crate::storm::SetupRate::default();
    std::thread::Builder::new()
        .name("holdfast-hub".into())
        .spawn(move || loop {
            let upgrades = metrics.iter().map(|m| m.upgrades.get()).sum();
            storm.set(setup.observe(upgrades));
            let gone = hub.housekeep(crate::auth::unix_now());
            if gone > 0 {
                tracing::debug!(topics = gone, "idle topics expired");
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        })
        .map(|_| ())
        .map_err(|e| ServeError::Resources("the hub's housekeeping thread", e))
}

/// The exit status when a worker fails (EX_SOFTWARE).
pub const EXIT_WORKER_FAILED: i32 = 70;

/// How long start-up waits for a port another process still listens on to be released
/// before refusing it ([`listener::port_taken_within`]): long enough for a process that
/// just exited to release its io_uring rings' sockets, short enough that a second server
/// started by mistake is told soon.
const PORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A worker thread: pin, run, and take the whole process down if the worker fails after
/// start-up (a panic or a fatal ring error): its connections would be gone while health
/// checks stay green, so the supervisor must see the failure and restart the node.
fn run_worker(
    spec: WorkerSpec,
    svc: ServicesSpec,
    cpu: usize,
    tx: mpsc::Sender<(usize, Result<(), String>)>,
) {
    // Pin first so everything the worker allocates is first touched on its node.
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        tracing::warn!(worker = spec.id, cpu, "could not pin worker");
    }
    let id = spec.id;
    let services = Services {
        admission: Admission::new(
            id,
            svc.global,
            svc.ip_table,
            spec.life.clone(),
            spec.memory.clone(),
        ),
        pubsub: PubsubSide::new(id, svc.pubsub),
        identity: crate::services::IdentitySide::new(svc.edge),
        kicks: Vec::new(),
    };
    let ready = tx.clone();
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = started.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        worker::run(spec, services, move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = ready.send((id, Ok(())));
        })
    }));
    let cause = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) if !started.load(std::sync::atomic::Ordering::SeqCst) => {
            let _ = tx.send((id, Err(io::explain_setup_error(&e))));
            return;
        }
        Ok(Err(e)) => format!("ring error: {e}"),
        Err(panic) => match panic.downcast_ref::<&str>() {
            Some(s) => format!("panic: {s}"),
            None => match panic.downcast_ref::<String>() {
                Some(s) => format!("panic: {s}"),
                None => "panic".into(),
            },
        },
    };
    tracing::error!(
        worker = id,
        cause,
        "worker failed; exiting so the node is restarted"
    );
    crate::logging::flush();
    eprintln!("holdfast: worker {id} failed ({cause}); exiting");
    std::process::exit(EXIT_WORKER_FAILED);
}

/// What a worker's services are built from (on the worker's thread, after pinning).
#[derive(Debug)]
struct ServicesSpec {
    edge: Arc<crate::services::Edge>,
    global: Arc<Global>,
    ip_table: Option<Arc<IpTable>>,
    pubsub: PubsubSpec,
}
